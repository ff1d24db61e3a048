"""``sealgate k8s manifests`` and ``sealgate k8s cert``; the certificate is checked by a TLS
client that trusts only its CA, against a real ``sealgate serve`` (uvicorn) using it."""

from __future__ import annotations

import base64
import socket
import ssl
import stat
import subprocess
from pathlib import Path

import pytest
import yaml
from cryptography import x509

from tests.fixtures.registry import free_port
from tests.fixtures.serve import start_serve, wait_until_answering

SERVICE_NAMES = [
    "sealgate",
    "sealgate.sealgate-system",
    "sealgate.sealgate-system.svc",
    "sealgate.sealgate-system.svc.cluster.local",
]


def _handshake(port: int, *, ca: Path, server_hostname: str) -> bytes:
    context = ssl.create_default_context(cafile=str(ca))  # trusts only this CA
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=server_hostname) as tls,
    ):
        certificate = tls.getpeercert(binary_form=True)
        assert certificate is not None
        return certificate


class TestCert:
    def test_writes_a_ca_and_a_certificate_for_the_service_names(
        self, sealgate, tmp_path: Path
    ) -> None:
        result = sealgate("k8s", "cert", "--out", str(tmp_path), "--days", "30")
        assert result.exit_code == 0, result.output
        assert "kubectl -n sealgate-system create secret tls sealgate-tls" in result.stderr
        ca = x509.load_pem_x509_certificate((tmp_path / "ca.crt").read_bytes())
        cert = x509.load_pem_x509_certificate((tmp_path / "tls.crt").read_bytes())
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert sans.get_values_for_type(x509.DNSName) == SERVICE_NAMES
        assert cert.issuer == ca.subject
        assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
        assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
        lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
        assert 29 < lifetime.days <= 30
        assert stat.S_IMODE((tmp_path / "tls.key").stat().st_mode) == 0o600

    def test_other_service_and_namespace(self, sealgate, tmp_path: Path) -> None:
        result = sealgate(
            "k8s", "cert", "--service", "gate", "--namespace", "ops", "--out", str(tmp_path)
        )
        assert result.exit_code == 0, result.output
        cert = x509.load_pem_x509_certificate((tmp_path / "tls.crt").read_bytes())
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert "gate.ops.svc.cluster.local" in sans.get_values_for_type(x509.DNSName)

    def test_refuses_to_replace_files_without_force(self, sealgate, tmp_path: Path) -> None:
        assert sealgate("k8s", "cert", "--out", str(tmp_path)).exit_code == 0
        key = (tmp_path / "tls.key").read_bytes()
        result = sealgate("k8s", "cert", "--out", str(tmp_path))
        assert result.exit_code == 1
        assert "exist already; pass --force" in result.stderr
        assert (tmp_path / "tls.key").read_bytes() == key
        assert sealgate("k8s", "cert", "--out", str(tmp_path), "--force").exit_code == 0
        assert (tmp_path / "tls.key").read_bytes() != key

    @pytest.mark.parametrize(
        "args", [["--namespace", "Bad_NS"], ["--service", "-x"], ["--days", "0"]]
    )
    def test_bad_options_are_one_line(self, sealgate, tmp_path: Path, args: list[str]) -> None:
        result = sealgate("k8s", "cert", "--out", str(tmp_path), *args)
        assert result.exit_code == 1
        assert result.stderr.startswith("error: ") and "Traceback" not in result.output
        assert not (tmp_path / "tls.key").exists()

    def test_a_client_trusting_only_the_ca_verifies_the_served_certificate(
        self,
        sealgate,
        test_database_url: str,
        tmp_path: Path,
        stop: list[subprocess.Popen[bytes]],
    ) -> None:
        certs = tmp_path / "certs"
        assert sealgate("k8s", "cert", "--out", str(certs)).exit_code == 0
        port = free_port()
        proc = start_serve(
            [
                "--port",
                str(port),
                "--tls-cert",
                str(certs / "tls.crt"),
                "--tls-key",
                str(certs / "tls.key"),
            ],
            database_url=test_database_url,
            log=tmp_path / "serve.log",
        )
        stop.append(proc)
        wait_until_answering(f"https://127.0.0.1:{port}/healthz", verify=False, proc=proc)
        served = x509.load_pem_x509_certificate((certs / "tls.crt").read_bytes())
        for name in SERVICE_NAMES:
            peer = _handshake(port, ca=certs / "ca.crt", server_hostname=name)
            assert x509.load_der_x509_certificate(peer) == served
        # The name must be one of the Service's, and the CA must be the one made with it.
        with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
            _handshake(port, ca=certs / "ca.crt", server_hostname="sealgate.other.svc")
        other = tmp_path / "other"
        assert sealgate("k8s", "cert", "--out", str(other)).exit_code == 0
        with pytest.raises(ssl.SSLCertVerificationError, match="unable to get local issuer"):
            _handshake(port, ca=other / "ca.crt", server_hostname=SERVICE_NAMES[2])


