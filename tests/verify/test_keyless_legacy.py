"""Legacy cosign keyless ``.sig`` layers (SET only), verified by our own code.

The layers come from real signings by the local Sigstore instance (Fulcio certificate,
hashedrekord entry and SET from its Rekor) through ``sign_payload_keyless``; each
tampering is a separate refusal.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from app.errors import VerificationError
from app.signing.keyless import sign_payload_keyless
from app.signing.payloads import simple_signing_payload
from app.verify.keyless import KeylessIdentity, verify_legacy_keyless
from app.verify.model import SignatureFormat, SignatureKind
from tests.fixtures.sigstore import DEFAULT_ISSUER, SigstoreInstance

IMAGE_DIGEST = "sha256:" + "56" * 32
OTHER_DIGEST = "sha256:" + "78" * 32
REFERENCE = "127.0.0.1:5000/team/app"
IDENTITY = KeylessIdentity(subject="ci@example.com", issuer=DEFAULT_ISSUER)


@dataclass(frozen=True)
class LegacyLayer:
    """One ``.sig`` layer: its blob and cosign's annotations."""

    payload: bytes
    signature_b64: str
    certificate_pem: str
    chain_pem: str | None
    bundle_annotation: str


def sign_legacy_layers(instance: SigstoreInstance, payloads: list[bytes]) -> list[LegacyLayer]:
    """Sign each payload as cosign keyless does (a certificate and a Rekor entry each)."""
    layers = []
    for payload in payloads:
        signed = sign_payload_keyless(
            payload=payload,
            identity_token=instance.mint_identity_token("ci@example.com"),
            trust=instance.trust_config_path,
        )
        layers.append(
            LegacyLayer(
                payload=payload,
                signature_b64=signed.signature,
                certificate_pem=signed.certificate,
                chain_pem=signed.chain,
                bundle_annotation=signed.bundle,
            )
        )
    return layers


def verify(
    instance: SigstoreInstance,
    layer: LegacyLayer,
    *,
    identity: KeylessIdentity = IDENTITY,
    digest: str = IMAGE_DIGEST,
    trusted_root: Path | None = None,
) -> Any:
    return verify_legacy_keyless(
        payload=layer.payload,
        signature_b64=layer.signature_b64,
        certificate_pem=layer.certificate_pem,
        chain_pem=layer.chain_pem,
        bundle_annotation=layer.bundle_annotation,
        trusted_root_json=(trusted_root or instance.trusted_root_path).read_text(),
        identity=identity,
        expected_digest=digest,
    )


def _payload(digest: str, **annotations: str) -> bytes:
    return simple_signing_payload(
        docker_reference=REFERENCE, digest=digest, annotations=annotations
    )


@pytest.fixture(scope="module")
def layers(sigstore_instance: SigstoreInstance) -> list[LegacyLayer]:
    return sign_legacy_layers(
        sigstore_instance,
        [_payload(IMAGE_DIGEST, build="7"), _payload(IMAGE_DIGEST, build="8")],
    )


def _edit_annotation(layer: LegacyLayer, edit: Any) -> LegacyLayer:
    annotation = json.loads(layer.bundle_annotation)
    edit(annotation)
    return replace(layer, bundle_annotation=json.dumps(annotation))


def _foreign_ca() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP384R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sigstore")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA384())
    )
    return key, cert


