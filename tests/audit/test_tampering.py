"""Tampering with audit rows straight in the database is found by ``verify_chain``, which
names the record (the ``sealgate audit verify`` CLI test checks the command says so too)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.audit.chain import record_hash
from app.audit.checkpoints import CheckpointKey
from app.audit.retention import checkpoint_head
from app.audit.verification import ChainReport, ProblemKind, verify_chain
from app.db.models import AuditRecord
from app.db.session import session_scope
from tests.audit.samples import append, decision, tamper


def _verify(sessions: sessionmaker[Session], key: CheckpointKey | None = None) -> ChainReport:
    with session_scope(sessions) as session:
        return verify_chain(session, key=key)


def _five(sessions: sessionmaker[Session]) -> None:
    append(sessions, [decision(n) for n in range(1, 6)])
    assert _verify(sessions).ok


def _row(sessions: sessionmaker[Session], seq: int) -> dict[str, object]:
    with session_scope(sessions) as session:
        return dict(
            session.execute(select(AuditRecord.__table__).where(AuditRecord.seq == seq))
            .mappings()
            .one()
        )


def _insert(sessions: sessionmaker[Session], values: dict[str, object]) -> None:
    with session_scope(sessions) as session:
        session.execute(AuditRecord.__table__.insert().values(values))


class TestTampering:
    def test_an_edited_field_names_the_record(self, audit_sessions: sessionmaker[Session]) -> None:
        _five(audit_sessions)
        tamper(audit_sessions, "UPDATE audit_records SET decision = 'allow' WHERE seq = 2")
        report = _verify(audit_sessions)
        assert report.problem is not None
        assert (report.problem.kind, report.problem.seq) == (ProblemKind.changed, 2)
        assert "record 2 was changed" in report.problem.message
        assert report.checked == 1

    def test_an_edited_time_names_the_record(self, audit_sessions: sessionmaker[Session]) -> None:
        _five(audit_sessions)
        row = _row(audit_sessions, 4)
        assert isinstance(row["time"], dt.datetime)
        with session_scope(audit_sessions) as session:
            session.execute(
                AuditRecord.__table__.update()
                .where(AuditRecord.seq == 4)
                .values(time=row["time"] - dt.timedelta(days=1))
            )
        report = _verify(audit_sessions)
        assert report.problem is not None and report.problem.seq == 4

    def test_a_deleted_row_is_named(self, audit_sessions: sessionmaker[Session]) -> None:
        _five(audit_sessions)
        tamper(
            audit_sessions,
            "DELETE FROM audit_subjects WHERE seq = 3",
            "DELETE FROM audit_records WHERE seq = 3",
        )
        report = _verify(audit_sessions)
        assert report.problem is not None
        assert (report.problem.kind, report.problem.seq) == (ProblemKind.removed, 3)
        assert "record 3 was removed" in report.problem.message

    def test_a_row_inserted_with_a_made_up_hash_is_named(
        self, audit_sessions: sessionmaker[Session]
    ) -> None:
        _five(audit_sessions)
        forged = _row(audit_sessions, 5) | {
            "seq": 6,
            "decision": "allow",
            "prev_hash": _row(audit_sessions, 5)["hash"],
            "hash": "sha256:" + "f" * 64,
        }
        _insert(audit_sessions, forged)
        report = _verify(audit_sessions)
        assert report.problem is not None and report.problem.seq == 6
        assert "inserted by hand" in report.problem.message

    def test_a_row_inserted_out_of_the_chain_is_named(
        self, audit_sessions: sessionmaker[Session]
    ) -> None:
        _five(audit_sessions)
        forged = _row(audit_sessions, 2) | {"seq": 6, "source": "uid-forged"}
        forged["hash"] = record_hash(forged)  # self-consistent, but linked to record 1
        _insert(audit_sessions, forged)
        report = _verify(audit_sessions)
        assert report.problem is not None
        assert (report.problem.kind, report.problem.seq) == (ProblemKind.inserted, 6)
        assert "record 6 does not follow record 5" in report.problem.message

    def test_a_row_slipped_into_the_middle_is_named(
        self, audit_sessions: sessionmaker[Session]
    ) -> None:
        """Renumber records 4 and 5 to make room, then insert a well-hashed record 4."""
        _five(audit_sessions)
        tamper(
            audit_sessions,
            "DELETE FROM audit_subjects",
            "UPDATE audit_records SET seq = seq + 1000 WHERE seq >= 4",
            "UPDATE audit_records SET seq = seq - 999 WHERE seq >= 1000",
        )
        forged = _row(audit_sessions, 3) | {"seq": 4, "source": "uid-forged"}
        forged["prev_hash"] = _row(audit_sessions, 3)["hash"]
        forged["hash"] = record_hash(forged)
        _insert(audit_sessions, forged)
        report = _verify(audit_sessions)
        assert report.problem is not None and report.problem.seq == 5
        assert "record 5 does not follow record 4" in report.problem.message

    def test_a_removed_tail_is_found_by_the_head_checkpoint(
        self, audit_sessions: sessionmaker[Session], checkpoint_key: CheckpointKey
    ) -> None:
        _five(audit_sessions)
        with session_scope(audit_sessions) as session:
            assert checkpoint_head(session, key=checkpoint_key, now=dt.datetime.now(dt.UTC)) == 5
        tamper(
            audit_sessions,
            "DELETE FROM audit_subjects WHERE seq >= 4",
            "DELETE FROM audit_records WHERE seq >= 4",
        )
        report = _verify(audit_sessions, checkpoint_key)
        assert report.problem is not None
        assert (report.problem.kind, report.problem.seq) == (ProblemKind.removed, 4)
        assert "records 4 to 5 were removed" in report.problem.message

    def test_a_rewrite_with_recomputed_hashes_is_found_by_the_head_checkpoint(
        self, audit_sessions: sessionmaker[Session], checkpoint_key: CheckpointKey
    ) -> None:
        _five(audit_sessions)
        with session_scope(audit_sessions) as session:
            checkpoint_head(session, key=checkpoint_key, now=dt.datetime.now(dt.UTC))
        # Rewrite record 5 and give it a correct hash: only the signed head can tell.
        row = _row(audit_sessions, 5) | {"decision": "deny"}
        with session_scope(audit_sessions) as session:
            session.execute(
                AuditRecord.__table__.update()
                .where(AuditRecord.seq == 5)
                .values(decision="deny", hash=record_hash(row))
            )
        report = _verify(audit_sessions, checkpoint_key)
        assert report.problem is not None and report.problem.seq == 5
        assert "differs from the signed head checkpoint" in report.problem.message
