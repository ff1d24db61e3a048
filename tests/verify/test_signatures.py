"""One hostile candidate cannot sink the verification of the others."""

from __future__ import annotations

from typing import Any

import pytest

from app.verify import signatures as verify_flow
from app.verify.evidence import LegacyCandidate
from app.verify.model import SignatureFormat, SignatureKind, VerifiedSignature
from app.verify.trust import key_authority
from tests.verify import cosign_wire as wire

DIGEST = "sha256:" + "ab" * 32


def test_an_exception_in_one_candidate_is_a_rejection(monkeypatch: pytest.MonkeyPatch) -> None:
    hostile = LegacyCandidate(signature_digest="sha256:" + "01" * 32, layer_digest="x", payload=b"")
    good = LegacyCandidate(signature_digest="sha256:" + "02" * 32, layer_digest="y", payload=b"")
    verified = VerifiedSignature(
        format=SignatureFormat.legacy,
        kind=SignatureKind.key,
        authority="a",
        digest=DIGEST,
        signature_digest=good.signature_digest,
    )

    def check(candidate: Any, **_: Any) -> VerifiedSignature:
        if candidate is hostile:
            raise OverflowError("date value out of range")
        return verified

    monkeypatch.setattr(verify_flow, "check_candidate", check)
    authority = key_authority(name="a", keys=[wire.public_pem(wire.new_key())])

    signatures, rejections = verify_flow.verify_candidates(
        [hostile, good], authorities=[authority], digest=DIGEST, image_name="ghcr.io/acme/app"
    )

    assert signatures == [verified]
    (rejection,) = rejections
    assert rejection.code == "evidence.malformed_signature"
    assert rejection.signature_digest == hostile.signature_digest