class TestLegacyKeyless:
    def test_verifies_with_identity_log_time_and_annotations(
        self, sigstore_instance: SigstoreInstance, layers: list[LegacyLayer]
    ) -> None:
        verified = verify(sigstore_instance, layers[0])
        integrated = json.loads(layers[0].bundle_annotation)["Payload"]["integratedTime"]
        assert verified.format is SignatureFormat.legacy
        assert verified.kind is SignatureKind.keyless
        assert (verified.subject, verified.issuer) == ("ci@example.com", DEFAULT_ISSUER)
        assert verified.signed_at == dt.datetime.fromtimestamp(integrated, tz=dt.UTC)
        assert verified.tlog is True
        assert verified.digest == IMAGE_DIGEST
        assert verified.annotations == {"build": "7"}

    def test_chain_annotation_is_optional(
        self, sigstore_instance: SigstoreInstance, layers: list[LegacyLayer]
    ) -> None:
        assert verify(sigstore_instance, replace(layers[0], chain_pem=None)).subject

    def test_tampered_set_is_refused(
        self, sigstore_instance: SigstoreInstance, layers: list[LegacyLayer]
    ) -> None:
        def flip(annotation: dict[str, Any]) -> None:
            raw = bytearray(base64.b64decode(annotation["SignedEntryTimestamp"]))
            raw[-1] ^= 0x01
            annotation["SignedEntryTimestamp"] = base64.b64encode(raw).decode()

        with pytest.raises(VerificationError) as caught:
            verify(sigstore_instance, _edit_annotation(layers[0], flip))
        assert "SET" in caught.value.message

    def test_moved_integrated_time_is_refused(
        self, sigstore_instance: SigstoreInstance, layers: list[LegacyLayer]
    ) -> None:
        def move(annotation: dict[str, Any]) -> None:
            annotation["Payload"]["integratedTime"] -= 60

        with pytest.raises(VerificationError) as caught:
            verify(sigstore_instance, _edit_annotation(layers[0], move))
        assert "SET" in caught.value.message

    @pytest.mark.parametrize("when", [10**15, -(10**15), 2**70])
    def test_out_of_range_integrated_time_is_refused_not_raised(
        self, sigstore_instance: SigstoreInstance, layers: list[LegacyLayer], when: int
    ) -> None:
        # A hostile registry's value must be a refusal, never an exception that sinks the
        # verification of every other signature of the image.
        def move(annotation: dict[str, Any]) -> None:
            annotation["Payload"]["integratedTime"] = when

        with pytest.raises(VerificationError) as caught:
            verify(sigstore_instance, _edit_annotation(layers[0], move))
        assert caught.value.code == "verify.malformed_signature"

    def test_tampered_payload_is_refused(
        self, sigstore_instance: SigstoreInstance, layers: list[LegacyLayer]
    ) -> None:
        tampered = replace(layers[0], payload=_payload(OTHER_DIGEST, build="7"))
        with pytest.raises(VerificationError) as caught:
            verify(sigstore_instance, tampered, digest=OTHER_DIGEST)
        assert caught.value.code == "verify.keyless_failed"
        assert "payload digest" in caught.value.message

    def test_log_entry_of_another_signature_is_refused(
        self, sigstore_instance: SigstoreInstance, layers: list[LegacyLayer]
    ) -> None:
        # A genuine entry with a valid SET, but for the other layer's signature.
        borrowed = replace(layers[0], bundle_annotation=layers[1].bundle_annotation)
        with pytest.raises(VerificationError) as caught:
            verify(sigstore_instance, borrowed)
        assert "another signature" in caught.value.message

    def test_chain_annotation_with_a_foreign_ca_is_refused(
        self, sigstore_instance: SigstoreInstance, layers: list[LegacyLayer]
    ) -> None:
        _, foreign = _foreign_ca()
        pem = foreign.public_bytes(serialization.Encoding.PEM).decode()
        with pytest.raises(VerificationError) as caught:
            verify(sigstore_instance, replace(layers[0], chain_pem=pem))
        assert caught.value.code == "verify.untrusted_chain"

    def test_certificate_from_a_foreign_ca_is_refused(
        self, sigstore_instance: SigstoreInstance, layers: list[LegacyLayer]
    ) -> None:
        # The attacker's own CA issues a certificate for the trusted identity.
        ca_key, ca_cert = _foreign_ca()
        genuine = x509.load_pem_x509_certificate(layers[0].certificate_pem.encode())
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(genuine.not_valid_before_utc)
            .not_valid_after(genuine.not_valid_after_utc)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False
            )
        )
        for extension in genuine.extensions:
            if extension.oid.dotted_string.startswith(("2.5.29.17", "1.3.6.1.4.1.57264.")):
                builder = builder.add_extension(extension.value, critical=extension.critical)
        forged = builder.sign(ca_key, hashes.SHA384())
        signature = key.sign(layers[0].payload, ec.ECDSA(hashes.SHA256()))
        layer = replace(
            layers[0],
            signature_b64=base64.b64encode(signature).decode(),
            certificate_pem=forged.public_bytes(serialization.Encoding.PEM).decode(),
            chain_pem=None,
        )
        with pytest.raises(VerificationError) as caught:
            verify(sigstore_instance, layer)
        assert caught.value.code == "verify.untrusted_chain"

    def test_sct_from_a_ct_log_outside_the_trusted_root_is_refused(
        self, sigstore_instance: SigstoreInstance, layers: list[LegacyLayer], tmp_path: Path
    ) -> None:
        root = json.loads(sigstore_instance.trusted_root_path.read_text())
        root["ctlogs"] = []
        path = tmp_path / "root-without-ct.json"
        path.write_text(json.dumps(root))
        with pytest.raises(VerificationError) as caught:
            verify(sigstore_instance, layers[0], trusted_root=path)
        assert "SCT" in caught.value.message

    def test_wrong_identity_is_refused(
        self, sigstore_instance: SigstoreInstance, layers: list[LegacyLayer]
    ) -> None:
        for identity in (
            KeylessIdentity(subject="other@example.com", issuer=DEFAULT_ISSUER),
            KeylessIdentity(subject="ci@example.com", issuer_regex=r"https://accounts\..*"),
        ):
            with pytest.raises(VerificationError) as caught:
                verify(sigstore_instance, layers[0], identity=identity)
            assert caught.value.code == "verify.identity_mismatch"

    def test_replayed_onto_another_digest_is_refused(
        self, sigstore_instance: SigstoreInstance, layers: list[LegacyLayer]
    ) -> None:
        with pytest.raises(VerificationError) as caught:
            verify(sigstore_instance, layers[0], digest=OTHER_DIGEST)
        assert caught.value.code == "verify.digest_mismatch"

    def test_missing_rekor_bundle_is_refused(
        self, sigstore_instance: SigstoreInstance, layers: list[LegacyLayer]
    ) -> None:
        with pytest.raises(VerificationError) as caught:
            verify(sigstore_instance, replace(layers[0], bundle_annotation=""))
        assert caught.value.code == "verify.no_tlog"

    @pytest.mark.parametrize(
        "annotation",
        ["{", "[]", '{"SignedEntryTimestamp": "x"}', '{"SignedEntryTimestamp": "x", "Payload": 1}'],
    )
    def test_malformed_rekor_bundle_is_refused(
        self, sigstore_instance: SigstoreInstance, layers: list[LegacyLayer], annotation: str
    ) -> None:
        with pytest.raises(VerificationError) as caught:
            verify(sigstore_instance, replace(layers[0], bundle_annotation=annotation))
        assert caught.value.code == "verify.malformed_signature"

    def test_malformed_certificate_and_signature_are_refused(
        self, sigstore_instance: SigstoreInstance, layers: list[LegacyLayer]
    ) -> None:
        for layer in (
            replace(layers[0], certificate_pem="not a certificate"),
            replace(layers[0], signature_b64="%%%"),
        ):
            with pytest.raises(VerificationError) as caught:
                verify(sigstore_instance, layer)
            assert caught.value.code == "verify.malformed_signature"

    def test_another_instances_log_is_not_trusted(
        self,
        sigstore_instance: SigstoreInstance,
        skewed_sigstore_instance: SigstoreInstance,
        layers: list[LegacyLayer],
    ) -> None:
        layer = replace(layers[0], chain_pem=None)
        with pytest.raises(VerificationError) as caught:
            verify(
                sigstore_instance,
                layer,
                trusted_root=skewed_sigstore_instance.trusted_root_path,
            )
        assert "no transparency log" in caught.value.message

    def test_certificate_not_valid_at_integrated_time_is_refused(
        self, skewed_sigstore_instance: SigstoreInstance
    ) -> None:
        (layer,) = sign_legacy_layers(skewed_sigstore_instance, [_payload(IMAGE_DIGEST)])
        with pytest.raises(VerificationError) as caught:
            verify(skewed_sigstore_instance, layer)
        assert caught.value.code == "verify.untrusted_chain"
        assert "not valid at validation time" in caught.value.message
