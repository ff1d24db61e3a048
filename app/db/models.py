"""Sealgate's tables: keys, API tokens, authorities, signing records, policies, scans, decisions.

Rows stay inside the domain modules that own them; they never reach a policy input or
an HTTP response directly (those are built from frozen pydantic models).
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any

from sqlalchemy import Enum, ForeignKey, Index, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, utcnow


def _enum_by_value(enum: type[StrEnum], name: str) -> Enum:
    """Store an enum as its value in a plain VARCHAR, the same on every backend."""
    return Enum(
        enum,
        name=name,
        native_enum=False,
        create_constraint=False,
        length=16,
        values_callable=lambda members: [m.value for m in members],
    )


class KeyStatus(StrEnum):
    active = "active"
    disabled = "disabled"
    retired = "retired"


class SigningKey(Base):
    """A private key Sealgate keeps, encrypted at rest with the key-encryption key."""

    __tablename__ = "signing_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    algorithm: Mapped[str] = mapped_column(String(32))
    key_id: Mapped[str] = mapped_column(String(64), index=True)
    public_key_pem: Mapped[str] = mapped_column(Text)
    encrypted_private_key: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[KeyStatus] = mapped_column(
        _enum_by_value(KeyStatus, "key_status"), default=KeyStatus.active
    )
    # Image globs the key may sign. NULL only on rows made before keys had scopes (revision
    # 0001): they still sign everywhere, and the service warns about them at start-up.
    scopes: Mapped[list[Any] | None] = mapped_column(default=None)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    disabled_at: Mapped[dt.datetime | None] = mapped_column(default=None)


class ApiToken(Base):
    """A bearer token for the API, stored only as its SHA-256 hash."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(default=None)


class AuthorityKind(StrEnum):
    key = "key"
    keyless = "keyless"


class Authority(Base):
    """A named source of trust: public keys, or a keyless identity under a trusted root."""

    __tablename__ = "authorities"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    kind: Mapped[AuthorityKind] = mapped_column(_enum_by_value(AuthorityKind, "authority_kind"))
    public_keys: Mapped[list[Any]] = mapped_column(default=list)
    identity: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    trusted_root: Mapped[str | None] = mapped_column(Text, default=None)
    scopes: Mapped[list[Any]] = mapped_column(default=list)
    # What the signed identity must be (``app.verify.identity``). NULL only on rows made
    # before the rule existed (revision 0001): they accept any, with a start-up warning.
    signed_identity: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class SignatureRecord(Base):
    """One signing Sealgate performed: who, what, with which key or identity, where stored."""

    __tablename__ = "signature_records"
    __table_args__ = (Index("ix_signature_records_image_digest", "image", "digest"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    image: Mapped[str] = mapped_column(String(512))
    digest: Mapped[str] = mapped_column(String(100))
    signed_by: Mapped[str] = mapped_column(String(128))
    key_name: Mapped[str | None] = mapped_column(String(128), default=None)
    identity: Mapped[str | None] = mapped_column(Text, default=None)
    issuer: Mapped[str | None] = mapped_column(Text, default=None)
    formats: Mapped[list[Any]] = mapped_column(default=list)
    signature_digests: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class PolicyVersion(Base):
    """One accepted policy bundle: its files, content hash, author and message."""

    __tablename__ = "policy_versions"

    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[int] = mapped_column(unique=True)
    content_hash: Mapped[str] = mapped_column(String(64), index=True)
    files: Mapped[dict[str, Any]] = mapped_column()
    author: Mapped[str] = mapped_column(String(128))
    message: Mapped[str] = mapped_column(Text, default="")
    active: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    activated_at: Mapped[dt.datetime | None] = mapped_column(default=None)


class ScanRecord(Base):
    """A normalised vulnerability report for one image digest, with the raw report kept."""

    __tablename__ = "scans"
    __table_args__ = (Index("ix_scans_name_digest_scanned_at", "name", "digest", "scanned_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    # The repository (registry/repository) the upload was authorised for: a scan vouches
    # for the digest in that repository only, never for the same bytes elsewhere.
    name: Mapped[str] = mapped_column(String(512))
    image: Mapped[str] = mapped_column(String(512))
    digest: Mapped[str] = mapped_column(String(100))
    scanner: Mapped[str] = mapped_column(String(64))
    format: Mapped[str] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(String(32))
    scanned_at: Mapped[dt.datetime] = mapped_column()
    summary: Mapped[dict[str, Any]] = mapped_column()
    vulnerabilities: Mapped[list[Any]] = mapped_column()
    raw_report: Mapped[bytes] = mapped_column(LargeBinary)
    raw_media_type: Mapped[str] = mapped_column(String(128))
    referrer_digest: Mapped[str | None] = mapped_column(String(100), default=None)
    uploaded_by: Mapped[str | None] = mapped_column(String(128), default=None)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Decision(Base):
    """A policy decision with the exact input it was made on, for audit and replay."""

    __tablename__ = "decisions"
    __table_args__ = (Index("ix_decisions_created_at", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    entrypoint: Mapped[str] = mapped_column(String(32))
    image: Mapped[str] = mapped_column(String(512))
    digest: Mapped[str | None] = mapped_column(String(100), default=None)
    allowed: Mapped[bool] = mapped_column()
    result: Mapped[dict[str, Any]] = mapped_column()
    input: Mapped[dict[str, Any]] = mapped_column()
    policy_version: Mapped[int | None] = mapped_column(
        ForeignKey("policy_versions.version"), default=None
    )
    # The content hash of the bundle that decided (the engine's, read with its answer).
    policy_revision: Mapped[str | None] = mapped_column(String(64), default=None)
    # The stable code of what stopped the decision (registry.timeout...), if anything.
    failure: Mapped[str | None] = mapped_column(String(64), default=None)
    actor: Mapped[str | None] = mapped_column(String(256), default=None)
    actor_kind: Mapped[str | None] = mapped_column(String(16), default=None)
    # An admission request uid or a registry event id.
    source: Mapped[str | None] = mapped_column(String(256), default=None)
    request_id: Mapped[str | None] = mapped_column(String(128), default=None)
    dry_run: Mapped[bool] = mapped_column(default=False)
    latency_ms: Mapped[float | None] = mapped_column(default=None)
    # Repositories other than the image's own that served the evidence (mirrors, a
    # signature repository), as in the input's image.served_by.
    served_by: Mapped[list[Any] | None] = mapped_column(default=None)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