class TestManifests:
    def test_prints_yaml_with_the_ca_bundle(self, sealgate, tmp_path: Path) -> None:
        assert sealgate("k8s", "cert", "--out", str(tmp_path)).exit_code == 0
        kek = tmp_path / "kek.b64"
        kek.write_text(base64.b64encode(bytes(range(32))).decode() + "\n")
        result = sealgate(
            "k8s",
            "manifests",
            "--namespace",
            "gate",
            "--image",
            "registry.lan/sealgate:9",
            "--replicas",
            "3",
            "--budget",
            "5",
            "--failure-mode",
            "open",
            "--ca-bundle",
            str(tmp_path / "ca.crt"),
            "--kek-file",
            str(kek),
        )
        assert result.exit_code == 0, result.output
        objects = list(yaml.safe_load_all(result.stdout))
        by_kind = {o["kind"]: o for o in objects}
        webhook = by_kind["ValidatingWebhookConfiguration"]["webhooks"][0]
        assert (
            base64.b64decode(webhook["clientConfig"]["caBundle"])
            == (tmp_path / "ca.crt").read_bytes()
        )
        assert (webhook["failurePolicy"], webhook["timeoutSeconds"]) == ("Ignore", 6)
        deployment = by_kind["Deployment"]
        assert deployment["metadata"]["namespace"] == "gate"
        assert deployment["spec"]["replicas"] == 3
        assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == (
            "registry.lan/sealgate:9"
        )
        assert by_kind["Secret"]["metadata"]["name"] == "sealgate-kek"
        # What is still missing is said in comments on top.
        assert "sealgate-settings" in result.stdout.split("---")[0]

    def test_defaults_follow_the_settings(self, sealgate) -> None:
        sealgate.env["SEALGATE_ADMISSION_BUDGET"] = "7"
        sealgate.env["SEALGATE_FAILURE_MODE"] = "open"
        result = sealgate("k8s", "manifests")
        assert result.exit_code == 0, result.output
        by_kind = {o["kind"]: o for o in yaml.safe_load_all(result.stdout)}
        webhook = by_kind["MutatingWebhookConfiguration"]["webhooks"][0]
        assert (webhook["failurePolicy"], webhook["timeoutSeconds"]) == ("Ignore", 8)
        assert by_kind["Deployment"]["spec"]["replicas"] == 2
        assert by_kind["Namespace"]["metadata"]["name"] == "sealgate-system"

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (["--budget", "40"], "--budget"),
            (["--kek-file", "/nonexistent/kek"], "--kek-file"),
            (["--ca-bundle", "/nonexistent/ca.crt"], "--ca-bundle"),
        ],
    )
    def test_bad_options_are_one_line(self, sealgate, args: list[str], message: str) -> None:
        result = sealgate("k8s", "manifests", *args)
        assert result.exit_code == 1
        assert result.stderr.startswith("error: ") and message in result.stderr

    def test_a_kek_that_is_not_32_bytes_is_refused(self, sealgate, tmp_path: Path) -> None:
        kek = tmp_path / "kek.b64"
        kek.write_text(base64.b64encode(b"short").decode())
        result = sealgate("k8s", "manifests", "--kek-file", str(kek))
        assert result.exit_code == 1
        assert "32 bytes" in result.stderr
