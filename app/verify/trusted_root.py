"""Sigstore trusted roots: which one an authority uses, and the one parser of its JSON.

A trusted root (protobuf-specs ``TrustedRoot``) names the Fulcio certificate authorities,
the Rekor transparency logs and the certificate-transparency logs of a Sigstore instance,
each with its validity period. A keyless authority names its root with a
``TrustedRootRef``: ``public-good`` or ``staging`` (the roots shipped in the
sigstore-python wheel), or a custom trusted root JSON stored with the authority.

``parse_trusted_root`` reads a root once, with sigstore-python's model, into a
``ParsedTrustedRoot`` that serves both keyless verifiers: sigstore-python's ``Verifier``
takes its ``sigstore`` model (``app.verify.keyless``), and the legacy cosign verifier
(``app.verify.keyless_legacy``) reads its ``authorities``, ``tlogs`` and ``ctlogs`` with
the validity periods its checks need (sigstore-python hands out only keyrings). Trusted
roots are parsed in memory, never written to a file: a caller of POST /v1/verify may send a
new one with every request. The cache is small and keyed by content digest.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from sigstore.errors import Error as SigstoreError
from sigstore.models import TrustedRoot
from sigstore_models.common import v1 as common_v1
from sigstore_models.trustroot import v1 as trustroot_v1

from app.errors import InputError, VerificationError
from app.limits import MAX_TRUSTED_ROOT_BYTES

PUBLIC_GOOD = "public-good"
STAGING = "staging"
BUILTIN_ROOTS = {
    PUBLIC_GOOD: "https%3A%2F%2Ftuf-repo-cdn.sigstore.dev",
    STAGING: "https%3A%2F%2Ftuf-repo-cdn.sigstage.dev",
}
TRUSTED_ROOT_MEDIA_TYPE = "application/vnd.dev.sigstore.trustedroot+json;version=0.1"


@dataclass(frozen=True)
class TrustedRootRef:
    """Which trusted root a keyless authority uses: a built-in name or custom JSON text."""

    name: str  # "public-good", "staging" or "custom"
    content: str = field(repr=False)

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.content.encode()).hexdigest()

    @property
    def stored(self) -> str:
        """What goes in the ``authorities.trusted_root`` column."""
        return self.name if self.name in BUILTIN_ROOTS else self.content

    def describe(self) -> str:
        return self.name if self.name in BUILTIN_ROOTS else f"custom {self.digest}"

    @classmethod
    def builtin(cls, name: str) -> TrustedRootRef:
        return cls(name=name, content=_builtin_root_path(name).read_text())

    @classmethod
    def from_text(cls, text: str) -> TrustedRootRef:
        """A custom trusted root from its JSON text; raise ``InputError`` if it is not one."""
        if len(text.encode()) > MAX_TRUSTED_ROOT_BYTES:
            raise InputError(f"trusted root is larger than {MAX_TRUSTED_ROOT_BYTES} bytes")
        try:
            doc = json.loads(text)
        except ValueError as e:
            raise InputError(f"trusted root is not valid JSON: {e}") from e
        if not isinstance(doc, dict) or doc.get("mediaType") != TRUSTED_ROOT_MEDIA_TYPE:
            raise InputError(
                f"trusted root must be a JSON object with mediaType {TRUSTED_ROOT_MEDIA_TYPE!r}"
            )
        try:
            parse_trusted_root(text)
        except VerificationError as e:
            raise InputError(e.message) from e
        return cls(name="custom", content=text)

    @classmethod
    def from_stored(cls, value: str) -> TrustedRootRef:
        """The root an ``authorities.trusted_root`` value names (checked when it was stored)."""
        return _stored_root(value)

    @classmethod
    def resolve(cls, value: str, *, allow_path: bool = True) -> TrustedRootRef:
        """``public-good``/``staging``, a path to a trusted root file, or its JSON text.

        ``allow_path=False`` (the HTTP API) refuses file paths: a caller must not make the
        service read its own files.
        """
        if value in BUILTIN_ROOTS:
            return cls.builtin(value)
        if value.lstrip().startswith("{"):
            return cls.from_text(value)
        if not allow_path:
            raise InputError(
                "trusted root must be 'public-good', 'staging' or the trusted root JSON itself "
                "(a file path is not accepted here)"
            )
        path = Path(value)
        try:
            if path.stat().st_size > MAX_TRUSTED_ROOT_BYTES:
                raise InputError(f"trusted root {value} is larger than {MAX_TRUSTED_ROOT_BYTES}")
            return cls.from_text(path.read_text())
        except OSError as e:
            raise InputError(
                f"trusted root {value!r} is neither 'public-good', 'staging' nor a readable "
                f"file: {e.strerror or e}"
            ) from e


def _builtin_root_path(name: str) -> Path:
    folder = resources.files("sigstore._store").joinpath(BUILTIN_ROOTS[name])
    return Path(str(folder.joinpath("trusted_root.json")))


@lru_cache(maxsize=64)
def _stored_root(value: str) -> TrustedRootRef:
    # Authorities are read from their rows on every listing: a built-in root's file is read
    # once.
    if value in BUILTIN_ROOTS:
        return TrustedRootRef.builtin(value)
    return TrustedRootRef(name="custom", content=value)


# -- parsing -------------------------------------------------------------------------------

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
