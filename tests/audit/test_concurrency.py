"""Two OS processes appending at once produce one valid chain (each backend)."""

from __future__ import annotations

import multiprocessing

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.audit.verification import verify_chain
from app.db.models import AuditRecord
from app.db.session import session_scope
from tests.audit.appender import append_records

PER_PROCESS = 200


def test_two_processes_append_one_chain(
    database_url: str, audit_sessions: sessionmaker[Session]
) -> None:
    context = multiprocessing.get_context("spawn")
    together = context.Barrier(2)
    workers = [
        context.Process(target=append_records, args=(database_url, label, PER_PROCESS, together))
        for label in ("left", "right")
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    assert [w.exitcode for w in workers] == [0, 0]
    with session_scope(audit_sessions) as session:
        sources = list(session.scalars(select(AuditRecord.source).order_by(AuditRecord.seq)))
        seqs = list(session.scalars(select(AuditRecord.seq).order_by(AuditRecord.seq)))
        report = verify_chain(session, key=None)
    assert seqs == list(range(1, 2 * PER_PROCESS + 1))
    assert report.ok and report.checked == 2 * PER_PROCESS
    for label in ("left", "right"):
        mine = [s for s in sources if s.startswith(label)]
        assert mine == [f"{label}-{n}" for n in range(PER_PROCESS)]
