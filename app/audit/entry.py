"""What a caller gives to be audited: one frozen ``AuditEntry`` per event.

The caller says what happened (``kind``), where the request came from (``source``: a request
id, an AdmissionReview uid, a registry event id, or ``cli``), who asked (``actor``: a token
name, a Kubernetes user, a registry actor, or ``cli``), and what it was about. The chain
position, hashes and (unless given) the time are added when the entry is appended.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.audit.canonical import HASH_PATTERN, canonical_json
from app.limits import MAX_AUDIT_DETAILS_BYTES
from app.observability import request_id_var

# The actor and source of a change made from the command line (in process, no token).
CLI_ACTOR = "cli"


class AuditKind(StrEnum):
    admission_decision = "admission.decision"
    push_verdict = "push.verdict"
    sign_decision = "sign.decision"
    sign = "sign"
    policy_publish = "policy.publish"
    policy_activate = "policy.activate"
    policy_rollback = "policy.rollback"
    key_create = "key.create"
    key_import = "key.import"
    key_disable = "key.disable"
    key_scopes = "key.scopes"
    authority_add = "authority.add"
    authority_remove = "authority.remove"
    authority_change = "authority.change"
    token_create = "token.create"
    token_revoke = "token.revoke"
    audit_purge = "audit.purge"


class AuditEntry(BaseModel):
    """One event to append to the audit trail."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: AuditKind
    source: str = Field(min_length=1, max_length=256)
    actor: str = Field(min_length=1, max_length=256)
    time: dt.datetime | None = None
    namespace: str | None = Field(default=None, max_length=253)
    object: str | None = Field(default=None, max_length=512)
    images: tuple[str, ...] = Field(default=(), max_length=256)
    digests: tuple[str, ...] = Field(default=(), max_length=256)
    decision: str | None = Field(default=None, max_length=16)
    reasons: tuple[str, ...] = Field(default=(), max_length=256)
    policy_version: int | None = None
    policy_revision: str | None = Field(default=None, max_length=128)
    latency_ms: float | None = Field(default=None, ge=0)
    input_hash: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)

    @field_validator("time")
    @classmethod
    def _aware(cls, value: dt.datetime | None) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("an audit time must carry its time zone")
        return value

    @field_validator("images", "digests", "reasons")
    @classmethod
    def _short_items(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if any(not item or len(item) > 512 for item in value):
            raise ValueError("each item must be 1 to 512 characters")
        return value

    @field_validator("input_hash")
    @classmethod
    def _input_name(cls, value: str | None) -> str | None:
        if value is not None and not HASH_PATTERN.match(value):
            raise ValueError("an input is named sha256:<64 lowercase hex>")
        return value

    @field_validator("details")
    @classmethod
    def _small_json(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            size = len(canonical_json(value))
        except TypeError as e:
            raise ValueError(f"details must be JSON data: {e}") from e
        if size > MAX_AUDIT_DETAILS_BYTES:
            raise ValueError(f"details are {size} bytes; at most {MAX_AUDIT_DETAILS_BYTES}")
        return value


def audit_source(default: str = CLI_ACTOR) -> str:
    """Where the current call came from: ``request:<id>`` inside an API request, else
    ``default``."""
    request_id = request_id_var.get()
    return f"request:{request_id}" if request_id else default
