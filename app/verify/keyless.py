"""Keyless Sigstore bundles, verified by sigstore-python.

A keyless bundle goes through sigstore-python's ``Verifier``, offline, with the trusted
root parsed in memory (``app.verify.trusted_root``) and our identity policy
(``app.verify.keyless_identity``) plugged in as its verification policy; sigstore-python
checks the certificate chain, its validity at signing time, the SCT, the log entry and the
signature. Then the signed content must name the expected image digest (the DSSE
statement's subject, or the message signature's digest). Legacy cosign keyless ``.sig``
layers, which sigstore-python cannot verify, go through ``app.verify.keyless_legacy``.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
from functools import lru_cache
from typing import Any

from cryptography import x509
from sigstore.errors import Error as SigstoreError
from sigstore.errors import VerificationError as SigstoreVerificationError
from sigstore.hashes import Hashed
from sigstore.models import Bundle
from sigstore.verify import Verifier
from sigstore_models.common.v1 import HashAlgorithm

from app.errors import VerificationError
from app.limits import MAX_BUNDLE_BYTES
from app.signing.payloads import IN_TOTO_PAYLOAD_TYPE
from app.verify.binding import SignedClaims, bind_statement, check_expected_digest
from app.verify.keyless_identity import KeylessIdentity
from app.verify.model import SignatureFormat, SignatureKind, VerifiedSignature
from app.verify.trusted_root import ROOT_CACHE_SIZE, ParsedTrustedRoot, parse_trusted_root


class _IdentityPolicy:
    """Our identity rule as a sigstore-python ``VerificationPolicy``; it keeps the
    original ``VerificationError`` so the caller can report it with its own code."""

    def __init__(self, identity: KeylessIdentity) -> None:
        self.identity = identity
        self.failure: VerificationError | None = None

    def verify(self, cert: x509.Certificate) -> None:
        try:
            self.identity.match(cert)
        except VerificationError as e:
            self.failure = e
            raise SigstoreVerificationError(e.message) from e


@lru_cache(maxsize=ROOT_CACHE_SIZE)
def _load_verifier(root: ParsedTrustedRoot) -> Verifier:
    # A Verifier holds no per-verification state; building one (certificate and key
    # loading, an HTTP session it never uses offline) is the costly part.
    return Verifier(trusted_root=root.sigstore)


def keyless_verifier(trusted_root_json: str) -> Verifier:
    """A sigstore-python ``Verifier`` for the trusted root ``trusted_root_json`` (its JSON
    text), cached by content.

    Raises ``VerificationError`` (code ``verify.trusted_root``) when it is too large or
    not a trusted root.
    """
    root = parse_trusted_root(trusted_root_json)
    try:
        return _load_verifier(root)
    except (ValueError, SigstoreError) as e:  # keys and certificates sigstore-python refuses
        raise VerificationError(
            f"trusted root {root.digest[:12]} is not a Sigstore trusted root: {e}",
            code="verify.trusted_root",
        ) from e


def _parse_bundle(bundle_json: bytes) -> tuple[Bundle, dict[str, Any]]:
    if len(bundle_json) > MAX_BUNDLE_BYTES:
        raise VerificationError(
            f"bundle is larger than {MAX_BUNDLE_BYTES} bytes", code="evidence.malformed_bundle"
        )
    try:
        raw = json.loads(bundle_json)
        bundle = Bundle.from_json(bundle_json)
    except (ValueError, SigstoreError) as e:
        # sigstore-python refuses bundles it cannot verify at parse time (v0.1 without
        # inclusion proof, neither SET nor timestamp, no certificate...).
        raise VerificationError(
            f"not a verifiable Sigstore bundle: {e}", code="evidence.malformed_bundle"
        ) from e
    if not isinstance(raw, dict):
        raise VerificationError("bundle JSON is not an object", code="evidence.malformed_bundle")
    return bundle, raw


def _signed_at(bundle: Bundle, raw: dict[str, Any]) -> dt.datetime | None:
    """The earliest verified time: the log's integrated time (bound by its SET) or a
    signed RFC 3161 timestamp. Only called after the Verifier accepted both."""
    times: list[dt.datetime] = []
    for entry in raw.get("verificationMaterial", {}).get("tlogEntries", []) or []:
        if entry.get("inclusionPromise") and entry.get("integratedTime"):
            times.append(dt.datetime.fromtimestamp(int(entry["integratedTime"]), tz=dt.UTC))
    data = bundle.verification_material.timestamp_verification_data
    if data is not None:
        times += [ts.tst_info.gen_time for ts in data.rfc3161_timestamps]
    return min(times) if times else None


def _sha256_bytes(expected_digest: str) -> bytes:
    algorithm, _, encoded = expected_digest.partition(":")
    if algorithm != "sha256" or len(encoded) != 64:
        raise VerificationError(
            f"a message signature can only bind a sha256 digest, not {expected_digest}",
            code="verify.digest_mismatch",
        )
    return bytes.fromhex(encoded)


def _check_message_digest(raw: dict[str, Any], *, digest: bytes, expected_digest: str) -> None:
    """Name a digest mismatch as such (the signature check would refuse it anyway)."""
    recorded = (raw.get("messageSignature") or {}).get("messageDigest") or {}
    try:
        signed = base64.b64decode(recorded.get("digest", ""), validate=True)
    except (binascii.Error, ValueError, TypeError):
        return
    if signed and signed != digest:
        raise VerificationError(
            f"the message signature is over sha256:{signed.hex()}, not {expected_digest}",
            code="verify.digest_mismatch",
        )


def verify_keyless_bundle(
    bundle_json: bytes,
    *,
    trusted_root_json: str,
    identity: KeylessIdentity,
    expected_digest: str,
) -> VerifiedSignature:
    """Verify a keyless Sigstore bundle that signs the image ``expected_digest``.

    ``bundle_json`` is the bundle as read from the registry (untrusted).
    ``trusted_root_json`` is the Sigstore trusted root (its JSON text) to verify against,
    offline.
    A DSSE bundle must hold an in-toto statement whose subject carries
    ``expected_digest``; a message-signature bundle must sign that digest itself (the
    manifest bytes). Returns the verified signature (``authority`` left unset for the
    caller); raises ``VerificationError`` with a code saying what failed:
    ``evidence.malformed_bundle``, ``verify.trusted_root``, ``verify.identity_mismatch``,
    ``verify.keyless_failed`` (chain, validity at signing time, SCT, log entry,
    signature) or ``verify.digest_mismatch``; ``EvidenceError`` when the verified DSSE
    payload is not an in-toto statement.
    """
    check_expected_digest(expected_digest)
    bundle, raw = _parse_bundle(bundle_json)
    verifier = keyless_verifier(trusted_root_json)
    policy = _IdentityPolicy(identity)
    dsse = bundle._dsse_envelope is not None
    try:
        if dsse:
            payload_type, payload = verifier.verify_dsse(bundle, policy)
        else:
            digest = _sha256_bytes(expected_digest)
            _check_message_digest(raw, digest=digest, expected_digest=expected_digest)
            hashed = Hashed(algorithm=HashAlgorithm.SHA2_256, digest=digest)
            verifier.verify_artifact(hashed, bundle, policy)
    except SigstoreVerificationError as e:
        if policy.failure is not None:
            raise policy.failure from e
        raise VerificationError(
            f"keyless bundle does not verify: {e}", code="verify.keyless_failed"
        ) from e
    except (SigstoreError, ValueError) as e:
        raise VerificationError(
            f"keyless bundle does not verify: {e}", code="verify.keyless_failed"
        ) from e
    subject, issuer = identity.match(bundle.signing_certificate)
    claims = SignedClaims()
    if dsse:
        # The payload is trusted only now; it must be a statement about this image.
        if payload_type != IN_TOTO_PAYLOAD_TYPE:
            raise VerificationError(
                f"DSSE payload type {payload_type!r} is not {IN_TOTO_PAYLOAD_TYPE}",
                code="verify.bad_envelope",
            )
        claims = bind_statement(payload, expected_digest=expected_digest)
    return VerifiedSignature(
        format=SignatureFormat.bundle,
        kind=SignatureKind.keyless,
        subject=subject,
        issuer=issuer,
        signed_at=_signed_at(bundle, raw),
        tlog=True,
        digest=expected_digest,
        predicate_type=claims.predicate_type,
        predicate=claims.predicate,
        annotations=claims.annotations,
        signed_identities=claims.signed_identities,
    )


def verify_keyless_artifact(
    bundle_json: bytes,
    *,
    artifact: bytes,
    trusted_root_json: str,
    identity: KeylessIdentity,
) -> VerifiedSignature:
    """Verify a keyless bundle over a file (``sigstore sign`` / ``cosign sign-blob``).

    A message-signature bundle must sign ``artifact``; a DSSE bundle's statement must
    name its sha256. The result's ``digest`` is ``sha256:<hex of artifact>``. Raises
    ``VerificationError`` as ``verify_keyless_bundle`` does.
    """
    expected = "sha256:" + hashlib.sha256(artifact).hexdigest()
    return verify_keyless_bundle(
        bundle_json,
        trusted_root_json=trusted_root_json,
        identity=identity,
        expected_digest=expected,
    )
