"""Sigstore bundles: parse them strictly, verify key-signed ones, hand keyless ones on.

A bundle (protobuf-specs ``Bundle`` in its JSON form) carries either a DSSE envelope or a
message signature, and verification material: a public-key hint (key signatures), or a
Fulcio certificate with transparency-log entries (keyless). ``parse_bundle`` checks the
shape and raises ``EvidenceError`` for anything malformed. ``verify_key_bundle`` verifies
a key-signed bundle against an authority's keys and checks that it names the expected
image digest; ``verify_bundle`` dispatches on the authority's kind and sends keyless
bundles to ``app.verify.keyless``.

The key path, in order:

1. the bundle is key-signed (no certificate: a certificate means keyless);
2. a DSSE envelope has exactly one signature (protobuf-specs requires it) and an in-toto
   payload type; its signature must verify over the PAE of payloadType and payload with
   one of the authority's keys (the hint only orders the keys, it is never trusted);
3. only then is the payload read: the statement's subject must name the expected digest;
4. a message signature must be over SHA-256 and its digest must be the expected digest.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from pydantic import BaseModel, ConfigDict

from app.db.models import AuthorityKind
from app.errors import EvidenceError, VerificationError
from app.limits import MAX_BUNDLE_BYTES
from app.signing.payloads import IN_TOTO_PAYLOAD_TYPE, dsse_pae
from app.verify.binding import SignedClaims, bind_statement
from app.verify.keyless import verify_keyless_bundle
from app.verify.model import SignatureFormat, SignatureKind, VerifiedSignature
from app.verify.trust import TrustAuthority
from app.verify.trusted_keys import TrustedKey, verify_with_any_key

BUNDLE_MEDIA_TYPES = frozenset(
    {
        "application/vnd.dev.sigstore.bundle.v0.3+json",
        "application/vnd.dev.sigstore.bundle+json;version=0.3",
        "application/vnd.dev.sigstore.bundle+json;version=0.2",
        "application/vnd.dev.sigstore.bundle+json;version=0.1",
    }
)


class DsseContent(BaseModel):
    model_config = ConfigDict(frozen=True)

    payload_type: str
    payload: bytes
    signatures: tuple[bytes, ...]


class MessageContent(BaseModel):
    model_config = ConfigDict(frozen=True)

    algorithm: str
    digest: bytes
    signature: bytes


class ParsedBundle(BaseModel):
    """The parts of a bundle Sealgate reads, checked for shape (not yet for trust)."""

    model_config = ConfigDict(frozen=True)

    media_type: str
    key_hint: str | None
    keyless: bool
    dsse: DsseContent | None = None
    message: MessageContent | None = None


def _malformed(problem: str) -> EvidenceError:
    return EvidenceError(f"malformed Sigstore bundle: {problem}", code="evidence.malformed_bundle")


def _b64(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise _malformed(f"{what} is not a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        pass
    try:  # protobuf JSON parsers also accept the URL-safe alphabet, unpadded
        return base64.b64decode(value + "=" * (-len(value) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError) as e:
        raise _malformed(f"{what} is not valid base64") from e


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _malformed(f"{what} is missing or not an object")
    return value


def parse_bundle(data: bytes) -> ParsedBundle:
    """Parse bundle JSON; raise ``EvidenceError`` (``evidence.malformed_bundle``) if unusable.

    Unknown media types, oversized input, bad JSON or base64, and bundles with both or
    neither of a DSSE envelope and a message signature are refused.
    """
    if len(data) > MAX_BUNDLE_BYTES:
        raise _malformed(f"larger than {MAX_BUNDLE_BYTES} bytes")
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise _malformed(f"not valid JSON ({e})") from e
    doc = _object(doc, "the bundle")
    media_type = doc.get("mediaType")
    if media_type not in BUNDLE_MEDIA_TYPES:
        raise EvidenceError(
            f"unsupported Sigstore bundle media type {media_type!r}",
            code="evidence.unsupported_media_type",
        )
    material = _object(doc.get("verificationMaterial"), "verificationMaterial")
    keyless = "certificate" in material or "x509CertificateChain" in material
    hint: str | None = None
    if not keyless:
        public_key = _object(material.get("publicKey"), "verificationMaterial.publicKey")
        raw_hint = public_key.get("hint")
        hint = raw_hint if isinstance(raw_hint, str) else None
    has_dsse, has_message = "dsseEnvelope" in doc, "messageSignature" in doc
    if has_dsse == has_message:
        raise _malformed("it must hold exactly one of dsseEnvelope and messageSignature")
    if has_dsse:
        envelope = _object(doc["dsseEnvelope"], "dsseEnvelope")
        payload_type = envelope.get("payloadType")
        if not isinstance(payload_type, str) or not payload_type:
            raise _malformed("dsseEnvelope.payloadType is missing")
        raw_signatures = envelope.get("signatures")
        if not isinstance(raw_signatures, list):
            raise _malformed("dsseEnvelope.signatures is not a list")
        signatures = tuple(
            _b64(_object(s, "a DSSE signature").get("sig"), "a DSSE signature")
            for s in raw_signatures
        )
        return ParsedBundle(
            media_type=media_type,
            key_hint=hint,
            keyless=keyless,
            dsse=DsseContent(
                payload_type=payload_type,
                payload=_b64(envelope.get("payload"), "dsseEnvelope.payload"),
                signatures=signatures,
            ),
        )
    message = _object(doc["messageSignature"], "messageSignature")
    message_digest = _object(message.get("messageDigest"), "messageSignature.messageDigest")
    algorithm = message_digest.get("algorithm")
    return ParsedBundle(
        media_type=media_type,
        key_hint=hint,
        keyless=keyless,
        message=MessageContent(
            algorithm=algorithm if isinstance(algorithm, str) else "",
            digest=_b64(message_digest.get("digest"), "messageDigest.digest"),
            signature=_b64(message.get("signature"), "messageSignature.signature"),
        ),
    )


def _ordered(keys: tuple[TrustedKey, ...], hint: str | None) -> list[TrustedKey]:
    # The hint is attacker-controlled: it only decides which key is tried first.
    return sorted(keys, key=lambda k: hint not in (k.key_id, k.hint))


def verify_key_bundle(
    bundle: ParsedBundle,
    *,
    keys: tuple[TrustedKey, ...],
    expected_digest: str,
    authority: str | None = None,
    signature_digest: str | None = None,
) -> VerifiedSignature:
    """Verify a key-signed bundle for ``expected_digest`` (``alg:hex``).

    Returns the verified signature; raises ``VerificationError`` when the bundle is
    keyless, the signature does not verify with any of ``keys``, or the signed content
    names another digest, and ``EvidenceError`` when the payload is not an in-toto
    statement.
    """
    # (1) key bundles only: a certificate means the signer was a Sigstore identity.
    if bundle.keyless:
        raise VerificationError(
            "the bundle is keyless (it carries a certificate); this authority holds keys",
            code="verify.wrong_kind",
        )
    if not keys:
        raise VerificationError("no trusted keys to verify with", code="verify.no_keys")
    ordered = _ordered(keys, bundle.key_hint)
    if bundle.dsse is not None:
        envelope = bundle.dsse
        # (2) exactly one signature, over the PAE, with a trusted key.
        if len(envelope.signatures) != 1:
            raise VerificationError(
                f"a DSSE envelope in a bundle must carry exactly one signature, not "
                f"{len(envelope.signatures)}",
                code="verify.bad_envelope",
            )
        if envelope.payload_type != IN_TOTO_PAYLOAD_TYPE:
            raise VerificationError(
                f"DSSE payload type {envelope.payload_type!r} is not {IN_TOTO_PAYLOAD_TYPE}",
                code="verify.bad_envelope",
            )
        pae = dsse_pae(envelope.payload_type, envelope.payload)
        signature = envelope.signatures[0]
        key = verify_with_any_key(ordered, lambda k: k.verify(signature=signature, data=pae))
        # (3) the payload is trusted now; it must name the image.
        claims = bind_statement(envelope.payload, expected_digest=expected_digest)
    else:
        # (4) a message signature over the image digest.
        assert bundle.message is not None
        key = _verify_message(bundle.message, ordered, expected_digest=expected_digest)
        claims = SignedClaims()
    return VerifiedSignature(
        format=SignatureFormat.bundle,
        kind=SignatureKind.key,
        authority=authority,
        key_id=key.key_id,
        digest=expected_digest,
        signature_digest=signature_digest,
        predicate_type=claims.predicate_type,
        predicate=claims.predicate,
        annotations=claims.annotations,
        signed_identities=claims.signed_identities,
    )


def _verify_message(
    message: MessageContent, keys: list[TrustedKey], *, expected_digest: str
) -> TrustedKey:
    algorithm, _, encoded = expected_digest.partition(":")
    if message.algorithm != "SHA2_256" or algorithm != "sha256":
        raise VerificationError(
            f"message signature over {message.algorithm or 'an unnamed algorithm'} cannot bind "
            f"{expected_digest}; only SHA2_256 over a sha256 digest is supported",
            code="verify.digest_mismatch",
        )
    if message.digest != bytes.fromhex(encoded):
        raise VerificationError(
            f"the message signature is over sha256:{message.digest.hex()}, not {expected_digest}",
            code="verify.digest_mismatch",
        )
    return verify_with_any_key(
        keys, lambda k: k.verify_digest(signature=message.signature, digest=message.digest)
    )


def verify_bundle(
    data: bytes,
    *,
    authority: TrustAuthority,
    expected_digest: str,
    signature_digest: str | None = None,
) -> VerifiedSignature:
    """Verify bundle JSON against one authority for ``expected_digest``.

    Key authorities are checked here; keyless ones through ``app.verify.keyless`` with the
    authority's trusted root and identity. Raises ``EvidenceError`` for malformed bundles
    and ``VerificationError`` for everything that does not verify.
    """
    bundle = parse_bundle(data)
    if authority.kind is AuthorityKind.key:
        return verify_key_bundle(
            bundle,
            keys=authority.keys,
            expected_digest=expected_digest,
            authority=authority.name,
            signature_digest=signature_digest,
        )
    if not bundle.keyless:
        raise VerificationError(
            "the bundle is key-signed; this authority trusts a keyless identity",
            code="verify.wrong_kind",
        )
    assert authority.identity is not None and authority.trusted_root is not None
    verified = verify_keyless_bundle(
        data,
        trusted_root_json=authority.trusted_root.content,
        identity=authority.identity,
        expected_digest=expected_digest,
    )
    return verified.model_copy(
        update={"authority": authority.name, "signature_digest": signature_digest}
    )
