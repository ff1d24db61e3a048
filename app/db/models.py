"""Sealgate's tables: keys, API tokens, authorities, signing records, policies, scans, decisions,
the audit trail (stored inputs, hash-chained records, their image index, checkpoints),
the registry-event inbox, push verdicts and their actions.

Rows stay inside the domain modules that own them; they never reach a policy input or
an HTTP response directly (those are built from frozen pydantic models).
"""

from __future__ import annotations

import datetime as dt
import json
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Enum,
    Float,
    ForeignKey,
    Index,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, utcnow

# A digest column: sha512:<128 hex> is the longest digest accepted (sha256's is 71).
DIGEST_CHARS = 135


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
    digest: Mapped[str] = mapped_column(String(DIGEST_CHARS))
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
    digest: Mapped[str] = mapped_column(String(DIGEST_CHARS))
    scanner: Mapped[str] = mapped_column(String(64))
    format: Mapped[str] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(String(32))
    scanned_at: Mapped[dt.datetime] = mapped_column()
    summary: Mapped[dict[str, Any]] = mapped_column()
    vulnerabilities: Mapped[list[Any]] = mapped_column()
    raw_report: Mapped[bytes] = mapped_column(LargeBinary)
    raw_media_type: Mapped[str] = mapped_column(String(128))
    referrer_digest: Mapped[str | None] = mapped_column(String(DIGEST_CHARS), default=None)
    uploaded_by: Mapped[str | None] = mapped_column(String(128), default=None)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Decision(Base):
    """A policy decision with the exact input it was made on, for audit and replay.

    The input is a ``StoredInput`` named by its hash, shared with the decision's audit
    record (``app.audit.inputs.load_input`` reads it back whole).
    """

    __tablename__ = "decisions"
    __table_args__ = (
        Index("ix_decisions_created_at", "created_at"),
        Index("ix_decisions_input_hash", "input_hash"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    entrypoint: Mapped[str] = mapped_column(String(32))
    image: Mapped[str] = mapped_column(String(512))
    digest: Mapped[str | None] = mapped_column(String(DIGEST_CHARS), default=None)
    allowed: Mapped[bool] = mapped_column()
    result: Mapped[dict[str, Any]] = mapped_column()
    input_hash: Mapped[str] = mapped_column(String(71), ForeignKey("stored_inputs.hash"))
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


class StoredInput(Base):
    """A decision input stored once per distinct content, named by the hash of its bytes;
    decisions and audit records refer to it by that name (``app.audit.inputs``)."""

    __tablename__ = "stored_inputs"
    __table_args__ = (
        Index("ix_stored_inputs_created_at", "created_at"),
        Index("ix_stored_inputs_findings_hash", "findings_hash"),
    )

    hash: Mapped[str] = mapped_column(String(71), primary_key=True)  # sha256:<64 hex>
    body: Mapped[bytes] = mapped_column(LargeBinary)
    size: Mapped[int] = mapped_column()
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # The stored findings this input names in their place (``app.audit.inputs``). Not a
    # foreign key: adding one would recreate this table on SQLite, which the keys naming
    # it refuse; the retention purge, the one thing that deletes inputs, keeps what an
    # input names.
    findings_hash: Mapped[str | None] = mapped_column(String(71), default=None)

    def value(self) -> Any:
        """The stored JSON, decoded."""
        return json.loads(self.body)


class AuditRecord(Base):
    """One append-only audit record; ``seq`` is the chain order, ``hash`` covers the
    record's content and ``prev_hash`` (see ``app.audit.chain``)."""

    __tablename__ = "audit_records"
    __table_args__ = (
        Index("ix_audit_records_time", "time"),
        Index("ix_audit_records_kind", "kind"),
        Index("ix_audit_records_actor", "actor"),
        Index("ix_audit_records_namespace", "namespace"),
        Index("ix_audit_records_input_hash", "input_hash"),
    )

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    time: Mapped[dt.datetime] = mapped_column()
    kind: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(256))
    actor: Mapped[str] = mapped_column(String(256))
    namespace: Mapped[str | None] = mapped_column(String(253), default=None)
    object: Mapped[str | None] = mapped_column(String(512), default=None)
    images: Mapped[list[Any]] = mapped_column(default=list)
    digests: Mapped[list[Any]] = mapped_column(default=list)
    decision: Mapped[str | None] = mapped_column(String(16), default=None)
    reasons: Mapped[list[Any]] = mapped_column(default=list)
    policy_version: Mapped[int | None] = mapped_column(default=None)
    policy_revision: Mapped[str | None] = mapped_column(String(128), default=None)
    latency_ms: Mapped[float | None] = mapped_column(Float, default=None)
    input_hash: Mapped[str | None] = mapped_column(
        String(71), ForeignKey("stored_inputs.hash"), default=None
    )
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    prev_hash: Mapped[str] = mapped_column(String(71))
    hash: Mapped[str] = mapped_column(String(71), unique=True)


class AuditSubject(Base):
    """An index of the image names and digests an audit record names, for filtering.

    Derived from the record's own (hashed) ``images`` and ``digests``: a query finds
    records through it, ``audit verify`` never needs it.
    """

    __tablename__ = "audit_subjects"
    __table_args__ = (Index("ix_audit_subjects_field_value", "field", "value", "seq"),)

    seq: Mapped[int] = mapped_column(BigInteger, ForeignKey("audit_records.seq"), primary_key=True)
    field: Mapped[str] = mapped_column(String(8), primary_key=True)  # "image" | "digest"
    value: Mapped[str] = mapped_column(String(512), primary_key=True)


class AuditCheckpoint(Base):
    """A signed statement that the chain passed through (``seq``, ``hash``).

    ``purge`` checkpoints name the last purged record, so the remaining chain verifies
    from them; ``head`` checkpoints pin the head at a moment, so a later truncation or
    rewrite of what came before is found.
    """

    __tablename__ = "audit_checkpoints"
    __table_args__ = (Index("ix_audit_checkpoints_kind_seq", "kind", "seq"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(71))
    cutoff: Mapped[dt.datetime | None] = mapped_column(default=None)
    created_at: Mapped[dt.datetime] = mapped_column()
    signature: Mapped[str] = mapped_column(String(128))


class InboxStatus(StrEnum):
    pending = "pending"
    done = "done"
    ignored = "ignored"
    dead = "dead"


class InboxEvent(Base):
    """One registry notification, stored before the receiver answers; the worker's queue.

    ``(source, event_id)`` is unique: a registry's retry of an event already stored is
    acknowledged and dropped. A worker claims a row by writing ``claim_token`` and a lease
    (``claimed_until``); a lease that runs out lets another worker take the row.
    """

    __tablename__ = "inbox_events"
    __table_args__ = (
        UniqueConstraint("source", "event_id"),
        Index("ix_inbox_events_status_next_attempt_at", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(32))
    event_id: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(32))
    image: Mapped[str] = mapped_column(String(1024))
    event: Mapped[dict[str, Any]] = mapped_column()
    status: Mapped[InboxStatus] = mapped_column(
        _enum_by_value(InboxStatus, "inbox_status"), default=InboxStatus.pending
    )
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    claim_token: Mapped[str | None] = mapped_column(String(36), default=None)
    claimed_until: Mapped[dt.datetime | None] = mapped_column(default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    outcome: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    processed_at: Mapped[dt.datetime | None] = mapped_column(default=None)


class ImageVerdict(Base):
    """The push gate's decision on one digest in one repository, from one inbox event.

    One row per deciding event (unique ``inbox_event_id``; ``source`` and ``event_id`` name
    it): the newest row of a ``(name, digest)`` is the verdict in force. ``deleted_at`` is
    set when the registry reports the manifest deleted.
    """

    __tablename__ = "image_verdicts"
    __table_args__ = (Index("ix_image_verdicts_name_digest", "name", "digest"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    # Set to NULL when the inbox row is purged; the verdict stays.
    inbox_event_id: Mapped[int | None] = mapped_column(
        ForeignKey("inbox_events.id", ondelete="SET NULL"), unique=True
    )
    source: Mapped[str] = mapped_column(String(32))
    event_id: Mapped[str] = mapped_column(String(255))
    name: Mapped[str] = mapped_column(String(512))
    digest: Mapped[str] = mapped_column(String(DIGEST_CHARS))
    tag: Mapped[str | None] = mapped_column(String(128), default=None)
    allowed: Mapped[bool] = mapped_column()
    reasons: Mapped[list[Any]] = mapped_column(default=list)
    decision_id: Mapped[int | None] = mapped_column(default=None)
    policy_version: Mapped[int | None] = mapped_column(default=None)
    trigger: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str | None] = mapped_column(String(255), default=None)
    decided_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    deleted_at: Mapped[dt.datetime | None] = mapped_column(default=None)


class ActionStatus(StrEnum):
    pending = "pending"
    started = "started"
    done = "done"
    abandoned = "abandoned"


class VerdictAction(Base):
    """The intent and the result of one action (attestation, webhook) on one event's verdict.

    Unique ``(inbox_event_id, action)``: an action is recorded once per event, and its
    status says whether it may still run (see ``app.hooks.actions``).
    """

    __tablename__ = "verdict_actions"
    __table_args__ = (UniqueConstraint("inbox_event_id", "action"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    inbox_event_id: Mapped[int] = mapped_column(ForeignKey("inbox_events.id", ondelete="CASCADE"))
    action: Mapped[str] = mapped_column(String(32))
    idempotency_id: Mapped[str] = mapped_column(String(300))
    status: Mapped[ActionStatus] = mapped_column(
        _enum_by_value(ActionStatus, "action_status"), default=ActionStatus.pending
    )
    attempts: Mapped[int] = mapped_column(default=0)
    result: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    done_at: Mapped[dt.datetime | None] = mapped_column(default=None)
