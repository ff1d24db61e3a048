"""Keyless verification: Sigstore bundles and legacy cosign keyless ``.sig`` layers.

Bundles go through sigstore-python's ``Verifier`` with a trusted root read from a file
(offline), then through our identity policy (exact or regex subject and issuer) and
the binding check (the DSSE statement's subject names the expected image digest).
Legacy cosign keyless layers carry only a signed entry timestamp (SET), which
sigstore-python cannot verify; they are verified here on ``cryptography``.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict

from app.verify.model import VerifiedSignature


class KeylessIdentity(BaseModel):
    """Who must have signed: subject (certificate SAN) and OIDC issuer, each exact or regex."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    subject: str | None = None
    subject_regex: str | None = None
    issuer: str | None = None
    issuer_regex: str | None = None


def verify_keyless_bundle(
    bundle_json: bytes,
    *,
    trusted_root_path: Path,
    identity: KeylessIdentity,
    expected_digest: str,
) -> VerifiedSignature:
    """Verify a keyless DSSE bundle for ``expected_digest``; raise ``VerificationError``."""
    raise NotImplementedError


def verify_legacy_keyless(
    *,
    payload: bytes,
    signature_b64: str,
    certificate_pem: str,
    chain_pem: str | None,
    bundle_annotation: str,
    trusted_root_path: Path,
    identity: KeylessIdentity,
    expected_digest: str,
) -> VerifiedSignature:
    """Verify a legacy cosign keyless ``.sig`` layer; raise ``VerificationError``."""
    raise NotImplementedError
