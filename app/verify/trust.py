"""Trust configuration: named authorities (public keys or keyless identities) and their scopes.

An authority says who may vouch for an image. A *key* authority holds one or more public
keys (PEM; ECDSA P-256/P-384, Ed25519, RSA 2048/3072/4096; anything else is refused, as
on the signing side). A *keyless* authority holds a Sigstore identity (certificate
subject and OIDC issuer, each exact or a regular expression) and the trusted root its
certificates and log entries must chain to: the built-in ``public-good`` or ``staging``
roots shipped in the sigstore-python wheel, or a custom trusted root JSON stored with the
authority. Each authority has image scope globs (``app.auth.scopes``): a new authority must
name at least one (``**`` for every image on purpose); rows stored before scopes were
required may have none, which still means every image, and the service warns about them at
start-up. Each stored authority also has a signed-identity rule (``app.verify.identity``):
``match-repository`` unless asked otherwise; rows stored before the rule existed accept any
signed identity, with a start-up warning.

Key ids are the lowercase hex SHA-256 of the key's DER SubjectPublicKeyInfo; cosign's
bundle ``verificationMaterial.publicKey.hint`` is the standard base64 of the same hash
(``app.signing.signers``). A hint only orders which key is tried first.

Rows never leave this module: callers get frozen ``TrustAuthority`` objects.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.audit.changes import record_change
from app.audit.entry import CLI_ACTOR, AuditKind
from app.auth.scopes import glob_matches, required_globs, validate_glob
from app.db.models import Authority, AuthorityKind
from app.errors import ConflictError, InputError, NotFoundError, VerificationError
from app.signing.signers import algorithm_of, key_id, public_key_hint, public_key_pem
from app.verify.identity import ANY_IDENTITY, MATCH_REPOSITORY, IdentityMode, SignedIdentityRule
from app.verify.keyless import KeylessIdentity

PUBLIC_GOOD = "public-good"
STAGING = "staging"
BUILTIN_ROOTS = {
    PUBLIC_GOOD: "https%3A%2F%2Ftuf-repo-cdn.sigstore.dev",
    STAGING: "https%3A%2F%2Ftuf-repo-cdn.sigstage.dev",
}
TRUSTED_ROOT_MEDIA_TYPE = "application/vnd.dev.sigstore.trustedroot+json;version=0.1"
MAX_TRUSTED_ROOT_BYTES = 1024 * 1024
MAX_KEYS_PER_AUTHORITY = 32
SUPPORTED_KEYS = "ECDSA P-256, ECDSA P-384, Ed25519 or RSA (2048, 3072, 4096 bits)"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


# -- public keys -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrustedKey:
    """A parsed public key an authority trusts. Build it with ``TrustedKey.from_pem``.

    ``verify`` checks a signature over data the way cosign and sigstore clients sign:
    ECDSA as ASN.1 DER over SHA-256 (P-256) or SHA-384 (P-384; SHA-256 is also accepted
    because cosign verifies loaded keys with SHA-256 whatever the curve), RSA PKCS#1 v1.5
    with SHA-256 (cosign's ``LoadVerifier`` default), Ed25519 over the data itself.
    """

    key_id: str
    hint: str
    algorithm: str
    pem: str
    public_key: Any = field(repr=False, compare=False)

    @classmethod
    def from_pem(cls, pem: str | bytes) -> TrustedKey:
        """Parse one PEM public key; raise ``InputError`` for anything not supported."""
        text = pem.decode("utf-8", "replace") if isinstance(pem, bytes) else pem
        return _parse_key(text.strip() + "\n")

    def _hashes(self) -> tuple[hashes.HashAlgorithm, ...]:
        if self.algorithm == "ecdsa-p384":
            return (hashes.SHA384(), hashes.SHA256())
        return (hashes.SHA256(),)

    def verify(self, *, signature: bytes, data: bytes) -> None:
        """Return if ``signature`` is this key's signature over ``data``; else raise."""
        key = self.public_key
        for algorithm in self._hashes():
            try:
                if isinstance(key, ec.EllipticCurvePublicKey):
                    key.verify(signature, data, ec.ECDSA(algorithm))
                elif isinstance(key, rsa.RSAPublicKey):
                    key.verify(signature, data, padding.PKCS1v15(), algorithm)
                else:
                    key.verify(signature, data)
                return
            except (InvalidSignature, ValueError):
                continue
        raise VerificationError(
            f"signature does not verify with key {self.key_id[:16]}", code="verify.bad_signature"
        )

    def verify_digest(self, *, signature: bytes, digest: bytes) -> None:
        """Verify a signature over a SHA-256 digest already computed (message signatures).

        Ed25519 signs the message itself, never a digest, so it cannot verify this way.
        """
        key = self.public_key
        prehashed = utils.Prehashed(hashes.SHA256())
        try:
            if isinstance(key, ec.EllipticCurvePublicKey):
                key.verify(signature, digest, ec.ECDSA(prehashed))
            elif isinstance(key, rsa.RSAPublicKey):
                key.verify(signature, digest, padding.PKCS1v15(), prehashed)
            else:
                raise VerificationError(
                    "an Ed25519 key cannot verify a signature over a digest "
                    "(message-signature bundles need ECDSA or RSA keys)",
                    code="verify.unsupported_key",
                )
        except (InvalidSignature, ValueError) as e:
            raise VerificationError(
                f"signature does not verify with key {self.key_id[:16]}",
                code="verify.bad_signature",
            ) from e


def verify_with_any_key(
    keys: Iterable[TrustedKey], check: Callable[[TrustedKey], None]
) -> TrustedKey:
    """The first key for which ``check`` (a ``verify`` call) passes; else VerificationError."""
    tried = 0
    for key in keys:
        tried += 1
        try:
            check(key)
        except VerificationError:
            continue
        return key
    raise VerificationError(
        f"the signature does not verify with any of the {tried} trusted key(s)",
        code="verify.bad_signature",
    )


@lru_cache(maxsize=256)
def _parse_key(pem: str) -> TrustedKey:
    try:
        key = serialization.load_pem_public_key(pem.encode())
    except (ValueError, UnsupportedAlgorithm, TypeError) as e:
        raise InputError(
            f"not a PEM public key ({type(e).__name__}); give a 'BEGIN PUBLIC KEY' block "
            f"of {SUPPORTED_KEYS}",
            code="input.invalid_key",
        ) from e
    # The same key types the signing side accepts (DSA, Ed448, X25519, other curves, RSA
    # under 2048 bits or of unusual sizes are refused there, with the reason).
    algorithm = algorithm_of(key)
    assert isinstance(key, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | rsa.RSAPublicKey)
    return TrustedKey(
        key_id=key_id(key),
        hint=public_key_hint(key),
        algorithm=algorithm.value,
        pem=public_key_pem(key),
        public_key=key,
    )


def split_pem_keys(text: str) -> list[str]:
    """The ``BEGIN PUBLIC KEY`` blocks in ``text`` (a file may hold several keys)."""
    blocks = re.findall(
        r"-----BEGIN [A-Z ]*PUBLIC KEY-----.*?-----END [A-Z ]*PUBLIC KEY-----", text, re.S
    )
    if not blocks:
        raise InputError(
            "no PEM public key found (expected '-----BEGIN PUBLIC KEY-----')",
            code="input.invalid_key",
        )
    return blocks


# -- keyless identities and trusted roots -------------------------------------------------------


def parse_identity(
    *,
    subject: str | None = None,
    subject_regexp: str | None = None,
    issuer: str | None = None,
    issuer_regexp: str | None = None,
) -> KeylessIdentity:
    """A keyless identity from cosign-style fields; ``InputError`` naming what is wrong.

    Exactly one of ``subject``/``subject_regexp`` and one of ``issuer``/``issuer_regexp``;
    regular expressions are RE2 syntax, as cosign's ``--certificate-identity-regexp``, but
    must match the whole value where cosign searches (see ``app.verify.patterns``). A pattern
    RE2 refuses or one that is too long raises ``InputError`` (``input.invalid_pattern``).
    """
    for value, what in ((subject, "certificate identity"), (issuer, "certificate OIDC issuer")):
        if value is not None and not value.strip():
            raise InputError(f"keyless identity is not valid: the {what} is empty")
    try:
        return KeylessIdentity(
            subject=subject, subject_regex=subject_regexp, issuer=issuer, issuer_regex=issuer_regexp
        )
    except ValidationError as e:
        message = str(e.errors()[0].get("msg", e)).removeprefix("Value error, ")
        raise InputError(
            f"keyless identity is not valid: {message} (give --certificate-identity or "
            "--certificate-identity-regexp, and --certificate-oidc-issuer or "
            "--certificate-oidc-issuer-regexp)"
        ) from e


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
            from sigstore.models import TrustedRoot
            from sigstore_models.trustroot import v1 as trustroot_v1

            TrustedRoot(trustroot_v1.TrustedRoot.from_json(text))
        except Exception as e:  # pydantic, protobuf and sigstore errors share no base class
            raise InputError(f"trusted root is not usable: {type(e).__name__}: {e}") from e
        return cls(name="custom", content=text)

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


# -- authorities -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrustAuthority:
    """A named source of trust, parsed and ready to verify with.

    ``signed_identity`` says which repository a signature must have been made for
    (``app.verify.identity``); empty ``scopes`` means every image (stored rows from before
    scopes were required, and the one-off trust of ``sealgate verify --key``).
    """

    name: str
    kind: AuthorityKind
    keys: tuple[TrustedKey, ...] = ()
    identity: KeylessIdentity | None = None
    trusted_root: TrustedRootRef | None = None
    scopes: tuple[str, ...] = ()
    signed_identity: SignedIdentityRule = MATCH_REPOSITORY
    created_at: dt.datetime | None = None

    def applies_to(self, image_name: str) -> bool:
        """Whether this authority covers ``image_name`` (``registry/repository``)."""
        return not self.scopes or any(glob_matches(g, image_name) for g in self.scopes)

    def to_json(self) -> dict[str, Any]:
        """The public description (API and CLI); public keys only, never secrets."""
        body: dict[str, Any] = {"name": self.name, "kind": self.kind.value}
        if self.kind is AuthorityKind.key:
            body["keys"] = [
                {"key_id": k.key_id, "algorithm": k.algorithm, "pem": k.pem} for k in self.keys
            ]
        else:
            assert self.identity is not None and self.trusted_root is not None
            body["identity"] = self.identity.model_dump(exclude_none=True)
            body["trusted_root"] = self.trusted_root.describe()
        body["scopes"] = list(self.scopes)
        body["signed_identity"] = self.signed_identity.mode.value
        if self.signed_identity.mode is IdentityMode.remap:
            body["remap_identity"] = [r.to_json() for r in self.signed_identity.remaps]
        body["created_at"] = self.created_at.isoformat() if self.created_at else None
        return body


def key_authority(
    *,
    name: str,
    keys: list[str],
    scopes: list[str] | None = None,
    signed_identity: SignedIdentityRule = MATCH_REPOSITORY,
) -> TrustAuthority:
    """An unsaved key authority from PEM texts (each may hold several keys)."""
    blocks = [block for text in keys for block in split_pem_keys(text)]
    if not blocks:
        raise InputError("a key authority needs at least one public key")
    if len(blocks) > MAX_KEYS_PER_AUTHORITY:
        raise InputError(f"an authority holds at most {MAX_KEYS_PER_AUTHORITY} keys")
    parsed = {k.key_id: k for k in (TrustedKey.from_pem(b) for b in blocks)}
    return TrustAuthority(
        name=_valid_name(name),
        kind=AuthorityKind.key,
        keys=tuple(parsed.values()),
        scopes=_valid_scopes(scopes),
        signed_identity=signed_identity,
    )


def keyless_authority(
    *,
    name: str,
    identity: KeylessIdentity,
    trusted_root: TrustedRootRef,
    scopes: list[str] | None = None,
    signed_identity: SignedIdentityRule = MATCH_REPOSITORY,
) -> TrustAuthority:
    """An unsaved keyless authority."""
    return TrustAuthority(
        name=_valid_name(name),
        kind=AuthorityKind.keyless,
        identity=identity,
        trusted_root=trusted_root,
        scopes=_valid_scopes(scopes),
        signed_identity=signed_identity,
    )


def new_authority(
    *,
    name: str,
    keys: list[str] | None = None,
    identity: KeylessIdentity | None = None,
    trusted_root: TrustedRootRef | None = None,
    scopes: list[str] | None = None,
    signed_identity: SignedIdentityRule = MATCH_REPOSITORY,
) -> TrustAuthority:
    """An unsaved authority of the kind the caller described (the API's and CLI's choice).

    Exactly one of ``keys`` (PEM texts) and ``identity``; ``trusted_root`` only with an
    identity (``public-good`` when not given); at least one scope (``**`` for every image).
    ``InputError`` otherwise.
    """
    if keys and identity is not None:
        raise InputError("an authority holds either public keys or a keyless identity, not both")
    if keys:
        if trusted_root is not None:
            raise InputError("a trusted root goes with a keyless identity only")
        authority = key_authority(
            name=name, keys=keys, scopes=scopes, signed_identity=signed_identity
        )
    elif identity is not None:
        authority = keyless_authority(
            name=name,
            identity=identity,
            trusted_root=trusted_root or TrustedRootRef.builtin(PUBLIC_GOOD),
            scopes=scopes,
            signed_identity=signed_identity,
        )
    else:
        raise InputError(
            "give public keys, or a keyless identity (certificate identity or its regexp, and "
            "OIDC issuer or its regexp)"
        )
    _required_scopes(authority.scopes)
    return authority


def _valid_name(name: str) -> str:
    if not _NAME.match(name):
        raise InputError(
            f"authority name {name!r} must be 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def _valid_scopes(scopes: list[str] | None) -> tuple[str, ...]:
    return tuple(dict.fromkeys(validate_glob(s.strip()) for s in scopes or []))


def _required_scopes(scopes: Iterable[str] | None) -> tuple[str, ...]:
    return required_globs(scopes, what="an authority", code="input.authority_scope")


def save_authority(
    session: Session, authority: TrustAuthority, *, actor: str = CLI_ACTOR
) -> TrustAuthority:
    """Store a new authority (audited as ``authority.add``); ``ConflictError`` when the
    name is taken, ``InputError`` when it names no scope (no new authority silently vouches
    for every image)."""
    _required_scopes(authority.scopes)
    row = Authority(
        name=authority.name,
        kind=authority.kind,
        public_keys=[k.pem for k in authority.keys],
        identity=authority.identity.model_dump(exclude_none=True) if authority.identity else None,
        trusted_root=authority.trusted_root.stored if authority.trusted_root else None,
        scopes=list(authority.scopes),
        signed_identity=authority.signed_identity.stored(),
    )
    session.add(row)
    try:
        session.flush()
    except IntegrityError as e:
        raise ConflictError(f"an authority named {authority.name!r} already exists") from e
    saved = _from_row(row)
    record_change(
        session,
        kind=AuditKind.authority_add,
        actor=actor,
        object=f"authority/{saved.name}",
        details={
            "kind": saved.kind.value,
            "key_ids": [k.key_id for k in saved.keys],
            "identity": saved.identity.model_dump(exclude_none=True) if saved.identity else None,
            "scopes": list(saved.scopes),
        },
    )
    return saved


def list_authorities(session: Session) -> list[TrustAuthority]:
    """Every authority, by name."""
    return [_from_row(r) for r in session.scalars(select(Authority).order_by(Authority.name))]


def get_authority(session: Session, name: str) -> TrustAuthority:
    """The authority called ``name``; ``NotFoundError`` otherwise."""
    row = session.scalar(select(Authority).where(Authority.name == name))
    if row is None:
        raise NotFoundError(f"no authority named {name!r}", code="not_found.authority")
    return _from_row(row)


def remove_authority(session: Session, name: str, *, actor: str = CLI_ACTOR) -> None:
    """Delete the authority called ``name`` (audited as ``authority.remove``);
    ``NotFoundError`` otherwise."""
    row = session.scalar(select(Authority).where(Authority.name == name))
    if row is None:
        raise NotFoundError(f"no authority named {name!r}", code="not_found.authority")
    session.delete(row)
    session.flush()
    record_change(session, kind=AuditKind.authority_remove, actor=actor, object=f"authority/{name}")


def matching_authorities(session: Session, image_name: str) -> list[TrustAuthority]:
    """Authorities whose scopes cover ``image_name`` (normalised, without tag or digest)."""
    return [a for a in list_authorities(session) if a.applies_to(image_name)]


def unscoped_authorities(session: Session) -> list[str]:
    """Names of stored authorities with no scope (from before scopes were required): they
    vouch for every image. Listed in a warning at start-up."""
    rows = session.execute(select(Authority.name, Authority.scopes).order_by(Authority.name))
    return [name for name, scopes in rows if not scopes]


def authorities_without_identity_rule(session: Session) -> list[str]:
    """Names of stored authorities with no signed-identity rule (from before the rule
    existed): they accept a signature made for any repository. Listed at start-up."""
    query = select(Authority.name).where(Authority.signed_identity.is_(None))
    return list(session.scalars(query.order_by(Authority.name)))


def _from_row(row: Authority) -> TrustAuthority:
    # A row without a rule predates it and keeps its old behaviour: any signed identity.
    rule = (
        SignedIdentityRule.from_stored(row.signed_identity) if row.signed_identity else ANY_IDENTITY
    )
    if row.kind is AuthorityKind.key:
        return TrustAuthority(
            name=row.name,
            kind=row.kind,
            keys=tuple(TrustedKey.from_pem(p) for p in row.public_keys),
            scopes=tuple(row.scopes),
            signed_identity=rule,
            created_at=row.created_at,
        )
    root_value = row.trusted_root or PUBLIC_GOOD
    return TrustAuthority(
        name=row.name,
        kind=row.kind,
        # Validated when stored; not again here, so that a pattern stored before RE2 that
        # RE2 refuses fails this authority's verifications (verify.invalid_pattern) instead
        # of every listing of authorities.
        identity=KeylessIdentity.model_construct(**(row.identity or {})),
        trusted_root=_stored_root(root_value),
        scopes=tuple(row.scopes),
        signed_identity=rule,
        created_at=row.created_at,
    )


@lru_cache(maxsize=64)
def _stored_root(value: str) -> TrustedRootRef:
    if value in BUILTIN_ROOTS:
        return TrustedRootRef.builtin(value)
    return TrustedRootRef(name="custom", content=value)
