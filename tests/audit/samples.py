"""Audit entries for tests, and direct database edits standing for a tamperer."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from app.audit.chain import append_audit
from app.audit.entry import AuditEntry, AuditKind
from app.db.session import session_scope

DIGEST = "sha256:" + "ab" * 32


def decision(n: int, *, time: dt.datetime | None = None, image: str = "r.test/app") -> AuditEntry:
    return AuditEntry(
        kind=AuditKind.admission_decision,
        source=f"uid-{n}",
        actor="system:serviceaccount:kube-system:replicaset-controller",
        time=time,
        namespace="prod",
        object=f"Pod/web-{n}",
        images=(f"{image}@{DIGEST}",),
        digests=(DIGEST,),
        decision="allow" if n % 2 else "deny",
        reasons=() if n % 2 else ("scan.critical",),
        policy_version=3,
        policy_revision="rev-3",
        latency_ms=1.25 + n,
        details={"n": n},
    )


def append(sessions: sessionmaker[Session], entries: list[AuditEntry]) -> list[int]:
    with session_scope(sessions) as session:
        return append_audit(session, entries)


def tamper(sessions: sessionmaker[Session], *statements: str) -> None:
    """Run SQL straight against the database, as someone with database access would."""
    with session_scope(sessions) as session:
        for statement in statements:
            session.execute(text(statement))
