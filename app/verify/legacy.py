"""Legacy cosign signatures: simple-signing layers of a ``sha256-<hex>.sig`` manifest.

Each layer's blob is a simple-signing payload; its ``dev.cosignproject.cosign/signature``
annotation is the base64 signature over those exact payload bytes (cosign
SIGNATURE_SPEC.md). A key authority verifies the signature with its keys; a keyless
authority needs the ``dev.sigstore.cosign/certificate`` (and ``chain``, ``bundle``)
annotations and goes through ``app.verify.keyless_legacy``. Either way the payload is read only
after its signature verified, and its ``docker-manifest-digest`` must be the image's.
"""

from __future__ import annotations

import base64
import binascii

from app.db.models import AuthorityKind
from app.errors import EvidenceError, VerificationError
from app.verify.binding import bind_simple_signing
from app.verify.keyless_legacy import verify_legacy_keyless
from app.verify.model import SignatureFormat, SignatureKind, VerifiedSignature
from app.verify.trust import TrustAuthority
from app.verify.trusted_keys import verify_with_any_key

SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
CERTIFICATE_ANNOTATION = "dev.sigstore.cosign/certificate"
CHAIN_ANNOTATION = "dev.sigstore.cosign/chain"
BUNDLE_ANNOTATION = "dev.sigstore.cosign/bundle"


def _signature(annotations: dict[str, str]) -> bytes:
    value = annotations.get(SIGNATURE_ANNOTATION)
    if not value:
        raise EvidenceError(
            f"legacy signature layer has no {SIGNATURE_ANNOTATION} annotation",
            code="evidence.malformed_signature",
        )
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as e:
        raise EvidenceError(
            f"legacy signature annotation {SIGNATURE_ANNOTATION} is not valid base64",
            code="evidence.malformed_signature",
        ) from e


def verify_legacy(
    *,
    payload: bytes,
    annotations: dict[str, str],
    authority: TrustAuthority,
    expected_digest: str,
    signature_digest: str | None = None,
) -> VerifiedSignature:
    """Verify one legacy simple-signing layer against ``authority`` for ``expected_digest``.

    ``payload`` is the layer blob (already checked against its descriptor digest by the
    registry client) and ``annotations`` the layer's annotations. Returns the verified
    signature; raises ``VerificationError`` when it does not verify or names another
    digest, ``EvidenceError`` when the layer is malformed.
    """
    signature = _signature(annotations)
    if authority.kind is AuthorityKind.keyless:
        certificate = annotations.get(CERTIFICATE_ANNOTATION)
        if not certificate:
            raise VerificationError(
                "the legacy signature is key-signed (no certificate); this authority trusts "
                "a keyless identity",
                code="verify.wrong_kind",
            )
        assert authority.identity is not None and authority.trusted_root is not None
        verified = verify_legacy_keyless(
            payload=payload,
            signature_b64=annotations[SIGNATURE_ANNOTATION],
            certificate_pem=certificate,
            chain_pem=annotations.get(CHAIN_ANNOTATION),
            bundle_annotation=annotations.get(BUNDLE_ANNOTATION, ""),
            trusted_root_json=authority.trusted_root.content,
            identity=authority.identity,
            expected_digest=expected_digest,
        )
        return verified.model_copy(
            update={"authority": authority.name, "signature_digest": signature_digest}
        )
    verified_key = verify_with_any_key(
        authority.keys, lambda k: k.verify(signature=signature, data=payload)
    )
    # The payload is trusted only now that its signature verified.
    claims = bind_simple_signing(payload, expected_digest=expected_digest)
    return VerifiedSignature(
        format=SignatureFormat.legacy,
        kind=SignatureKind.key,
        authority=authority.name,
        key_id=verified_key.key_id,
        digest=expected_digest,
        signature_digest=signature_digest,
        annotations=claims.annotations,
        signed_identities=claims.signed_identities,
    )
