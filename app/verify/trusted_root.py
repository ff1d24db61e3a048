"""Sigstore trusted roots: the one parser of a trusted root's JSON, and what it trusts.

A trusted root (protobuf-specs ``TrustedRoot``) names the Fulcio certificate authorities,
the Rekor transparency logs and the certificate-transparency logs of a Sigstore instance,
each with its validity period. ``parse_trusted_root`` reads it once, with
sigstore-python's model, into a ``ParsedTrustedRoot`` that serves both keyless verifiers:
sigstore-python's ``Verifier`` takes its ``sigstore`` model (``app.verify.keyless``), and
the legacy cosign verifier (``app.verify.keyless_legacy``) reads its ``authorities``,
``tlogs`` and ``ctlogs``, which sigstore-python does not expose with their validity.

Trusted roots are parsed in memory, never written to a file: a caller of POST /v1/verify
may send a new one with every request. The cache is small and keyed by content digest.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from functools import lru_cache

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from sigstore.errors import Error as SigstoreError
from sigstore.models import TrustedRoot
from sigstore_models.common import v1 as common_v1
from sigstore_models.trustroot import v1 as trustroot_v1

from app.errors import VerificationError
from app.limits import MAX_TRUSTED_ROOT_BYTES

# How many parsed trusted roots (and sigstore-python verifiers built on them) are kept.
ROOT_CACHE_SIZE = 8


@dataclass(frozen=True)
class Validity:
    """When a CA or log key of the trusted root may be relied on (either end may be open)."""

    start: dt.datetime | None
    end: dt.datetime | None

    def covers(self, moment: dt.datetime) -> bool:
        return (self.start is None or self.start <= moment) and (
            self.end is None or moment <= self.end
        )

    @classmethod
    def of(cls, period: common_v1.TimeRange | None) -> Validity:
        if period is None:
            return cls(start=None, end=None)
        return cls(start=period.start, end=period.end)


@dataclass(frozen=True)
class CertificateAuthority:
    """A Fulcio CA: its chain, leaf-most first and root last."""

    chain: tuple[x509.Certificate, ...]
    validity: Validity


@dataclass(frozen=True)
class TransparencyLog:
    """A Rekor or certificate-transparency log: its id (SHA-256 of its key) and key."""

    log_id: bytes
    key: object = field(repr=False)  # a cryptography public key; the verifier checks its type
    validity: Validity


@dataclass(frozen=True)
class ParsedTrustedRoot:
    """A trusted root, parsed once; compared and hashed by the digest of its JSON text."""

    digest: str
    sigstore: TrustedRoot = field(compare=False, repr=False)
    authorities: tuple[CertificateAuthority, ...] = field(compare=False, repr=False)
    tlogs: tuple[TransparencyLog, ...] = field(compare=False, repr=False)
    ctlogs: tuple[TransparencyLog, ...] = field(compare=False, repr=False)


@dataclass(frozen=True)
class _RootJson:
    """A trusted root's JSON text as a cache key: compared and hashed by its digest."""

    digest: str
    text: str = field(compare=False, repr=False)


def parse_trusted_root(text: str) -> ParsedTrustedRoot:
    """Parse the trusted root JSON ``text`` (cached by content).

    Raises ``VerificationError`` (code ``verify.trusted_root``) when it is larger than
    ``MAX_TRUSTED_ROOT_BYTES`` or not a usable Sigstore trusted root.
    """
    data = text.encode()
    if len(data) > MAX_TRUSTED_ROOT_BYTES:
        raise VerificationError(
            f"trusted root is larger than {MAX_TRUSTED_ROOT_BYTES} bytes",
            code="verify.trusted_root",
        )
    root = _RootJson(digest=hashlib.sha256(data).hexdigest(), text=text)
    try:
        return _parse(root)
    except (ValueError, TypeError, SigstoreError, UnsupportedAlgorithm) as e:
        # JSON and protobuf-model errors, certificates and keys that do not load
        raise VerificationError(
            f"trusted root {root.digest[:12]} is not a Sigstore trusted root: {e}",
            code="verify.trusted_root",
        ) from e


@lru_cache(maxsize=ROOT_CACHE_SIZE)
def _parse(root: _RootJson) -> ParsedTrustedRoot:
    inner = trustroot_v1.TrustedRoot.from_json(root.text)
    authorities = tuple(
        CertificateAuthority(
            chain=tuple(
                x509.load_der_x509_certificate(c.raw_bytes) for c in ca.cert_chain.certificates
            ),
            validity=Validity.of(ca.valid_for),
        )
        for ca in inner.certificate_authorities
    )
    return ParsedTrustedRoot(
        digest=root.digest,
        sigstore=TrustedRoot(inner),
        authorities=authorities,
        tlogs=tuple(_log(log) for log in inner.tlogs),
        ctlogs=tuple(_log(log) for log in inner.ctlogs),
    )


def _log(log: trustroot_v1.TransparencyLogInstance) -> TransparencyLog:
    if log.public_key.raw_bytes is None:
        raise ValueError(f"transparency log {log.base_url} has no public key")
    return TransparencyLog(
        log_id=log.log_id.key_id,
        key=serialization.load_der_public_key(log.public_key.raw_bytes),
        validity=Validity.of(log.public_key.valid_for),
    )
