"""Transparency-log evidence of a legacy cosign keyless signature: Rekor's SET, the
logged entry, and the certificate's embedded SCT.

A legacy ``.sig`` layer carries cosign's ``dev.sigstore.cosign/bundle`` annotation: a Rekor
entry (``hashedrekord`` body, integrated time, log id and index) and Rekor's signed entry
timestamp (SET) over it, but no inclusion proof; its Fulcio certificate embeds an SCT from
a certificate-transparency log. sigstore-python cannot verify an entry that has no
inclusion proof, so these are checked here on ``cryptography`` against the logs of the
trusted root (``app.verify.trusted_root``):

- ``verify_set``: the SET is Rekor's signature (RFC 8785 JSON of the entry) by a log key
  valid at the entry's integrated time;
- ``verify_entry_body``: the logged entry records this signature, this certificate's key
  and the SHA-256 of this payload;
- ``verify_sct``: an embedded SCT signs the precertificate (RFC 6962 section 3.2) with a
  CT log key of the trusted root.

Each raises ``VerificationError`` (``verify.keyless_failed``, or
``evidence.malformed_signature`` for undecodable fields) saying what did not hold.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
from collections.abc import Iterable
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from pydantic import BaseModel, ConfigDict, Field

from app.errors import VerificationError
from app.signing.signers import verify_signature
from app.verify.trusted_root import ParsedTrustedRoot, TransparencyLog


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

    @property
    def integrated_at(self) -> dt.datetime:
        """When Rekor logged the entry: the time the certificate must have been valid."""
        return dt.datetime.fromtimestamp(self.payload.integrated_time, tz=dt.UTC)

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


def decode_base64(value: str, what: str) -> bytes:
    """Standard base64 ``value``; ``VerificationError`` (``evidence.malformed_signature``)
    naming ``what`` otherwise."""
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as e:
        raise VerificationError(
            f"{what} is not valid base64", code="evidence.malformed_signature"
        ) from e


def _failure(message: str) -> VerificationError:
    return VerificationError(message, code="verify.keyless_failed")


def _signed_by_any(logs: Iterable[TransparencyLog], *, signature: bytes, data: bytes) -> bool:
    """Whether one of ``logs`` made ``signature`` over ``data`` (logs sign with SHA-256)."""
    for log in logs:
        try:
            verify_signature(
                log.key, signature=signature, data=data, hash_algorithms=(hashes.SHA256(),)
            )
        except VerificationError:
            continue
        return True
    return False


def verify_set(root: ParsedTrustedRoot, *, entry: RekorBundleAnnotation) -> None:
    """Check the entry's SET with a Rekor key of ``root`` valid when the entry was logged."""
    when = entry.integrated_at
    log_id = bytes.fromhex(entry.payload.log_id)
    logs = [log for log in root.tlogs if log.log_id == log_id and log.validity.covers(when)]
    if not logs:
        raise _failure(
            f"no transparency log {entry.payload.log_id} in the trusted root valid at {when}"
        )
    signature = decode_base64(entry.signed_entry_timestamp, "SignedEntryTimestamp")
    signed = entry.canonical_set_payload()
    if not _signed_by_any(logs, signature=signature, data=signed):
        raise _failure("the signed entry timestamp (SET) does not verify with the log key")


def verify_sct(
    root: ParsedTrustedRoot, *, certificate: x509.Certificate, issuer: x509.Certificate
) -> None:
    """Check that a CT log of ``root`` logged ``certificate``, issued by ``issuer``: one
    embedded SCT must sign the precertificate (RFC 6962 section 3.2, precert_entry)."""
    try:
        scts = list(
            certificate.extensions.get_extension_for_class(
                x509.PrecertificateSignedCertificateTimestamps
            ).value
        )
        tbs = certificate.tbs_precertificate_bytes
    except (x509.ExtensionNotFound, ValueError) as e:
        raise _failure("certificate carries no embedded SCT") from e
    issuer_key_hash = hashlib.sha256(
        issuer.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    ).digest()
    epoch = dt.datetime(1970, 1, 1)
    for sct in scts:
        logs = [log for log in root.ctlogs if log.log_id == sct.log_id]
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
        if _signed_by_any(logs, signature=sct.signature, data=signed):
            return
    raise _failure("no embedded SCT verifies with a CT log of the trusted root")


def verify_entry_body(
    entry: RekorBundleAnnotation, *, signature: bytes, certificate: x509.Certificate, payload: bytes
) -> None:
    """Check that the logged entry (hashedrekord/0.0.1) is about this ``signature``, this
    ``certificate``'s key and this ``payload``."""
    try:
        body = json.loads(decode_base64(entry.payload.body, "Rekor entry body"))
        if body.get("kind") != "hashedrekord" or body.get("apiVersion") != "0.0.1":
            raise _failure(
                f"log entry kind {body.get('kind')}/{body.get('apiVersion')} is not "
                "hashedrekord/0.0.1"
            )
        spec = body["spec"]
        logged_signature = decode_base64(spec["signature"]["content"], "logged signature")
        logged_key_pem = decode_base64(spec["signature"]["publicKey"]["content"], "logged key")
        algorithm = spec["data"]["hash"]["algorithm"]
        value = spec["data"]["hash"]["value"]
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise _failure(f"log entry body is malformed: {e}") from e
    if logged_signature != signature:
        raise _failure("the log entry records another signature")
    if algorithm != "sha256" or value != hashlib.sha256(payload).hexdigest():
        raise _failure("the log entry records another payload digest")
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
            raise _failure("the log entry's public key is not PEM") from e
    logged = logged_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if logged != spki:
        raise _failure("the log entry records another signing key")
