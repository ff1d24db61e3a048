"""Verifying candidate signatures against authorities: pure code over collected evidence.

``verify_candidates`` checks each candidate (a bundle referrer or a legacy ``.sig``
layer) against each authority until one accepts it, and keeps every refusal as a
``Rejection`` with a stable code, so a person can see why a signature did not count. A
hostile candidate that makes a verifier raise something unexpected is a rejection too;
it never sinks its neighbours. ``is_image_signature`` tells signatures *of* an image from
signed attestations *about* it, which never count as one.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from app.errors import Error
from app.signing.payloads import COSIGN_SIGN_PREDICATE
from app.verify.bundle import verify_bundle
from app.verify.evidence import BundleCandidate, Candidate
from app.verify.legacy import verify_legacy
from app.verify.model import Rejection, VerifiedSignature
from app.verify.trust import TrustAuthority

log = logging.getLogger(__name__)


def check_candidate(
    candidate: Candidate, *, authority: TrustAuthority, digest: str, image_name: str
) -> VerifiedSignature:
    """Verify one candidate against one authority for ``digest`` in the repository
    ``image_name``; raise the reason it does not verify (``verify.identity_mismatch`` when
    it was signed for another repository than the authority accepts)."""
    if isinstance(candidate, BundleCandidate):
        verified = verify_bundle(
            candidate.bundle,
            authority=authority,
            expected_digest=digest,
            signature_digest=candidate.signature_digest,
        )
    else:
        verified = verify_legacy(
            payload=candidate.payload,
            annotations=candidate.annotations,
            authority=authority,
            expected_digest=digest,
            signature_digest=candidate.signature_digest,
        )
    authority.signed_identity.check(
        verified.signed_identities, repository=image_name, authority=authority.name
    )
    return verified


def verify_candidates(
    candidates: Sequence[Candidate],
    *,
    authorities: Sequence[TrustAuthority],
    digest: str,
    image_name: str,
) -> tuple[list[VerifiedSignature], list[Rejection]]:
    """Verify each candidate against the authorities (first that accepts it wins) for
    ``digest`` in the repository ``image_name``."""
    verified: list[VerifiedSignature] = []
    rejections: list[Rejection] = []
    for candidate in candidates:
        refusals: list[Rejection] = []
        for authority in authorities:
            try:
                verified.append(
                    check_candidate(
                        candidate, authority=authority, digest=digest, image_name=image_name
                    )
                )
                break
            except Error as e:
                code, reason = e.code, e.message
            except Exception as e:  # a hostile candidate must not sink its neighbours
                log.warning(
                    "candidate raised unexpectedly",
                    extra={"signature_digest": candidate.signature_digest, "error": repr(e)[:200]},
                )
                code, reason = "evidence.malformed_signature", f"unreadable: {type(e).__name__}"
            refusals.append(
                Rejection(
                    source=candidate.source,
                    signature_digest=candidate.signature_digest,
                    authority=authority.name,
                    code=code,
                    reason=reason,
                )
            )
        else:
            rejections.extend(refusals)
    return verified, rejections


def is_image_signature(signature: VerifiedSignature) -> bool:
    """A signature *of* the image (cosign's sign predicate, or a simple-signing payload),
    as opposed to a signed attestation *about* it, which must never count as one."""
    return signature.predicate_type in (None, COSIGN_SIGN_PREDICATE)
