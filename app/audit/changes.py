"""Recording a change (a key, an authority, a token, a policy version, a signing) in the
audit trail, inside the transaction that makes the change.

Domain functions call ``record_change`` as the last step before their caller commits, so
the change and its record commit together or not at all, and the chain lock is held only
for the rest of that transaction (take it last: see ``app.audit.chain``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from app.audit.chain import append_audit
from app.audit.entry import AuditEntry, AuditKind, audit_source


def change_entry(
    *,
    kind: AuditKind,
    actor: str,
    object: str | None = None,
    images: Sequence[str] = (),
    digests: Sequence[str] = (),
    policy_version: int | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEntry:
    """The audit entry of one change, its source taken from the current request (or ``cli``)."""
    return AuditEntry(
        kind=kind,
        source=audit_source(),
        actor=actor,
        object=object,
        images=tuple(images),
        digests=tuple(digests),
        policy_version=policy_version,
        details=details or {},
    )


def record_change(
    session: Session,
    *,
    kind: AuditKind,
    actor: str,
    object: str | None = None,
    images: Sequence[str] = (),
    digests: Sequence[str] = (),
    policy_version: int | None = None,
    details: dict[str, Any] | None = None,
) -> int:
    """Append one change to the chain in ``session``'s transaction; return its seq."""
    entry = change_entry(
        kind=kind,
        actor=actor,
        object=object,
        images=images,
        digests=digests,
        policy_version=policy_version,
        details=details,
    )
    return append_audit(session, [entry])[0]
