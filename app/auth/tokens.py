"""API bearer tokens: created once, shown once, stored only as a SHA-256 hash.

A token is ``sgt_`` followed by 43 URL-safe characters (256 random bits). Lookups hash
the presented value and compare in constant time, so the database never holds a usable
secret and timing does not reveal how much of a guess was right.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.audit.changes import record_change
from app.audit.entry import CLI_ACTOR, AuditKind
from app.auth.scopes import ADMIN, Scope
from app.db.base import utcnow
from app.db.models import ApiToken
from app.errors import AuthError, ConflictError, ForbiddenError, InputError, NotFoundError

TOKEN_PREFIX = "sgt_"


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: the token's name and its scopes."""

    name: str
    scopes: tuple[Scope, ...]

    @property
    def is_admin(self) -> bool:
        return any(s.action == ADMIN for s in self.scopes)

    def allows(self, action: str, image_name: str) -> bool:
        return any(s.allows(action, image_name) for s in self.scopes)

    def authorize(self, action: str, image_name: str) -> None:
        """Raise ForbiddenError unless one of the scopes allows ``action`` on the image."""
        if not self.allows(action, image_name):
            raise ForbiddenError(
                f"token {self.name!r} may not {action} {image_name}: its scopes are "
                f"{', '.join(str(s) for s in self.scopes) or 'none'}",
                code="auth.out_of_scope",
            )

    def require_admin(self) -> None:
        if not self.is_admin:
            raise ForbiddenError(
                f"token {self.name!r} is not an administrator token", code="auth.not_admin"
            )


@dataclass(frozen=True)
class IssuedToken:
    name: str
    token: str  # the only time the plaintext exists
    scopes: tuple[str, ...]
    expires_at: dt.datetime | None


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(
    session: Session,
    *,
    name: str,
    scopes: list[str],
    expires_at: dt.datetime | None = None,
    actor: str = CLI_ACTOR,
) -> IssuedToken:
    """Create a token with the given scopes; the plaintext is returned once and never stored.
    The creation is audited (``token.create``, by ``actor``) in the same transaction."""
    if not name or len(name) > 128:
        raise InputError("a token needs a name of 1 to 128 characters")
    if not scopes:
        raise InputError("a token needs at least one scope (e.g. sign:registry/repo/*)")
    parsed = [Scope.parse(s) for s in scopes]
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(
        ApiToken(
            name=name,
            token_hash=_hash(token),
            scopes=[str(s) for s in parsed],
            expires_at=expires_at,
        )
    )
    try:
        session.flush()
    except IntegrityError as e:
        raise ConflictError(f"a token named {name!r} already exists") from e
    record_change(
        session,
        kind=AuditKind.token_create,
        actor=actor,
        object=f"token/{name}",
        details={
            "scopes": [str(s) for s in parsed],
            "expires_at": expires_at.isoformat() if expires_at else None,
        },
    )
    return IssuedToken(
        name=name, token=token, scopes=tuple(str(s) for s in parsed), expires_at=expires_at
    )


def authenticate(session: Session, presented: str | None) -> Principal:
    """The principal behind a presented bearer token; AuthError when missing or not valid."""
    if not presented:
        raise AuthError("a bearer token is required (Authorization: Bearer sgt_...)")
    if not presented.startswith(TOKEN_PREFIX) or len(presented) > 128:
        raise AuthError("the bearer token is not valid", code="auth.invalid_token")
    digest = _hash(presented)
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == digest))
    # Constant-time comparison of the stored hash (the lookup itself is by hash, so an
    # attacker learns nothing from timing beyond found / not found).
    if row is None or not hmac.compare_digest(row.token_hash, digest):
        raise AuthError("the bearer token is not valid", code="auth.invalid_token")
    now = utcnow()
    if row.revoked_at is not None:
        raise AuthError("the bearer token was revoked", code="auth.revoked_token")
    if row.expires_at is not None and row.expires_at <= now:
        raise AuthError("the bearer token has expired", code="auth.expired_token")
    row.last_used_at = now
    return Principal(name=row.name, scopes=tuple(Scope.parse(s) for s in row.scopes))


def revoke_token(session: Session, *, name: str, actor: str = CLI_ACTOR) -> None:
    row = session.scalar(select(ApiToken).where(ApiToken.name == name))
    if row is None:
        raise NotFoundError(f"no token named {name!r}")
    row.revoked_at = utcnow()
    record_change(session, kind=AuditKind.token_revoke, actor=actor, object=f"token/{name}")


def list_tokens(session: Session) -> list[dict[str, object]]:
    """Every token's name, scopes and dates (never a hash or a secret)."""
    rows = session.scalars(select(ApiToken).order_by(ApiToken.name))
    return [
        {
            "name": r.name,
            "scopes": list(r.scopes),
            "created_at": r.created_at,
            "expires_at": r.expires_at,
            "revoked": r.revoked_at is not None,
            "last_used_at": r.last_used_at,
        }
        for r in rows
    ]
