"""Verified signature facts: what a verifier returns once a signature checked out.

A ``VerifiedSignature`` exists only after its cryptography, its trust (key or identity)
and its binding to the image digest were checked; policy input is built from these and
never from the raw evidence. ``Rejection`` records why one candidate was not accepted.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class SignatureFormat(StrEnum):
    """Where the signature was stored: a Sigstore bundle referrer or a legacy ``.sig`` layer."""

    bundle = "bundle"
    legacy = "legacy"


class SignatureKind(StrEnum):
    """What vouches for the signature: a public key, or a Sigstore (Fulcio) identity."""

    key = "key"
    keyless = "keyless"


class VerifiedSignature(BaseModel):
    """One signature that verified against an authority and names ``digest``.

    ``key_id`` is set for key signatures (hex SHA-256 of the DER SubjectPublicKeyInfo);
    ``subject`` and ``issuer`` for keyless ones (certificate SAN and OIDC issuer).
    ``signed_at`` is the transparency-log or timestamp time when one was verified, else
    None (key signatures carry no trusted time). ``tlog`` says whether a transparency-log
    entry was verified. ``signature_digest`` is the digest of the manifest that carried
    the signature (the referrer or the ``.sig`` manifest), when it came from a registry.
    ``predicate_type`` is the in-toto predicate of a DSSE statement (cosign v3 image
    signatures use ``https://sigstore.dev/cosign/sign/v1``; attestations name theirs);
    None for simple-signing and message signatures; ``predicate`` is that statement's
    (verified) predicate, for attestations. ``annotations`` are the signed ones.
    ``signed_identities`` are the repository names the signed payload gives for the digest
    (``docker-reference``, statement subject names), as written; the verify flow checks them
    with the authority's signed-identity rule (``app.verify.identity``) before it counts.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: SignatureFormat
    kind: SignatureKind
    authority: str | None = None
    key_id: str | None = None
    subject: str | None = None
    issuer: str | None = None
    signed_at: dt.datetime | None = None
    tlog: bool = False
    digest: str
    signature_digest: str | None = None
    predicate_type: str | None = None
    predicate: dict[str, Any] | None = None
    annotations: dict[str, str] = Field(default_factory=dict)
    signed_identities: tuple[str, ...] = ()

    def summary(self) -> dict[str, object]:
        """The JSON shape ``sealgate verify`` and ``POST /v1/verify`` print for one signature."""
        return self.model_dump(mode="json")


class Rejection(BaseModel):
    """Why one candidate signature was not accepted (shown to the user, never to policy)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: str
    signature_digest: str | None = None
    authority: str | None = None
    code: str
    reason: str
