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
from app.verify.keyless_identity import KeylessIdentity
from app.verify.keyless_legacy import verify_legacy_keyless
from app.verify.model import SignatureFormat, SignatureKind
from tests.fixtures.sigstore import DEFAULT_ISSUER, LogKey, SigstoreInstance, trusted_root_with

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


def _own_ca() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A self-signed CA the test holds: foreign, unless a trusted root lists it."""
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
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


def _leaf(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    *,
    genuine: x509.Certificate,
    key: ec.EllipticCurvePrivateKey,
    digital_signature: bool | None = True,
    usages: tuple[x509.ObjectIdentifier, ...] = (ExtendedKeyUsageOID.CODE_SIGNING,),
    sct_log: LogKey | None = None,
) -> x509.Certificate:
    """A ten-minute leaf certificate for ``key`` issued by the CA ``ca_key``/``ca_cert``,
    naming the identity of the ``genuine`` Fulcio certificate (its SAN and Fulcio
    extensions). ``digital_signature`` sets the key usage (None: no KeyUsage extension),
    ``usages`` the extended key usages; ``sct_log`` embeds an SCT by that CT log."""
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(minutes=10))
        .add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if digital_signature is not None:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=digital_signature,
                content_commitment=False,
                key_encipherment=not digital_signature,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    for extension in genuine.extensions:
        if extension.oid.dotted_string.startswith(("2.5.29.17", "1.3.6.1.4.1.57264.")):
            builder = builder.add_extension(extension.value, critical=extension.critical)
    if sct_log is not None:
        # The SCT signs the certificate as it is without the SCT extension (the
        # precertificate's TBS), so sign that first and add the extension last.
        precertificate = builder.sign(ca_key, hashes.SHA384())
        builder = builder.add_extension(
            sct_log.sct_extension(
                tbs_precertificate=precertificate.tbs_certificate_bytes,
                issuer_key=ca_key.public_key(),
                timestamp=now,
            ),
            critical=False,
        )
    return builder.sign(ca_key, hashes.SHA384())


def _pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


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
        assert caught.value.code == "evidence.malformed_signature"

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
        _, foreign = _own_ca()
        pem = foreign.public_bytes(serialization.Encoding.PEM).decode()
        with pytest.raises(VerificationError) as caught:
            verify(sigstore_instance, replace(layers[0], chain_pem=pem))
        assert caught.value.code == "verify.untrusted_chain"

    def test_certificate_from_a_foreign_ca_is_refused(
        self, sigstore_instance: SigstoreInstance, layers: list[LegacyLayer]
    ) -> None:
        # The attacker's own CA issues a certificate for the trusted identity.
        ca_key, ca_cert = _own_ca()
        genuine = x509.load_pem_x509_certificate(layers[0].certificate_pem.encode())
        key = ec.generate_private_key(ec.SECP256R1())
        forged = _leaf(ca_key, ca_cert, genuine=genuine, key=key)
        signature = key.sign(layers[0].payload, ec.ECDSA(hashes.SHA256()))
        layer = replace(
            layers[0],
            signature_b64=base64.b64encode(signature).decode(),
            certificate_pem=_pem(forged),
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
        assert caught.value.code == "evidence.malformed_signature"

    def test_malformed_certificate_and_signature_are_refused(
        self, sigstore_instance: SigstoreInstance, layers: list[LegacyLayer]
    ) -> None:
        for layer in (
            replace(layers[0], certificate_pem="not a certificate"),
            replace(layers[0], signature_b64="%%%"),
        ):
            with pytest.raises(VerificationError) as caught:
                verify(sigstore_instance, layer)
            assert caught.value.code == "evidence.malformed_signature"

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


@pytest.fixture(scope="module")
def own_rekor() -> LogKey:
    return LogKey()


def _trusted_own_rekor(
    instance: SigstoreInstance,
    path: Path,
    log: LogKey,
    *,
    valid_from: dt.timedelta = dt.timedelta(days=-1),
    valid_until: dt.timedelta | None = None,
) -> Path:
    """The instance's trusted root that also trusts ``log``, from now + ``valid_from``
    (until now + ``valid_until`` when given)."""
    now = dt.datetime.now(dt.UTC)
    entry = log.trusted_root_entry(
        start=now + valid_from, end=now + valid_until if valid_until is not None else None
    )
    return trusted_root_with(instance, path, tlogs=[entry])


def _relogged(layer: LegacyLayer, log: LogKey, *, logged_key_pem: str | None = None) -> LegacyLayer:
    """``layer`` with a log entry by ``log`` (now) recording its signature, payload hash and
    ``logged_key_pem`` (by default the layer's own certificate)."""
    annotation = log.log_entry(
        payload=layer.payload,
        signature_b64=layer.signature_b64,
        public_key_pem=(logged_key_pem or layer.certificate_pem).encode(),
        integrated_time=int(dt.datetime.now(dt.UTC).timestamp()),
    )
    return replace(layer, bundle_annotation=annotation)


class TestLegacyKeylessEntriesOfALogTheTestHolds:
    """Entries whose SET is valid (signed by a log key of the test, in its own trusted
    root), so that only the check each test names can refuse them."""

    def test_relogged_genuine_signature_verifies(
        self,
        sigstore_instance: SigstoreInstance,
        layers: list[LegacyLayer],
        own_rekor: LogKey,
        tmp_path: Path,
    ) -> None:
        # The control: the builders make entries that verify, so a refusal below is the
        # check under test and not a mistake in the entry.
        root = _trusted_own_rekor(sigstore_instance, tmp_path / "root.json", own_rekor)
        verified = verify(sigstore_instance, _relogged(layers[0], own_rekor), trusted_root=root)
        assert verified.subject == "ci@example.com"
        assert verified.annotations == {"build": "7"}

    def test_entry_recording_another_key_is_refused(
        self,
        sigstore_instance: SigstoreInstance,
        layers: list[LegacyLayer],
        own_rekor: LogKey,
        tmp_path: Path,
    ) -> None:
        """Fails if the comparison of the logged public key with the certificate's
        (``logged != spki``) in app/verify/transparency.py (``verify_entry_body``) is removed.

        Same signature and payload hash as the layer, but the entry records the other
        layer's certificate; the signature itself verifies over the payload.
        """
        root = _trusted_own_rekor(sigstore_instance, tmp_path / "root.json", own_rekor)
        layer = _relogged(layers[0], own_rekor, logged_key_pem=layers[1].certificate_pem)
        with pytest.raises(VerificationError) as caught:
            verify(sigstore_instance, layer, trusted_root=root)
        assert caught.value.code == "verify.keyless_failed"
        assert "another signing key" in caught.value.message

    def test_logged_signature_that_does_not_verify_over_the_payload_is_refused(
        self,
        sigstore_instance: SigstoreInstance,
        layers: list[LegacyLayer],
        own_rekor: LogKey,
        tmp_path: Path,
    ) -> None:
        """Fails if the payload signature check (step 5, ``key.verify(signature, payload,
        ...)``) in app/verify/keyless_legacy.py (``verify_legacy_keyless``) is removed.

        The layer carries the other layer's signature (by another key, over another
        payload) and the entry, with a valid SET, records exactly that signature, this
        certificate and this payload's hash: every log-entry check passes.
        """
        root = _trusted_own_rekor(sigstore_instance, tmp_path / "root.json", own_rekor)
        bad = replace(layers[0], signature_b64=layers[1].signature_b64)
        with pytest.raises(VerificationError) as caught:
            verify(sigstore_instance, _relogged(bad, own_rekor), trusted_root=root)
        assert caught.value.code == "verify.keyless_failed"
        assert "does not verify over the payload" in caught.value.message

    @pytest.mark.parametrize(
        ("valid_from", "valid_until"),
        [
            (dt.timedelta(days=-2), dt.timedelta(days=-1)),  # expired before integratedTime
            (dt.timedelta(hours=1), None),  # valid only from after integratedTime
        ],
        ids=["expired", "not-yet-valid"],
    )
    def test_log_key_not_valid_at_integrated_time_is_refused(
        self,
        sigstore_instance: SigstoreInstance,
        layers: list[LegacyLayer],
        own_rekor: LogKey,
        tmp_path: Path,
        valid_from: dt.timedelta,
        valid_until: dt.timedelta | None,
    ) -> None:
        """Fails if the log key's ``validFor`` window is ignored (``log.validity.covers(when)``
        in app/verify/transparency.py, ``verify_set``): the SET verifies with the key, but the
        trusted root says the key did not sign for that log at ``integratedTime``."""
        root = _trusted_own_rekor(
            sigstore_instance,
            tmp_path / "root.json",
            own_rekor,
            valid_from=valid_from,
            valid_until=valid_until,
        )
        with pytest.raises(VerificationError) as caught:
            verify(sigstore_instance, _relogged(layers[0], own_rekor), trusted_root=root)
        assert caught.value.code == "verify.keyless_failed"
        assert "in the trusted root valid at" in caught.value.message


class TestLegacyKeylessCertificatesOfACaTheTestHolds:
    """Leaf certificates from a CA and CT log of the test (in its own trusted root), with
    entries by its own log, so that only the certificate's key usage can refuse them."""

    def _layer_and_root(
        self,
        instance: SigstoreInstance,
        genuine_layer: LegacyLayer,
        path: Path,
        **leaf_options: Any,
    ) -> tuple[LegacyLayer, Path]:
        ca_key, ca_cert = _own_ca()
        ct_log, rekor = LogKey(), LogKey()
        genuine = x509.load_pem_x509_certificate(genuine_layer.certificate_pem.encode())
        key = ec.generate_private_key(ec.SECP256R1())
        leaf = _leaf(ca_key, ca_cert, genuine=genuine, key=key, sct_log=ct_log, **leaf_options)
        signature = key.sign(genuine_layer.payload, ec.ECDSA(hashes.SHA256()))
        layer = replace(
            genuine_layer,
            signature_b64=base64.b64encode(signature).decode(),
            certificate_pem=_pem(leaf),
            chain_pem=_pem(ca_cert),
        )
        since = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
        root = trusted_root_with(
            instance,
            path,
            tlogs=[rekor.trusted_root_entry(start=since)],
            ctlogs=[ct_log.trusted_root_entry(start=since)],
            certificate_authorities=[(ca_cert, since)],
        )
        return _relogged(layer, rekor), root

    def test_code_signing_leaf_verifies(
        self, sigstore_instance: SigstoreInstance, layers: list[LegacyLayer], tmp_path: Path
    ) -> None:
        # The control: with codeSigning and digitalSignature the same construction verifies.
        layer, root = self._layer_and_root(sigstore_instance, layers[0], tmp_path / "root.json")
        verified = verify(sigstore_instance, layer, trusted_root=root)
        assert (verified.subject, verified.issuer) == ("ci@example.com", DEFAULT_ISSUER)

    @pytest.mark.parametrize(
        ("leaf_options", "message"),
        [
            ({"digital_signature": False}, "not for code signing"),
            ({"usages": (ExtendedKeyUsageOID.SERVER_AUTH,)}, "not for code signing"),
            ({"digital_signature": None}, "lacks key usage extensions"),
        ],
        ids=["no-digitalSignature", "no-codeSigning", "no-KeyUsage"],
    )
    def test_leaf_not_for_code_signing_is_refused(
        self,
        sigstore_instance: SigstoreInstance,
        layers: list[LegacyLayer],
        tmp_path: Path,
        leaf_options: dict[str, Any],
        message: str,
    ) -> None:
        """Fails if the code-signing key-usage check (``_check_code_signing``) in
        app/verify/keyless_legacy.py (``verify_legacy_keyless``) is removed: the leaf chains to a
        trusted CA, carries a valid SCT and is logged with a valid SET."""
        layer, root = self._layer_and_root(
            sigstore_instance, layers[0], tmp_path / "root.json", **leaf_options
        )
        with pytest.raises(VerificationError) as caught:
            verify(sigstore_instance, layer, trusted_root=root)
        assert caught.value.code == "verify.keyless_failed"
        assert message in caught.value.message
