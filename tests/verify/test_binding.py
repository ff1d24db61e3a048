"""Binding: verified payloads must name the expected digest, or they do not count."""

from __future__ import annotations

import json

import pytest

from app.errors import EvidenceError, VerificationError
from app.verify.binding import bind_simple_signing, bind_statement
from tests.verify import cosign_wire as wire

DIGEST = "sha256:" + "ab" * 32
OTHER = "sha256:" + "cd" * 32


class TestStatement:
    def test_names_the_digest_among_several_subjects(self) -> None:
        doc = json.loads(wire.statement(OTHER))
        doc["subject"].append(
            {"name": "x", "digest": {"sha256": "ab" * 32}, "annotations": {"a": 1}}
        )
        claims = bind_statement(json.dumps(doc).encode(), expected_digest=DIGEST)
        assert claims.annotations == {"a": "1"}
        assert claims.predicate_type == "https://sigstore.dev/cosign/sign/v1"
        assert claims.predicate == {}

    def test_annotations_of_another_subject_are_not_taken(self) -> None:
        """Fails if the ``subject.digest.get(algorithm) == encoded`` condition in
        app/verify/binding.py (``bind_statement``) is removed, so that every subject's
        annotations are taken rather than the matching one's."""
        doc = json.loads(wire.statement(OTHER))
        doc["subject"][0]["annotations"] = {"env": "prod", "approved": "yes"}
        doc["subject"].append(
            {"name": "x", "digest": {"sha256": "ab" * 32}, "annotations": {"env": "dev"}}
        )
        claims = bind_statement(json.dumps(doc).encode(), expected_digest=DIGEST)
        assert claims.annotations == {"env": "dev"}

    def test_other_digest_is_a_mismatch(self) -> None:
        with pytest.raises(VerificationError) as e:
            bind_statement(wire.statement(OTHER), expected_digest=DIGEST)
        assert e.value.code == "verify.digest_mismatch"

    def test_same_hex_under_another_algorithm_is_a_mismatch(self) -> None:
        doc = json.loads(wire.statement(DIGEST))
        doc["subject"][0]["digest"] = {"sha512": "ab" * 32}
        with pytest.raises(VerificationError):
            bind_statement(json.dumps(doc).encode(), expected_digest=DIGEST)

    @pytest.mark.parametrize("payload", [b"[]", b"[" * 200_000, b'{"a":' * 200_000])
    def test_not_a_statement(self, payload: bytes) -> None:
        with pytest.raises(EvidenceError):
            bind_statement(payload, expected_digest=DIGEST)


class TestSimpleSigning:
    def test_binds_and_returns_optional_as_annotations(self) -> None:
        payload = wire.simple_signing(DIGEST, "r", optional={"ci": "yes"})
        assert bind_simple_signing(payload, expected_digest=DIGEST).annotations == {"ci": "yes"}

    def test_old_capitalised_key_is_read(self) -> None:
        payload = wire.simple_signing(DIGEST, "r").replace(
            b"docker-manifest-digest", b"Docker-manifest-digest"
        )
        bind_simple_signing(payload, expected_digest=DIGEST)

    def test_other_digest_is_a_mismatch(self) -> None:
        with pytest.raises(VerificationError) as e:
            bind_simple_signing(wire.simple_signing(OTHER, "r"), expected_digest=DIGEST)
        assert e.value.code == "verify.digest_mismatch"

    def test_other_payload_type_is_refused(self) -> None:
        payload = wire.simple_signing(DIGEST, "r").replace(
            b"cosign container image signature", b"atomic container signature"
        )
        with pytest.raises(VerificationError) as e:
            bind_simple_signing(payload, expected_digest=DIGEST)
        assert e.value.code == "verify.bad_payload"
