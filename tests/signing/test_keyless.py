"""Keyless signing against the local Sigstore instance (real Fulcio/Rekor/TSA code paths
of sigstore-python over HTTP on 127.0.0.1), checked by an independent verifier."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from app.errors import SigningError
from app.signing.keyless import (
    load_trust_config,
    parse_identity_token,
    sign_payload_keyless,
    sign_statement_keyless,
)
from app.signing.payloads import cosign_statement, simple_signing_payload
from tests.fixtures.sigstore import DEFAULT_ISSUER, SigstoreInstance

DIGEST = "sha256:" + "ab" * 32
REPOSITORY = "127.0.0.1:5000/team/app"


def _statement() -> bytes:
    return cosign_statement(digest=DIGEST, repository=REPOSITORY, annotations={"run": "42"})


class TestSignStatementKeyless:
    def test_bundle_holds_the_statement_the_identity_and_a_dsse_log_entry(
        self, sigstore_instance: SigstoreInstance
    ) -> None:
        statement = _statement()
        token = sigstore_instance.mint_identity_token("ci@example.com")

        bundle = json.loads(
            sign_statement_keyless(
                statement=statement,
                identity_token=token,
                trust=sigstore_instance.trust_config_path,
            )
        )

        assert bundle["mediaType"] == "application/vnd.dev.sigstore.bundle.v0.3+json"
        envelope = bundle["dsseEnvelope"]
        assert envelope["payloadType"] == "application/vnd.in-toto+json"
        assert base64.b64decode(envelope["payload"]) == statement
        material = bundle["verificationMaterial"]
        cert = x509.load_der_x509_certificate(base64.b64decode(material["certificate"]["rawBytes"]))
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert "ci@example.com" in san.get_values_for_type(x509.UniformResourceIdentifier)
        (entry,) = material["tlogEntries"]
        assert entry["kindVersion"] == {"kind": "dsse", "version": "0.0.1"}
        assert entry["inclusionPromise"]["signedEntryTimestamp"]
        body = json.loads(base64.b64decode(entry["canonicalizedBody"]))
        assert set(body["spec"]) == {"envelopeHash", "payloadHash", "signatures"}
        assert material["timestampVerificationData"]["rfc3161Timestamps"]

    def test_independent_verifier_accepts_the_bundle(
        self, sigstore_instance: SigstoreInstance, tmp_path: Path
    ) -> None:
        token = sigstore_instance.mint_identity_token("ci@example.com")
        bundle = tmp_path / "bundle.json"
        bundle.write_text(
            sign_statement_keyless(
                statement=_statement(),
                identity_token=token,
                trust=str(sigstore_instance.trust_config_path),
            )
        )

        ok = sigstore_instance.verify_with_sigstore_js(
            bundle, identity="ci@example.com", issuer=DEFAULT_ISSUER
        )
        wrong = sigstore_instance.verify_with_sigstore_js(bundle, identity="someone@example.com")

        assert ok.ok, ok.output
        assert ok.output["subjectAlternativeName"] == "ci@example.com"
        assert not wrong.ok
        assert "someone@example.com" in wrong.message

    def test_token_not_signed_by_the_identity_provider_is_refused(
        self, sigstore_instance: SigstoreInstance
    ) -> None:
        forged = sigstore_instance.mint_identity_token(
            "ci@example.com", key=ec.generate_private_key(ec.SECP256R1())
        )

        with pytest.raises(SigningError) as caught:
            sign_statement_keyless(
                statement=_statement(),
                identity_token=forged,
                trust=sigstore_instance.trust_config_path,
            )

        assert caught.value.code == "signing.sigstore"

    def test_expired_token_is_refused_before_any_request(
        self, sigstore_instance: SigstoreInstance
    ) -> None:
        expired = sigstore_instance.mint_identity_token("ci@example.com", lifetime=-60)

        with pytest.raises(SigningError) as caught:
            sign_statement_keyless(
                statement=_statement(),
                identity_token=expired,
                trust=sigstore_instance.trust_config_path,
            )

        assert caught.value.code == "signing.identity_token"

    @pytest.mark.parametrize("token", ["", "not-a-jwt", "a.b.c"])
    def test_malformed_token_is_refused(self, token: str) -> None:
        with pytest.raises(SigningError) as caught:
            parse_identity_token(token)
        assert caught.value.code == "signing.identity_token"

    def test_token_for_another_audience_is_refused(
        self, sigstore_instance: SigstoreInstance
    ) -> None:
        token = sigstore_instance.mint_identity_token("ci@example.com", audience="not-sigstore")
        with pytest.raises(SigningError) as caught:
            parse_identity_token(token)
        assert caught.value.code == "signing.identity_token"

    def test_statement_that_is_not_in_toto_is_refused(
        self, sigstore_instance: SigstoreInstance
    ) -> None:
        with pytest.raises(SigningError) as caught:
            sign_statement_keyless(
                statement=b'{"critical": {}}',
                identity_token=sigstore_instance.mint_identity_token("ci@example.com"),
                trust=sigstore_instance.trust_config_path,
            )
        assert caught.value.code == "signing.statement"
        assert caught.value.http_status == 400


def _openssl(command: str, *, cwd: Path) -> subprocess.CompletedProcess[str]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("openssl is not installed: run `sudo apt-get install openssl`")
    return subprocess.run(
        [openssl, *command.split()], cwd=cwd, capture_output=True, text=True, timeout=30
    )


class TestSignPayloadKeyless:
    def test_legacy_signature_checks_out_with_openssl(
        self, sigstore_instance: SigstoreInstance, tmp_path: Path
    ) -> None:
        # Independent of Sealgate's verifier: openssl checks the signature, the chain at
        # the log's integrated time and the SET, written from cosign's and Rekor's specs.
        payload = simple_signing_payload(
            docker_reference=REPOSITORY, digest=DIGEST, annotations={"run": "42"}
        )
        signed = sign_payload_keyless(
            payload=payload,
            identity_token=sigstore_instance.mint_identity_token("ci@example.com"),
            trust=sigstore_instance.trust_config_path,
        )
        annotations = signed.annotations()
        rekor = json.loads(annotations["dev.sigstore.cosign/bundle"])
        entry = rekor["Payload"]
        body = json.loads(base64.b64decode(entry["body"]))
        root = json.loads(sigstore_instance.trusted_root_path.read_text())
        (tmp_path / "payload").write_bytes(payload)
        (tmp_path / "sig").write_bytes(base64.b64decode(signed.signature))
        (tmp_path / "leaf.pem").write_text(annotations["dev.sigstore.cosign/certificate"])
        (tmp_path / "chain.pem").write_text(annotations["dev.sigstore.cosign/chain"])
        (tmp_path / "rekor.der").write_bytes(
            base64.b64decode(root["tlogs"][0]["publicKey"]["rawBytes"])
        )
        (tmp_path / "set").write_bytes(base64.b64decode(rekor["SignedEntryTimestamp"]))
        (tmp_path / "set-payload").write_text(
            json.dumps(
                {k: entry[k] for k in ("body", "integratedTime", "logID", "logIndex")},
                sort_keys=True,
                separators=(",", ":"),
            )
        )

        checks = [
            _openssl(command, cwd=tmp_path)
            for command in (
                "x509 -in leaf.pem -pubkey -noout -out leaf.pub",
                "dgst -sha256 -verify leaf.pub -signature sig payload",
                f"verify -CAfile chain.pem -attime {entry['integratedTime']} leaf.pem",
                "pkey -pubin -inform DER -in rekor.der -out rekor.pub",
                "dgst -sha256 -verify rekor.pub -signature set set-payload",
            )
        ]

        assert [c.returncode for c in checks] == [0] * len(checks), [c.stderr for c in checks]
        assert body["kind"] == "hashedrekord"
        assert body["spec"]["data"]["hash"]["value"] == hashlib.sha256(payload).hexdigest()
        assert body["spec"]["signature"]["content"] == signed.signature
        assert set(annotations) == {
            "dev.cosignproject.cosign/signature",
            "dev.sigstore.cosign/certificate",
            "dev.sigstore.cosign/chain",
            "dev.sigstore.cosign/bundle",
        }

    def test_openssl_refuses_the_certificate_after_its_validity(
        self, sigstore_instance: SigstoreInstance, tmp_path: Path
    ) -> None:
        signed = sign_payload_keyless(
            payload=b"{}",
            identity_token=sigstore_instance.mint_identity_token("ci@example.com"),
            trust=sigstore_instance.trust_config_path,
        )
        (tmp_path / "leaf.pem").write_text(signed.certificate)
        (tmp_path / "chain.pem").write_text(signed.chain)
        later = json.loads(signed.bundle)["Payload"]["integratedTime"] + 3600
        result = _openssl(f"verify -CAfile chain.pem -attime {later} leaf.pem", cwd=tmp_path)
        assert result.returncode != 0
        assert "expired" in result.stdout + result.stderr


class TestLoadTrustConfig:
    def test_reads_a_client_trust_config_file(self, sigstore_instance: SigstoreInstance) -> None:
        config = load_trust_config(sigstore_instance.trust_config_path)
        assert config.signing_config.get_fulcio().url == sigstore_instance.url

    def test_missing_file_is_a_signing_error(self, tmp_path: Path) -> None:
        with pytest.raises(SigningError) as caught:
            load_trust_config(tmp_path / "absent.json")
        assert caught.value.code == "signing.trust_config"
        assert "absent.json" in caught.value.message

    @pytest.mark.parametrize("content", ["{", "[]", '{"mediaType": "something/else"}'])
    def test_malformed_file_is_a_signing_error(self, tmp_path: Path, content: str) -> None:
        path = tmp_path / "trust.json"
        path.write_text(content)
        with pytest.raises(SigningError) as caught:
            load_trust_config(path)
        assert caught.value.code == "signing.trust_config"
