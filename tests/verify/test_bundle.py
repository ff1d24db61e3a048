"""Key-signed Sigstore bundles: what verifies, and every way a forged one is refused."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from app.db.models import AuthorityKind
from app.errors import EvidenceError, VerificationError
from app.policy.input import SignatureFacts
from app.verify.bundle import parse_bundle, verify_bundle
from app.verify.model import SignatureFormat, SignatureKind
from app.verify.trust import TrustAuthority, key_authority
from tests.verify import cosign_wire as wire

DIGEST = "sha256:" + "ab" * 32
OTHER = "sha256:" + "cd" * 32


def authority_for(*keys: wire.PrivateKey, name: str = "team") -> TrustAuthority:
    return key_authority(name=name, keys=[wire.public_pem(k) for k in keys])


class TestDsseKeyBundles:
    @pytest.mark.parametrize(
        "algorithm", ["ecdsa-p256", "ecdsa-p384", "ed25519", "rsa-3072", "rsa-4096"]
    )
    def test_verifies_each_supported_key_type(self, algorithm: str) -> None:
        key = wire.new_key(algorithm)
        bundle = wire.dsse_bundle(key, wire.statement(DIGEST))
        authority = authority_for(key)

        verified = verify_bundle(
            bundle, authority=authority, expected_digest=DIGEST, signature_digest=OTHER
        )

        assert verified.format is SignatureFormat.bundle
        assert verified.kind is SignatureKind.key
        assert verified.key_id == authority.keys[0].key_id
        assert verified.authority == "team"
        assert verified.digest == DIGEST
        assert verified.signature_digest == OTHER
        assert verified.predicate_type == "https://sigstore.dev/cosign/sign/v1"
        assert verified.tlog is False

    def test_second_key_of_authority_verifies_and_hint_is_not_trusted(self) -> None:
        signer, other = wire.new_key(), wire.new_key()
        doc = json.loads(wire.dsse_bundle(signer, wire.statement(DIGEST)))
        doc["verificationMaterial"]["publicKey"]["hint"] = base64.b64encode(b"x" * 32).decode()
        authority = authority_for(other, signer)

        verified = verify_bundle(
            json.dumps(doc).encode(), authority=authority, expected_digest=DIGEST
        )

        assert verified.key_id == authority.keys[1].key_id

    def test_signed_annotations_on_the_subject_are_reported(self) -> None:
        key = wire.new_key()
        doc = json.loads(wire.statement(DIGEST))
        doc["subject"][0]["annotations"] = {"build": "42"}
        bundle = wire.dsse_bundle(key, json.dumps(doc).encode())

        verified = verify_bundle(bundle, authority=authority_for(key), expected_digest=DIGEST)

        assert verified.annotations == {"build": "42"}

    def test_annotations_of_another_subject_reach_neither_signature_nor_policy(self) -> None:
        """Fails if app/verify/binding.py (``bind_statement``) takes the annotations of
        every in-toto subject instead of only the subject that names the image digest.

        The statement's first subject is another artifact whose annotations claim more
        than the image's own; a policy input built from the verified signature carries
        none of them either.
        """
        key = wire.new_key()
        doc = json.loads(wire.statement(OTHER, name="other"))
        doc["subject"][0]["annotations"] = {"env": "prod", "approved-by": "release-board"}
        doc["subject"].append(
            {"name": "repo", "digest": {"sha256": "ab" * 32}, "annotations": {"env": "dev"}}
        )
        bundle = wire.dsse_bundle(key, json.dumps(doc).encode())

        verified = verify_bundle(bundle, authority=authority_for(key), expected_digest=DIGEST)

        assert verified.annotations == {"env": "dev"}
        facts = json.dumps(SignatureFacts.from_verified(verified).model_dump(mode="json"))
        assert "release-board" not in facts and "prod" not in facts

    def test_attestation_predicate_is_reported(self) -> None:
        key = wire.new_key()
        doc = json.loads(wire.statement(DIGEST, predicate_type="https://slsa.dev/provenance/v1"))
        doc["predicate"] = {"buildDefinition": {"buildType": "https://example/ci"}}
        bundle = wire.dsse_bundle(key, json.dumps(doc).encode())

        verified = verify_bundle(bundle, authority=authority_for(key), expected_digest=DIGEST)

        assert verified.predicate_type == "https://slsa.dev/provenance/v1"
        assert verified.predicate == doc["predicate"]

    def test_refuses_tampered_payload(self) -> None:
        key = wire.new_key()
        signed = wire.statement(DIGEST)
        tampered = wire.statement(DIGEST, name="evil")
        bundle = wire.dsse_bundle(key, tampered, signed_payload=signed)

        with pytest.raises(VerificationError) as e:
            verify_bundle(bundle, authority=authority_for(key), expected_digest=DIGEST)
        assert e.value.code == "verify.bad_signature"

    def test_refuses_signature_replayed_onto_another_digest(self) -> None:
        key = wire.new_key()
        bundle = wire.dsse_bundle(key, wire.statement(OTHER))

        with pytest.raises(VerificationError) as e:
            verify_bundle(bundle, authority=authority_for(key), expected_digest=DIGEST)
        assert e.value.code == "verify.digest_mismatch"
        assert OTHER in e.value.message

    def test_refuses_wrong_key(self) -> None:
        bundle = wire.dsse_bundle(wire.new_key(), wire.statement(DIGEST))

        with pytest.raises(VerificationError) as e:
            verify_bundle(bundle, authority=authority_for(wire.new_key()), expected_digest=DIGEST)
        assert e.value.code == "verify.bad_signature"

    def test_refuses_garbage_signature_with_correct_payload(self) -> None:
        # The policy-controller PR #1971 class: the payload names the image, the
        # signature is junk; nothing about the payload may count before the signature.
        key = wire.new_key()
        bundle = wire.dsse_bundle(key, wire.statement(DIGEST), signature=b"\x30\x06" + b"\x00" * 6)

        with pytest.raises(VerificationError) as e:
            verify_bundle(bundle, authority=authority_for(key), expected_digest=DIGEST)
        assert e.value.code == "verify.bad_signature"

    def test_refuses_envelope_without_signatures(self) -> None:
        key = wire.new_key()
        doc = json.loads(wire.dsse_bundle(key, wire.statement(DIGEST)))
        doc["dsseEnvelope"]["signatures"] = []

        with pytest.raises(VerificationError) as e:
            verify_bundle(
                json.dumps(doc).encode(), authority=authority_for(key), expected_digest=DIGEST
            )
        assert e.value.code == "verify.bad_envelope"

    def test_refuses_envelope_with_two_signatures(self) -> None:
        key = wire.new_key()
        bundle = wire.dsse_bundle(key, wire.statement(DIGEST), extra_signatures=1)

        with pytest.raises(VerificationError) as e:
            verify_bundle(bundle, authority=authority_for(key), expected_digest=DIGEST)
        assert e.value.code == "verify.bad_envelope"

    def test_refuses_other_payload_type(self) -> None:
        key = wire.new_key()
        bundle = wire.dsse_bundle(key, wire.statement(DIGEST), payload_type="text/plain")

        with pytest.raises(VerificationError) as e:
            verify_bundle(bundle, authority=authority_for(key), expected_digest=DIGEST)
        assert e.value.code == "verify.bad_envelope"

    def test_refuses_signed_payload_that_is_not_a_statement(self) -> None:
        key = wire.new_key()
        bundle = wire.dsse_bundle(key, b'{"hello": "world"}')

        with pytest.raises(EvidenceError):
            verify_bundle(bundle, authority=authority_for(key), expected_digest=DIGEST)

    def test_refuses_keyless_bundle_for_a_key_authority(self) -> None:
        key = wire.new_key()
        doc = json.loads(wire.dsse_bundle(key, wire.statement(DIGEST)))
        doc["verificationMaterial"] = {"certificate": {"rawBytes": "AAAA"}, "tlogEntries": []}

        with pytest.raises(VerificationError) as e:
            verify_bundle(
                json.dumps(doc).encode(), authority=authority_for(key), expected_digest=DIGEST
            )
        assert e.value.code == "verify.wrong_kind"


class TestMessageSignatureBundles:
    def test_verifies_signature_over_the_image_digest(self) -> None:
        key = wire.new_key()
        verified = verify_bundle(
            wire.message_bundle(key, DIGEST), authority=authority_for(key), expected_digest=DIGEST
        )
        assert verified.kind is SignatureKind.key
        assert verified.predicate_type is None

    def test_refuses_message_signature_for_another_digest(self) -> None:
        key = wire.new_key()
        with pytest.raises(VerificationError) as e:
            verify_bundle(
                wire.message_bundle(key, OTHER),
                authority=authority_for(key),
                expected_digest=DIGEST,
            )
        assert e.value.code == "verify.digest_mismatch"

    def test_refuses_message_signature_by_another_key(self) -> None:
        with pytest.raises(VerificationError) as e:
            verify_bundle(
                wire.message_bundle(wire.new_key(), DIGEST),
                authority=authority_for(wire.new_key()),
                expected_digest=DIGEST,
            )
        assert e.value.code == "verify.bad_signature"

    def test_refuses_message_digest_swapped_under_a_valid_signature(self) -> None:
        key = wire.new_key()
        doc = json.loads(wire.message_bundle(key, OTHER))
        doc["messageSignature"]["messageDigest"]["digest"] = wire.b64(bytes.fromhex("ab" * 32))
        with pytest.raises(VerificationError) as e:
            verify_bundle(
                json.dumps(doc).encode(), authority=authority_for(key), expected_digest=DIGEST
            )
        assert e.value.code == "verify.bad_signature"


class TestMalformedBundles:
    @pytest.mark.parametrize(
        "data",
        [
            b"",
            b"not json",
            b"[]",
            b'{"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json"}',
            json.dumps(
                {
                    "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
                    "verificationMaterial": {"publicKey": {"hint": "x"}},
                }
            ).encode(),
            json.dumps(
                {
                    "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
                    "verificationMaterial": {"publicKey": {}},
                    "dsseEnvelope": {"payload": "!!!", "payloadType": "x", "signatures": []},
                }
            ).encode(),
            json.dumps(
                {
                    "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
                    "verificationMaterial": {"publicKey": {}},
                    "dsseEnvelope": {"payload": "e30=", "payloadType": "x", "signatures": "x"},
                }
            ).encode(),
            b"{" * 100_000,
            b"[" * 100_000,
            b" " * (1024 * 1024 + 1),
        ],
        ids=[
            "empty",
            "text",
            "array",
            "no-material",
            "no-content",
            "bad-b64",
            "sigs-not-list",
            "deep-object",
            "deep-array",
            "oversized",
        ],
    )
    def test_refused_with_a_clear_error(self, data: bytes) -> None:
        with pytest.raises(EvidenceError) as e:
            parse_bundle(data)
        assert e.value.code == "evidence.malformed_bundle"
        assert e.value.message.startswith("malformed Sigstore bundle")

    def test_unknown_media_type(self) -> None:
        doc = json.loads(wire.dsse_bundle(wire.new_key(), wire.statement(DIGEST)))
        doc["mediaType"] = "application/vnd.example.bundle+json"
        with pytest.raises(EvidenceError) as e:
            parse_bundle(json.dumps(doc).encode())
        assert e.value.code == "evidence.unsupported_media_type"

    def test_keyless_authority_refuses_key_bundle(self) -> None:
        from app.verify.keyless_identity import parse_identity
        from app.verify.trust import keyless_authority
        from app.verify.trusted_root import TrustedRootRef

        authority = keyless_authority(
            name="ci",
            identity=parse_identity(subject="a@b", issuer="https://issuer"),
            trusted_root=TrustedRootRef.builtin("public-good"),
        )
        assert authority.kind is AuthorityKind.keyless
        bundle = wire.dsse_bundle(wire.new_key(), wire.statement(DIGEST))
        with pytest.raises(VerificationError) as e:
            verify_bundle(bundle, authority=authority, expected_digest=DIGEST)
        assert e.value.code == "verify.wrong_kind"


def test_p256_signature_made_with_sha512_is_refused() -> None:
    key = wire.new_key()
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    payload = wire.statement(DIGEST)
    from cryptography.hazmat.primitives import hashes

    sig = key.sign(wire.pae(wire.IN_TOTO, payload), ec.ECDSA(hashes.SHA512()))
    with pytest.raises(VerificationError):
        verify_bundle(
            wire.dsse_bundle(key, payload, signature=sig),
            authority=authority_for(key),
            expected_digest=DIGEST,
        )
