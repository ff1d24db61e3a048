"""The verify flow: image reference in, verified signatures (and reasons for the rest) out.

``verify_image`` answers ``sealgate verify`` and ``POST /v1/verify``: resolve the reference
to a digest, collect evidence from the registry, and check every candidate against the
trust the caller chose (a public key, a stored authority, or a keyless identity with a
trusted root). ``verified_signatures_for_policy`` does the same with every stored
authority whose scope covers the image; the policy input is built from its result only.

Each candidate is verified against each authority until one accepts it: its cryptography,
its binding to the digest, then the authority's signed-identity rule (the repository the
payload names must be the one verified, unless the authority says ``any``). Every refusal is
kept as a ``Rejection`` with a stable code so a person can see why a signature did not
count. Nothing here trusts a registry: a registry failure raises ``RegistryError`` and the
caller fails closed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict

from app.db.session import session_scope
from app.errors import InputError, VerificationError
from app.oci.refs import ImageRef
from app.services import Services
from app.verify.evidence import EvidenceLimits, collect_evidence
from app.verify.identity import ANY_IDENTITY
from app.verify.keyless_identity import KeylessIdentity
from app.verify.model import Rejection, VerifiedSignature
from app.verify.signatures import is_image_signature, verify_candidates
from app.verify.trust import (
    TrustAuthority,
    get_authority,
    key_authority,
    keyless_authority,
    matching_authorities,
)
from app.verify.trusted_root import PUBLIC_GOOD, TrustedRootRef

log = logging.getLogger(__name__)

CLI_KEY_AUTHORITY = "key"
CLI_IDENTITY_AUTHORITY = "identity"


class VerificationReport(BaseModel):
    """The outcome for one image: what verified, and why every other candidate did not."""

    model_config = ConfigDict(frozen=True)

    image: str
    digest: str
    signatures: tuple[VerifiedSignature, ...]
    rejections: tuple[Rejection, ...]
    # Signed in-toto statements about the image with another predicate (a vulnerability
    # scan, provenance...): verified, but not signatures *of* the image.
    attestations: tuple[VerifiedSignature, ...] = ()

    @property
    def verified(self) -> bool:
        return bool(self.signatures)

    def require_verified(self) -> tuple[VerifiedSignature, ...]:
        """The verified signatures; ``VerificationError`` with every reason when there are none."""
        if self.signatures:
            return self.signatures
        if self.rejections:
            reasons = "; ".join(_describe(r) for r in self.rejections[:8])
            more = len(self.rejections) - 8
            if more > 0:
                reasons += f"; and {more} more"
            message = f"no valid signature for {self.image}@{self.digest}: {reasons}"
        else:
            message = f"no signatures found for {self.image}@{self.digest}"
        raise VerificationError(
            message,
            code="verify.no_valid_signature",
            details={
                "image": self.image,
                "digest": self.digest,
                "rejections": [r.model_dump(mode="json") for r in self.rejections],
            },
        )

    def to_json(self) -> dict[str, object]:
        return {
            "image": self.image,
            "digest": self.digest,
            "verified": self.verified,
            "signatures": [s.summary() for s in self.signatures],
            "attestations": [s.summary() for s in self.attestations],
            "rejections": [r.model_dump(mode="json") for r in self.rejections],
        }


def _describe(rejection: Rejection) -> str:
    where = rejection.signature_digest[:19] if rejection.signature_digest else rejection.source
    by = f" (authority {rejection.authority})" if rejection.authority else ""
    return f"{rejection.source} {where}{by}: {rejection.reason} [{rejection.code}]"


async def verify_with_authorities(
    services: Services,
    image: ImageRef,
    authorities: Sequence[TrustAuthority],
    *,
    limits: EvidenceLimits | None = None,
) -> VerificationReport:
    """Resolve ``image``, collect its evidence and verify it against ``authorities``."""
    client = services.registry
    digest = image.digest or await client.resolve_digest(image)
    pinned = image.with_digest(digest)
    if not authorities:
        # Nothing could verify: do not read (untrusted) evidence for nothing.
        no_authority = Rejection(
            source="trust", code="verify.no_authority", reason=f"no authority covers {image.name}"
        )
        return VerificationReport(
            image=image.name, digest=digest, signatures=(), rejections=(no_authority,)
        )
    evidence = await collect_evidence(client, pinned, limits=limits)
    # Crypto and sigstore-python are synchronous; keep the event loop free.
    verified, refused = await asyncio.to_thread(
        verify_candidates,
        evidence.candidates,
        authorities=authorities,
        digest=digest,
        image_name=image.name,
    )
    rejections = [*evidence.problems, *refused]
    return VerificationReport(
        image=image.name,
        digest=digest,
        signatures=tuple(s for s in verified if is_image_signature(s)),
        attestations=tuple(s for s in verified if not is_image_signature(s)),
        rejections=tuple(rejections),
    )


def chosen_authority(
    services: Services,
    *,
    image: ImageRef,
    key_pem: str | None = None,
    authority: str | None = None,
    identity: KeylessIdentity | None = None,
    trusted_root: TrustedRootRef | None = None,
) -> TrustAuthority:
    """The one source of trust a ``verify`` caller picked; ``InputError`` unless exactly one.

    A named authority must cover the image with its scopes (an authority trusted for
    ``ghcr.io/acme/*`` does not vouch for anything else, even when asked by name). A key or
    identity given for this one call accepts any signed identity, as ``cosign verify`` does;
    only stored authorities carry a signed-identity rule.
    """
    chosen = [c for c in (key_pem, authority, identity) if c is not None]
    if len(chosen) != 1:
        raise InputError(
            "choose exactly one of a public key, an authority name, or a certificate "
            "identity with its OIDC issuer"
        )
    if trusted_root is not None and identity is None:
        raise InputError("a trusted root goes with a certificate identity only")
    if key_pem is not None:
        return key_authority(name=CLI_KEY_AUTHORITY, keys=[key_pem], signed_identity=ANY_IDENTITY)
    if identity is not None:
        return keyless_authority(
            name=CLI_IDENTITY_AUTHORITY,
            identity=identity,
            trusted_root=trusted_root or TrustedRootRef.builtin(PUBLIC_GOOD),
            signed_identity=ANY_IDENTITY,
        )
    assert authority is not None
    with session_scope(services.sessions) as session:
        stored = get_authority(session, authority)
    if not stored.applies_to(image.name):
        raise VerificationError(
            f"authority {stored.name!r} is not trusted for {image.name}: its scopes are "
            f"{', '.join(stored.scopes)}",
            code="verify.out_of_scope",
        )
    return stored


async def verify_image(
    services: Services,
    *,
    image: str | ImageRef,
    key_pem: str | None = None,
    authority: str | None = None,
    identity: KeylessIdentity | None = None,
    trusted_root: TrustedRootRef | None = None,
) -> VerificationReport:
    """Verify ``image`` with the trust the caller chose (exactly one of key, authority, identity).

    Returns the report (verified signatures and reasons for every rejection); call
    ``require_verified`` on it to fail when nothing verified. Raises ``InputError`` for a
    bad reference or trust choice, ``NotFoundError`` for an unknown authority,
    ``RegistryError`` when the registry cannot be read.
    """
    ref = image if isinstance(image, ImageRef) else ImageRef.parse(image)
    trust = await asyncio.to_thread(
        chosen_authority,
        services,
        image=ref,
        key_pem=key_pem,
        authority=authority,
        identity=identity,
        trusted_root=trusted_root,
    )
    return await verify_with_authorities(services, ref, [trust])


def _matching(services: Services, image_name: str) -> list[TrustAuthority]:
    with session_scope(services.sessions) as session:
        return matching_authorities(session, image_name)


async def verified_signatures_for_policy(
    services: Services, image: str | ImageRef
) -> list[VerifiedSignature]:
    """Signatures of ``image`` that verify against any stored authority covering it.

    An empty list means nothing verified (the policy decides what that means). Raises
    ``RegistryError`` when the registry cannot be read, so callers fail closed.
    """
    report = await verification_report_for_policy(services, image)
    return list(report.signatures)


async def verification_report_for_policy(
    services: Services, image: str | ImageRef
) -> VerificationReport:
    """``verified_signatures_for_policy`` with the rejections kept (for explanations)."""
    ref = image if isinstance(image, ImageRef) else ImageRef.parse(image)
    authorities = await asyncio.to_thread(_matching, services, ref.name)
    return await verify_with_authorities(services, ref, authorities)
