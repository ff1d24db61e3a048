"""Trust configuration: named authorities (public keys or keyless identities) and their scopes.

An authority says who may vouch for an image. A *key* authority holds one or more public
keys (``app.verify.trusted_keys``). A *keyless* authority holds a Sigstore identity
(``app.verify.keyless_identity``: certificate subject and OIDC issuer, each exact or a
regular expression) and the trusted root its certificates and log entries must chain to
(``app.verify.trusted_root``: the built-in ``public-good`` or ``staging`` roots, or a custom
trusted root JSON stored with the authority). Each authority has image scope globs
(``app.oci.globs``): a new authority must name at least one (``**`` for every image on
purpose); rows stored before scopes were required may have none, which still means every
image, and the service warns about them at start-up. Each stored authority also has a
signed-identity rule (``app.verify.identity``): ``match-repository`` unless asked otherwise;
rows stored before the rule existed accept any signed identity, with a start-up warning.

Rows never leave this module: callers get frozen ``TrustAuthority`` objects.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.audit.changes import record_change
from app.audit.entry import CLI_ACTOR, AuditKind
from app.auth.scopes import required_globs
from app.db.models import Authority, AuthorityKind
from app.errors import ConflictError, InputError, NotFoundError
from app.limits import MAX_KEYS_PER_AUTHORITY
from app.oci.globs import glob_matches, validate_glob
from app.verify.identity import ANY_IDENTITY, MATCH_REPOSITORY, IdentityMode, SignedIdentityRule
from app.verify.keyless_identity import KeylessIdentity
from app.verify.trusted_keys import TrustedKey, split_pem_keys
from app.verify.trusted_root import PUBLIC_GOOD, TrustedRootRef

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


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
        trusted_root=TrustedRootRef.from_stored(root_value),
        scopes=tuple(row.scopes),
        signed_identity=rule,
        created_at=row.created_at,
    )
