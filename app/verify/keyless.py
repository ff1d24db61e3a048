"""Keyless verification: Sigstore bundles and legacy cosign keyless ``.sig`` layers.

Bundles go through sigstore-python's ``Verifier`` with a trusted root parsed in memory,
offline, with our identity policy (subject and OIDC issuer, each exact or an RE2 regular
expression matching the whole value, see ``app.verify.patterns``) plugged in as its
verification policy; then the signed content must name the expected image digest (the
DSSE statement's subject, or the message signature's digest). Legacy cosign keyless
layers carry only a signed entry timestamp (SET) and no inclusion proof, which
sigstore-python cannot verify; they are verified here on ``cryptography`` (see
``verify_legacy_keyless``).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
)
from cryptography.x509.verification import (
    VerificationError as X509VerificationError,
)
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sigstore.errors import Error as SigstoreError
from sigstore.errors import VerificationError as SigstoreVerificationError
from sigstore.hashes import Hashed
from sigstore.models import Bundle, TrustedRoot
from sigstore.verify import Verifier
from sigstore_models.common.v1 import HashAlgorithm
from sigstore_models.trustroot import v1 as trustroot_v1

from app.errors import InputError, VerificationError
from app.signing.payloads import IN_TOTO_PAYLOAD_TYPE
from app.verify.binding import SignedClaims, bind_simple_signing, bind_statement
from app.verify.model import SignatureFormat, SignatureKind, VerifiedSignature
from app.verify.patterns import compile_identity_pattern

MAX_BUNDLE_BYTES = 4 * 1024 * 1024
MAX_TRUSTED_ROOT_BYTES = 4 * 1024 * 1024

# Fulcio certificate extensions (fulcio docs/oid-info.md).
OIDC_ISSUER_V1 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.1")  # raw string
OIDC_ISSUER_V2 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.8")  # DER UTF8String
SIGSTORE_OTHERNAME = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.7")  # DER UTF8String


class KeylessIdentity(BaseModel):
    """Who must have signed: certificate subject (SAN) and OIDC issuer.

    Give ``subject`` or ``subject_regex``, and ``issuer`` or ``issuer_regex``. A regular
    expression is RE2 syntax and must match the whole value (``app.verify.patterns``): an
    unanchored search would let ``https://github.com/org/`` match
    ``https://evil.example/?https://github.com/org/``. Constructing one with a pattern RE2
    refuses, or one that is too long, raises ``InputError`` (``input.invalid_pattern``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    subject: str | None = None
    subject_regex: str | None = None
    issuer: str | None = None
    issuer_regex: str | None = None

    @model_validator(mode="after")
    def _one_of_each(self) -> KeylessIdentity:
        for name in ("subject", "issuer"):
            exact, regex = getattr(self, name), getattr(self, f"{name}_regex")
            if (exact is None) == (regex is None):
                raise ValueError(f"give exactly one of {name} and {name}_regex")
            if regex is not None:
                # InputError is not a ValueError: pydantic lets it through with its code.
                compile_identity_pattern(regex, what=_PATTERN_NAMES[name])
        return self

    def describe(self) -> str:
        subject = self.subject if self.subject is not None else f"/{self.subject_regex}/"
        issuer = self.issuer if self.issuer is not None else f"/{self.issuer_regex}/"
        return f"subject {subject} from issuer {issuer}"

    def match(self, certificate: x509.Certificate) -> tuple[str, str]:
        """The (subject, issuer) of ``certificate`` that this identity accepts.

        Raises ``VerificationError`` (code ``verify.identity_mismatch``) when no SAN or
        the issuer does not match, naming what the certificate holds.
        """
        subjects, issuer = certificate_identity(certificate)
        if issuer is None or not _matches(issuer, self.issuer, self.issuer_regex, what="issuer"):
            raise VerificationError(
                f"certificate issuer {issuer!r} does not match {self.describe()}",
                code="verify.identity_mismatch",
            )
        for subject in subjects:
            if _matches(subject, self.subject, self.subject_regex, what="subject"):
                return subject, issuer
        raise VerificationError(
            f"certificate subject {', '.join(subjects) or '(none)'} does not match "
            f"{self.describe()}",
            code="verify.identity_mismatch",
        )


_PATTERN_NAMES = {
    "subject": "certificate identity regexp",
    "issuer": "certificate OIDC issuer regexp",
}


def _matches(value: str, exact: str | None, regex: str | None, *, what: str) -> bool:
    if exact is not None:
        return value == exact
    if regex is None:
        return False
    try:
        pattern = compile_identity_pattern(regex, what=_PATTERN_NAMES[what])
    except InputError as e:
        # A stored authority from before RE2 may hold a pattern RE2 refuses: that
        # authority verifies nothing (fail closed), the others are unaffected.
        raise VerificationError(
            f"the authority's {e.message}", code="verify.invalid_pattern"
        ) from e
    return pattern.matches(value)


def _der_utf8(data: bytes) -> str:
    """Decode one DER UTF8String (tag 0x0C) and nothing else."""
    if len(data) < 2 or data[0] != 0x0C:
        raise ValueError("not a DER UTF8String")
    length, offset = data[1], 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or len(data) < 2 + count:
            raise ValueError("bad DER length")
        length, offset = int.from_bytes(data[2 : 2 + count], "big"), 2 + count
    if offset + length != len(data):
        raise ValueError("DER length does not match")
    return data[offset:].decode("utf-8")


def certificate_identity(certificate: x509.Certificate) -> tuple[list[str], str | None]:
    """The SAN identities (emails, URIs, Sigstore other names) and OIDC issuer of a
    Fulcio certificate. The issuer comes from the v2 extension (DER) or else the v1 one."""
    subjects: list[str] = []
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = None
    if san is not None:
        subjects += san.get_values_for_type(x509.RFC822Name)
        subjects += san.get_values_for_type(x509.UniformResourceIdentifier)
        for other in san.get_values_for_type(x509.OtherName):
            if other.type_id == SIGSTORE_OTHERNAME:
                try:
                    subjects.append(_der_utf8(other.value))
                except (ValueError, UnicodeDecodeError):
                    continue
    issuer: str | None = None
    for oid, decode in ((OIDC_ISSUER_V2, _der_utf8), (OIDC_ISSUER_V1, bytes.decode)):
        try:
            ext = certificate.extensions.get_extension_for_oid(oid).value
        except x509.ExtensionNotFound:
            continue
        if isinstance(ext, x509.UnrecognizedExtension):
            try:
                issuer = decode(ext.value)
            except (ValueError, UnicodeDecodeError):
                continue
            break
    return subjects, issuer


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


@dataclass(frozen=True)
class _RootJson:
    """A trusted root's JSON text as a cache key: compared and hashed by its digest."""

    digest: str
    text: str = field(compare=False, repr=False)

    @classmethod
    def of(cls, text: str) -> _RootJson:
        data = text.encode()
        if len(data) > MAX_TRUSTED_ROOT_BYTES:
            raise VerificationError(
                f"trusted root is larger than {MAX_TRUSTED_ROOT_BYTES} bytes",
                code="verify.trusted_root",
            )
        return cls(digest=hashlib.sha256(data).hexdigest(), text=text)


# Trusted roots are parsed in memory, never written to a file: a caller of POST /v1/verify
# may send a new one with every request. The caches are small and keyed by content digest.
ROOT_CACHE_SIZE = 8


@lru_cache(maxsize=ROOT_CACHE_SIZE)
def _load_verifier(root: _RootJson) -> Verifier:
    # A Verifier holds no per-verification state; building one (trusted root parsing,
    # certificate loading, an HTTP session it never uses offline) is the costly part.
    return Verifier(trusted_root=TrustedRoot(trustroot_v1.TrustedRoot.from_json(root.text)))


def keyless_verifier(trusted_root_json: str) -> Verifier:
    """A sigstore-python ``Verifier`` for the trusted root ``trusted_root_json`` (its JSON
    text), cached by content.

    Raises ``VerificationError`` (code ``verify.trusted_root``) when it is too large or
    not a trusted root.
    """
    root = _RootJson.of(trusted_root_json)
    try:
        return _load_verifier(root)
    except (ValueError, SigstoreError) as e:  # JSON and protobuf-model errors
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


def _check_digest(expected_digest: str) -> None:
    if not re.fullmatch(r"[a-z0-9]+:[0-9a-f]{32,128}", expected_digest):
        raise VerificationError(
            f"expected digest {expected_digest!r} is not <algorithm>:<hex>",
            code="verify.digest_mismatch",
        )


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
    _check_digest(expected_digest)
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


# --- Legacy cosign keyless signatures (SET only) ------------------------------------


class _SetPayload(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    body: str
    # Seconds since the epoch; bounded so that a hostile value cannot overflow datetime.
    integrated_time: int = Field(alias="integratedTime", ge=0, le=253402300799)
    log_index: int = Field(alias="logIndex")
    log_id: str = Field(alias="logID", pattern=r"^[0-9a-f]{64}$")


class RekorBundleAnnotation(BaseModel):
    """cosign's ``dev.sigstore.cosign/bundle`` annotation: a Rekor entry and its SET."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    signed_entry_timestamp: str = Field(alias="SignedEntryTimestamp")
    payload: _SetPayload = Field(alias="Payload")

    def canonical_set_payload(self) -> bytes:
        """The bytes Rekor signed: RFC 8785 JSON of {body, integratedTime, logID, logIndex}.

        With only ASCII strings and integers, sorted keys without whitespace is RFC 8785.
        """
        doc = {
            "body": self.payload.body,
            "integratedTime": self.payload.integrated_time,
            "logID": self.payload.log_id,
            "logIndex": self.payload.log_index,
        }
        return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class _Validity:
    start: dt.datetime | None
    end: dt.datetime | None

    def covers(self, moment: dt.datetime) -> bool:
        return (self.start is None or self.start <= moment) and (
            self.end is None or moment <= self.end
        )


@dataclass(frozen=True)
class _CertificateAuthority:
    chain: tuple[x509.Certificate, ...]  # leaf-most first, root last
    validity: _Validity


@dataclass(frozen=True)
class _TransparencyLog:
    log_id: bytes
    key: Any
    validity: _Validity


@dataclass(frozen=True)
class _LegacyTrust:
    authorities: tuple[_CertificateAuthority, ...]
    tlogs: tuple[_TransparencyLog, ...]
    ctlogs: tuple[_TransparencyLog, ...]


def _time(value: Any) -> dt.datetime | None:
    if not value:
        return None
    return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _validity(item: dict[str, Any]) -> _Validity:
    valid_for = item.get("validFor") or {}
    return _Validity(start=_time(valid_for.get("start")), end=_time(valid_for.get("end")))


@lru_cache(maxsize=ROOT_CACHE_SIZE)
def _read_legacy_trust(root: _RootJson) -> _LegacyTrust:
    doc = json.loads(root.text)
    authorities = tuple(
        _CertificateAuthority(
            chain=tuple(
                x509.load_der_x509_certificate(base64.b64decode(c["rawBytes"]))
                for c in ca["certChain"]["certificates"]
            ),
            validity=_validity(ca),
        )
        for ca in doc.get("certificateAuthorities", [])
    )
    tlogs, ctlogs = (
        tuple(
            _TransparencyLog(
                log_id=base64.b64decode(log["logId"]["keyId"]),
                key=serialization.load_der_public_key(
                    base64.b64decode(log["publicKey"]["rawBytes"])
                ),
                validity=_validity(log["publicKey"]),
            )
            for log in doc.get(kind, [])
        )
        for kind in ("tlogs", "ctlogs")
    )
    return _LegacyTrust(authorities=authorities, tlogs=tlogs, ctlogs=ctlogs)


def _legacy_trust(trusted_root_json: str) -> _LegacyTrust:
    root = _RootJson.of(trusted_root_json)
    try:
        return _read_legacy_trust(root)
    except (ValueError, KeyError, TypeError, UnsupportedAlgorithm) as e:
        raise VerificationError(
            f"trusted root {root.digest[:12]} is not a Sigstore trusted root: {e}",
            code="verify.trusted_root",
        ) from e


def _legacy_failure(message: str, code: str = "verify.keyless_failed") -> VerificationError:
    return VerificationError(f"legacy keyless signature: {message}", code=code)


def _b64decode(value: str, what: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as e:
        raise _legacy_failure(f"{what} is not valid base64", "evidence.malformed_signature") from e


def _load_pem_certificates(text: str, what: str) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(text.encode())
    except ValueError as e:
        raise _legacy_failure(
            f"{what} is not PEM certificates", "evidence.malformed_signature"
        ) from e


def _verify_with_key(key: Any, *, signature: bytes, data: bytes) -> None:
    """Verify ``signature`` over ``data`` with a transparency-log key (SHA-256)."""
    if isinstance(key, ec.EllipticCurvePublicKey):
        key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
    elif isinstance(key, ed25519.Ed25519PublicKey):
        key.verify(signature, data)
    elif isinstance(key, rsa.RSAPublicKey):
        key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
    else:
        raise InvalidSignature(f"unsupported log key type {type(key).__name__}")


def _verify_set(trust: _LegacyTrust, *, entry: RekorBundleAnnotation, when: dt.datetime) -> None:
    # (2) the SET: Rekor's signature over the entry, by a log key from the trusted root.
    log_id = bytes.fromhex(entry.payload.log_id)
    logs = [log for log in trust.tlogs if log.log_id == log_id and log.validity.covers(when)]
    if not logs:
        raise _legacy_failure(
            f"no transparency log {entry.payload.log_id} in the trusted root valid at {when}"
        )
    signature = _b64decode(entry.signed_entry_timestamp, "SignedEntryTimestamp")
    signed = entry.canonical_set_payload()
    for log in logs:
        try:
            _verify_with_key(log.key, signature=signature, data=signed)
            return
        except InvalidSignature:
            continue
    raise _legacy_failure("the signed entry timestamp (SET) does not verify with the log key")


def _verify_chain(
    trust: _LegacyTrust,
    *,
    certificate: x509.Certificate,
    presented_chain: list[x509.Certificate],
    when: dt.datetime,
) -> x509.Certificate:
    """Return the certificate of the CA that issued ``certificate``."""
    # (3) the certificate chains to a Fulcio CA of the trusted root valid at `when`; the
    # chain annotation is never a trust anchor: each of its certificates must be one of
    # the trusted root's.
    trusted = {c for ca in trust.authorities for c in ca.chain}
    strangers = [c for c in presented_chain if c not in trusted]
    if strangers:
        raise _legacy_failure(
            f"chain annotation holds a certificate not in the trusted root "
            f"({strangers[0].subject.rfc4514_string()})",
            "verify.untrusted_chain",
        )
    candidates = [ca for ca in trust.authorities if ca.validity.covers(when) and ca.chain]
    if not candidates:
        raise _legacy_failure(f"no Fulcio CA in the trusted root is valid at {when}")
    ca_policy = ExtensionPolicy.webpki_defaults_ca().may_be_present(
        x509.ExtendedKeyUsage, Criticality.NON_CRITICAL, None
    )
    ee_policy = ExtensionPolicy.webpki_defaults_ee().may_be_present(
        x509.ExtendedKeyUsage, Criticality.NON_CRITICAL, None
    )
    problems = []
    for ca in candidates:
        verifier = (
            PolicyBuilder()
            .store(Store([ca.chain[-1]]))
            .time(when)
            .extension_policies(ca_policy=ca_policy, ee_policy=ee_policy)
            .build_client_verifier()
        )
        try:
            return verifier.verify(certificate, list(ca.chain[:-1])).chain[1]
        except (X509VerificationError, ValueError) as e:
            problems.append(str(e))
    raise _legacy_failure(
        f"certificate does not chain to a trusted Fulcio CA at {when}: {'; '.join(problems)}",
        "verify.untrusted_chain",
    )


def _verify_sct(
    trust: _LegacyTrust, *, certificate: x509.Certificate, issuer: x509.Certificate
) -> None:
    # (3b) Fulcio logged the certificate: an embedded SCT from a CT log of the trusted
    # root signs the precertificate (RFC 6962 section 3.2, precert_entry).
    try:
        scts = list(
            certificate.extensions.get_extension_for_class(
                x509.PrecertificateSignedCertificateTimestamps
            ).value
        )
        tbs = certificate.tbs_precertificate_bytes
    except (x509.ExtensionNotFound, ValueError) as e:
        raise _legacy_failure("certificate carries no embedded SCT") from e
    issuer_key_hash = hashlib.sha256(
        issuer.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    ).digest()
    epoch = dt.datetime(1970, 1, 1)
    for sct in scts:
        logs = [log for log in trust.ctlogs if log.log_id == sct.log_id]
        millis = (sct.timestamp.replace(tzinfo=None) - epoch) // dt.timedelta(milliseconds=1)
        signed = b"".join(
            (
                b"\x00\x00",  # v1, certificate_timestamp
                millis.to_bytes(8, "big"),
                b"\x00\x01",  # precert_entry
                issuer_key_hash,
                len(tbs).to_bytes(3, "big"),
                tbs,
                len(sct.extension_bytes).to_bytes(2, "big"),
                sct.extension_bytes,
            )
        )
        for log in logs:
            try:
                _verify_with_key(log.key, signature=sct.signature, data=signed)
                return
            except InvalidSignature:
                continue
    raise _legacy_failure("no embedded SCT verifies with a CT log of the trusted root")


def _verify_entry_body(
    entry: RekorBundleAnnotation, *, signature: bytes, certificate: x509.Certificate, payload: bytes
) -> None:
    # (4) the logged entry is about this signature, this certificate and this payload.
    try:
        body = json.loads(_b64decode(entry.payload.body, "Rekor entry body"))
        if body.get("kind") != "hashedrekord" or body.get("apiVersion") != "0.0.1":
            raise _legacy_failure(
                f"log entry kind {body.get('kind')}/{body.get('apiVersion')} is not "
                "hashedrekord/0.0.1"
            )
        spec = body["spec"]
        logged_signature = _b64decode(spec["signature"]["content"], "logged signature")
        logged_key_pem = _b64decode(spec["signature"]["publicKey"]["content"], "logged key")
        algorithm = spec["data"]["hash"]["algorithm"]
        value = spec["data"]["hash"]["value"]
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise _legacy_failure(f"log entry body is malformed: {e}") from e
    if logged_signature != signature:
        raise _legacy_failure("the log entry records another signature")
    if algorithm != "sha256" or value != hashlib.sha256(payload).hexdigest():
        raise _legacy_failure("the log entry records another payload digest")
    spki = certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    logged_key: Any
    try:
        logged_key = x509.load_pem_x509_certificate(logged_key_pem).public_key()
    except ValueError:
        try:
            logged_key = serialization.load_pem_public_key(logged_key_pem)
        except (ValueError, UnsupportedAlgorithm) as e:
            raise _legacy_failure("the log entry's public key is not PEM") from e
    logged = logged_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if logged != spki:
        raise _legacy_failure("the log entry records another signing key")


def _check_code_signing(certificate: x509.Certificate) -> None:
    try:
        usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
        extended = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound as e:
        raise _legacy_failure("certificate lacks key usage extensions") from e
    if not usage.digital_signature or ExtendedKeyUsageOID.CODE_SIGNING not in extended:
        raise _legacy_failure("certificate is not for code signing")


def verify_legacy_keyless(
    *,
    payload: bytes,
    signature_b64: str,
    certificate_pem: str,
    chain_pem: str | None,
    bundle_annotation: str,
    trusted_root_json: str,
    identity: KeylessIdentity,
    expected_digest: str,
) -> VerifiedSignature:
    """Verify a legacy cosign keyless ``.sig`` layer for ``expected_digest``.

    Takes the layer's simple-signing ``payload`` and its annotations (signature,
    certificate, chain, Rekor bundle). Checks, in order:
    (1) the bundle annotation is well formed;
    (2) its SET is signed by a Rekor key of the trusted root valid at ``integratedTime``;
    (3) the certificate chains to a Fulcio CA of the trusted root valid at
        ``integratedTime`` (so the certificate was valid then), carries an SCT from a CT
        log of the trusted root, is for code signing and names ``identity``;
    (4) the log entry (hashedrekord/0.0.1) records this signature, this certificate's
        key and the sha256 of this payload;
    (5) the signature verifies over the payload;
    (6) the payload names ``expected_digest``.
    Returns the verified signature; raises ``VerificationError`` at the first failure
    (``EvidenceError`` when the verified payload is not a simple-signing payload).
    """
    _check_digest(expected_digest)
    trust = _legacy_trust(trusted_root_json)
    # (1)
    if not bundle_annotation:
        raise _legacy_failure(
            "no dev.sigstore.cosign/bundle annotation: a keyless signature needs its Rekor entry",
            "verify.no_tlog",
        )
    try:
        entry = RekorBundleAnnotation.model_validate_json(bundle_annotation)
    except ValidationError as e:
        raise _legacy_failure(
            f"bundle annotation is malformed: {e.errors()[0]['msg']}",
            "evidence.malformed_signature",
        ) from e
    when = dt.datetime.fromtimestamp(entry.payload.integrated_time, tz=dt.UTC)
    signature = _b64decode(signature_b64, "signature annotation")
    certificates = _load_pem_certificates(certificate_pem, "certificate annotation")
    if len(certificates) != 1:
        raise _legacy_failure(
            "certificate annotation must hold one certificate", "evidence.malformed_signature"
        )
    certificate = certificates[0]
    chain = _load_pem_certificates(chain_pem, "chain annotation") if chain_pem else []
    # (2)
    _verify_set(trust, entry=entry, when=when)
    # (3)
    issuer_certificate = _verify_chain(
        trust, certificate=certificate, presented_chain=chain, when=when
    )
    _verify_sct(trust, certificate=certificate, issuer=issuer_certificate)
    _check_code_signing(certificate)
    subject, issuer = identity.match(certificate)
    # (4)
    _verify_entry_body(entry, signature=signature, certificate=certificate, payload=payload)
    # (5)
    key = certificate.public_key()
    try:
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise InvalidSignature("Fulcio certificates carry ECDSA keys")
        key.verify(signature, payload, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as e:
        raise _legacy_failure("the signature does not verify over the payload") from e
    # (6) the payload is trusted only now.
    claims = bind_simple_signing(payload, expected_digest=expected_digest)
    return VerifiedSignature(
        format=SignatureFormat.legacy,
        kind=SignatureKind.keyless,
        subject=subject,
        issuer=issuer,
        signed_at=when,
        tlog=True,
        digest=expected_digest,
        annotations=claims.annotations,
        signed_identities=claims.signed_identities,
    )
