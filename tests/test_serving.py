"""HTTPS serving: a certificate rotated on disk is served to new connections while a
connection made before keeps working; a broken pair is refused at start and, later, ignored."""

from __future__ import annotations

import http.client
import os
import shutil
import ssl
import subprocess
import time
from pathlib import Path

import pytest

from app.errors import ConfigError
from app.serving import ReloadingCertificate, TlsFiles
from tests.fixtures.registry import free_port
from tests.fixtures.serve import start_serve, wait_until_answering
from tests.fixtures.tls import make_tls_files


def _trusting(ca: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca))


def _get(connection: http.client.HTTPSConnection) -> int:
    connection.request("GET", "/healthz")
    response = connection.getresponse()
    response.read()
    return response.status


def _peer(connection: http.client.HTTPSConnection) -> bytes:
    assert isinstance(connection.sock, ssl.SSLSocket)
    certificate = connection.sock.getpeercert(binary_form=True)
    assert certificate is not None
    return certificate


def _replace(source: Path, target: Path) -> None:
    """Swap ``target`` for a copy of ``source`` in one rename, as the kubelet does."""
    staged = target.with_suffix(".new")
    shutil.copyfile(source, staged)
    os.replace(staged, target)


class TestRotation:
    def test_new_connections_get_the_new_certificate_old_ones_keep_working(
        self, test_database_url: str, tmp_path: Path, stop: list[subprocess.Popen[bytes]]
    ) -> None:
        first = make_tls_files(_mkdir(tmp_path / "first"))
        second = make_tls_files(_mkdir(tmp_path / "second"))
        served = TlsFiles(cert=tmp_path / "tls.crt", key=tmp_path / "tls.key")
        shutil.copyfile(first.server_cert, served.cert)
        shutil.copyfile(first.server_key, served.key)
        port = free_port()
        proc = start_serve(
            ["--port", str(port), "--tls-cert", str(served.cert), "--tls-key", str(served.key)],
            database_url=test_database_url,
            log=tmp_path / "serve.log",
        )
        stop.append(proc)
        wait_until_answering(
            f"https://127.0.0.1:{port}/healthz", verify=_trusting(first.ca_cert), proc=proc
        )
        before = http.client.HTTPSConnection(
            "127.0.0.1", port, context=_trusting(first.ca_cert), timeout=5
        )
        assert _get(before) == 200
        old_socket, old_peer = before.sock, _peer(before)

        # Half a rotation (new certificate, old key) is refused: the old pair stays live.
        _replace(second.server_cert, served.cert)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            assert _get(before) == 200
            probe = http.client.HTTPSConnection(
                "127.0.0.1", port, context=_trusting(first.ca_cert), timeout=5
            )
            assert _get(probe) == 200
            probe.close()
            time.sleep(0.3)

        _replace(second.server_key, served.key)
        deadline = time.monotonic() + 15
        while True:
            assert _get(before) == 200  # requests on the old connection keep being answered
            fresh = http.client.HTTPSConnection(
                "127.0.0.1", port, context=_trusting(second.ca_cert), timeout=5
            )
            try:
                assert _get(fresh) == 200
                break
            except ssl.SSLCertVerificationError:
                assert time.monotonic() < deadline, "the new certificate was never served"
                time.sleep(0.3)
            finally:
                fresh.close()
        with pytest.raises(ssl.SSLCertVerificationError):
            _get(http.client.HTTPSConnection("127.0.0.1", port, context=_trusting(first.ca_cert)))
        # The connection made before the rotation is the same one, still on the old certificate.
        assert _get(before) == 200
        assert before.sock is old_socket and _peer(before) == old_peer
        before.close()
        assert "TLS certificate reloaded" in (tmp_path / "serve.log").read_text()


class TestLoading:
    def test_a_pair_that_does_not_match_is_refused_at_start(self, tmp_path: Path) -> None:
        first = make_tls_files(_mkdir(tmp_path / "first"))
        second = make_tls_files(_mkdir(tmp_path / "second"))
        with pytest.raises(ConfigError, match="cannot serve TLS") as caught:
            ReloadingCertificate(TlsFiles(cert=first.server_cert, key=second.server_key))
        assert caught.value.code == "config.tls"

    def test_missing_files_are_refused_at_start(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match="No such file"):
            ReloadingCertificate(TlsFiles(cert=tmp_path / "none.crt", key=tmp_path / "none.key"))

    def test_unchanged_or_broken_files_keep_the_current_chain(self, tmp_path: Path) -> None:
        first = make_tls_files(_mkdir(tmp_path / "first"))
        served = TlsFiles(cert=tmp_path / "tls.crt", key=tmp_path / "tls.key")
        shutil.copyfile(first.server_cert, served.cert)
        shutil.copyfile(first.server_key, served.key)
        certificate = ReloadingCertificate(served)
        assert certificate.reload_if_changed() is False
        _replace(tmp_path / "first" / "ca.pem", served.key)  # not a key at all
        assert certificate.reload_if_changed() is False
        served.key.unlink()
        assert certificate.reload_if_changed() is False
        shutil.copyfile(first.server_key, served.key)
        assert certificate.reload_if_changed() is True

    def test_serve_refuses_a_broken_pair_in_one_line(self, sealgate, tmp_path: Path) -> None:
        first = make_tls_files(_mkdir(tmp_path / "first"))
        result = sealgate(
            "serve", "--tls-cert", str(first.server_cert), "--tls-key", str(first.ca_cert)
        )
        assert result.exit_code == 1
        assert result.stderr.startswith("error: cannot serve TLS with")
        assert "[config.tls]" in result.stderr


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path
