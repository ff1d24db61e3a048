"""Retention: old records go behind a signed checkpoint; the rest still verifies; a
checkpoint changed without the key-encryption key is refused."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, sessionmaker

from app.audit.canonical import canonical_json, content_hash
from app.audit.chain import append_audit
from app.audit.checkpoints import CheckpointKey
from app.audit.entry import AuditKind
from app.audit.inputs import (
    FINDINGS_KEY,
    InputBody,
    load_input,
    store_input_value,
    store_inputs,
)
from app.audit.retention import purge_expired, run_audit_retention
from app.audit.verification import ChainReport, ProblemKind, verify_chain
from app.db.models import AuditCheckpoint, AuditRecord, Decision, ImageVerdict, StoredInput
from app.db.session import session_scope
from app.errors import AuditError
from tests.audit.samples import append, decision, tamper

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
OLD = NOW - dt.timedelta(days=200)
RECENT = NOW - dt.timedelta(days=10)


def _verify(sessions: sessionmaker[Session], key: CheckpointKey | None) -> ChainReport:
    with session_scope(sessions) as session:
        return verify_chain(session, key=key)


def _purge(sessions: sessionmaker[Session], key: CheckpointKey) -> int:
    with session_scope(sessions) as session:
        return purge_expired(session, key=key, retention_days=180, now=NOW).purged


class TestPurge:
    def test_the_remaining_chain_verifies_from_the_checkpoint(
        self, audit_sessions: sessionmaker[Session], checkpoint_key: CheckpointKey
    ) -> None:
        append(audit_sessions, [decision(n, time=OLD) for n in range(1, 4)])
        append(audit_sessions, [decision(n, time=RECENT) for n in range(4, 6)])
        assert _purge(audit_sessions, checkpoint_key) == 3
        with session_scope(audit_sessions) as session:
            seqs = list(session.scalars(select(AuditRecord.seq).order_by(AuditRecord.seq)))
            kinds = list(session.scalars(select(AuditRecord.kind).order_by(AuditRecord.seq)))
            checkpoint = session.scalars(select(AuditCheckpoint)).one()
        assert seqs == [4, 5, 6]
        assert kinds[-1] == AuditKind.audit_purge.value
        assert (checkpoint.kind, checkpoint.seq) == ("purge", 3)
        report = _verify(audit_sessions, checkpoint_key)
        assert report.ok and report.checked == 3 and report.first_seq == 4
        # Appending goes on after the purge.
        assert append(audit_sessions, [decision(7)]) == [7]
        assert _verify(audit_sessions, checkpoint_key).ok

    def test_only_the_oldest_run_goes_even_when_times_are_out_of_order(
        self, audit_sessions: sessionmaker[Session], checkpoint_key: CheckpointKey
    ) -> None:
        append(audit_sessions, [decision(1, time=OLD), decision(2, time=RECENT)])
        append(audit_sessions, [decision(3, time=OLD)])  # a replica's clock ran behind
        assert _purge(audit_sessions, checkpoint_key) == 1
        assert _verify(audit_sessions, checkpoint_key).ok

    def test_purging_everything_keeps_the_chain_going(
        self, audit_sessions: sessionmaker[Session], checkpoint_key: CheckpointKey
    ) -> None:
        append(audit_sessions, [decision(n, time=OLD) for n in range(1, 4)])
        assert _purge(audit_sessions, checkpoint_key) == 3
        assert _purge(audit_sessions, checkpoint_key) == 0  # the purge record itself is new
        assert append(audit_sessions, [decision(9)]) == [5]
        report = _verify(audit_sessions, checkpoint_key)
        assert report.ok and report.first_seq == 4

    def test_inputs_go_only_when_old_and_unreferenced(
        self, audit_sessions: sessionmaker[Session], checkpoint_key: CheckpointKey
    ) -> None:
        with session_scope(audit_sessions) as session:
            kept_by_record = store_input_value(session, {"kept": "referenced"})
            old_unused = store_input_value(session, {"gone": True})
            new_unused = store_input_value(session, {"kept": "young"})
            append_audit(
                session,
                [decision(1, time=RECENT).model_copy(update={"input_hash": kept_by_record})],
            )
            session.flush()
            session.execute(
                StoredInput.__table__.update()
                .where(StoredInput.hash.in_([kept_by_record, old_unused]))
                .values(created_at=OLD)
            )
        with session_scope(audit_sessions) as session:
            result = purge_expired(session, key=checkpoint_key, retention_days=180, now=NOW)
        assert result.inputs_purged == 1
        with session_scope(audit_sessions) as session:
            left = set(session.scalars(select(StoredInput.hash)))
        assert left == {kept_by_record, new_unused}

    def test_inputs_a_decision_or_another_input_names_stay(
        self, audit_sessions: sessionmaker[Session], checkpoint_key: CheckpointKey
    ) -> None:
        findings = canonical_json([{"id": "CVE-1"}])
        with session_scope(audit_sessions) as session:
            # A decision whose audit record was purged long ago, and an input (with no
            # record of its own any more) naming its findings apart.
            by_decision = store_input_value(session, {"kept": "by a decision"})
            session.add(
                Decision(
                    entrypoint="admission",
                    image="r.test/app",
                    allowed=True,
                    result={},
                    input_hash=by_decision,
                )
            )
            document = {"scan": {"vulnerabilities": {FINDINGS_KEY: content_hash(findings)}}}
            (naming,) = store_inputs(
                session,
                [
                    InputBody(
                        canonical_json(document),
                        findings=findings,
                        findings_name=content_hash(findings),
                    )
                ],
            )
            session.add(
                Decision(
                    entrypoint="push",
                    image="r.test/app",
                    allowed=False,
                    result={},
                    input_hash=naming,
                )
            )
            session.flush()
            session.execute(StoredInput.__table__.update().values(created_at=OLD))
        with session_scope(audit_sessions) as session:
            result = purge_expired(session, key=checkpoint_key, retention_days=180, now=NOW)
            assert result.inputs_purged == 0
            assert load_input(session, naming) == {"scan": {"vulnerabilities": [{"id": "CVE-1"}]}}
        with session_scope(audit_sessions) as session:
            session.execute(delete(Decision))
        with session_scope(audit_sessions) as session:
            # Nothing names them now: the inputs go, then the findings they named.
            purged = [
                purge_expired(session, key=checkpoint_key, retention_days=180, now=NOW)
                for _ in range(2)
            ]
        assert [p.inputs_purged for p in purged] == [2, 1]

    def test_decisions_go_a_day_after_their_records_unless_a_verdict_names_them(
        self, audit_sessions: sessionmaker[Session], checkpoint_key: CheckpointKey
    ) -> None:
        ages = {"old": 200.0, "within_the_margin": 180.5, "recent": 10.0, "in_a_verdict": 200.0}
        with session_scope(audit_sessions) as session:
            ids = {}
            for label, days in ages.items():
                row = Decision(
                    entrypoint="admission",
                    image=f"r.test/{label}",
                    allowed=True,
                    result={},
                    input_hash=store_input_value(session, {"decided": label}),
                    created_at=NOW - dt.timedelta(days=days),
                )
                session.add(row)
                session.flush()
                ids[label] = row.id
            session.add(
                ImageVerdict(
                    source="distribution",
                    event_id="e-1",
                    name="r.test/in_a_verdict",
                    digest="sha256:" + "a" * 64,
                    allowed=True,
                    decision_id=ids["in_a_verdict"],
                    trigger="push",
                )
            )
            session.execute(StoredInput.__table__.update().values(created_at=OLD))

        with session_scope(audit_sessions) as session:
            result = purge_expired(session, key=checkpoint_key, retention_days=180, now=NOW)

        assert (result.decisions_purged, result.inputs_purged) == (1, 1)
        with session_scope(audit_sessions) as session:
            left = set(session.scalars(select(Decision.image)))
            inputs = [load_input(session, d.input_hash) for d in session.scalars(select(Decision))]
        assert left == {"r.test/within_the_margin", "r.test/recent", "r.test/in_a_verdict"}
        assert all(i is not None for i in inputs)


class TestCheckpoints:
    @pytest.fixture
    def purged(
        self, audit_sessions: sessionmaker[Session], checkpoint_key: CheckpointKey
    ) -> sessionmaker[Session]:
        append(audit_sessions, [decision(n, time=OLD) for n in range(1, 4)])
        append(audit_sessions, [decision(n, time=RECENT) for n in range(4, 6)])
        _purge(audit_sessions, checkpoint_key)
        return audit_sessions

    def test_a_checkpoint_moved_without_the_key_is_refused(
        self, purged: sessionmaker[Session], checkpoint_key: CheckpointKey
    ) -> None:
        # Hide records 4 and 5: point the checkpoint at record 5 (hash and seq).
        with session_scope(purged) as session:
            five = session.scalar(select(AuditRecord.hash).where(AuditRecord.seq == 5))
        tamper(
            purged,
            "DELETE FROM audit_subjects WHERE seq <= 5",
            "DELETE FROM audit_records WHERE seq <= 5",
            f"UPDATE audit_checkpoints SET seq = 5, hash = '{five}'",
        )
        report = _verify(purged, checkpoint_key)
        assert report.problem is not None and report.problem.kind is ProblemKind.checkpoint
        assert "is not signed with this installation's key" in report.problem.message

    def test_a_checkpoint_signed_with_another_key_is_refused(
        self, purged: sessionmaker[Session]
    ) -> None:
        other = CheckpointKey.from_kek(b"another installation's kek 32 b!")
        report = _verify(purged, other)
        assert report.problem is not None and report.problem.kind is ProblemKind.checkpoint

    def test_a_deleted_purge_checkpoint_shows_the_purged_records_as_removed(
        self, purged: sessionmaker[Session], checkpoint_key: CheckpointKey
    ) -> None:
        tamper(purged, "DELETE FROM audit_checkpoints")
        report = _verify(purged, checkpoint_key)
        assert report.problem is not None
        assert (report.problem.kind, report.problem.seq) == (ProblemKind.removed, 1)

    def test_an_old_record_put_back_behind_the_checkpoint_is_found(
        self, purged: sessionmaker[Session], checkpoint_key: CheckpointKey
    ) -> None:
        with session_scope(purged) as session:
            row = dict(
                session.execute(select(AuditRecord.__table__).where(AuditRecord.seq == 4))
                .mappings()
                .one()
            )
            session.execute(
                AuditRecord.__table__.insert().values(
                    row | {"seq": 2, "hash": "sha256:" + "e" * 64}
                )
            )
        report = _verify(purged, checkpoint_key)
        assert report.problem is not None
        assert (report.problem.kind, report.problem.seq) == (ProblemKind.inserted, 2)

    def test_without_the_kek_checkpoints_cannot_be_trusted(
        self, purged: sessionmaker[Session]
    ) -> None:
        report = _verify(purged, None)
        assert report.problem is not None and "without the key-encryption key" in (
            report.problem.message
        )


class TestRetentionRun:
    def test_purges_and_signs_the_head(
        self, audit_sessions: sessionmaker[Session], kek: bytes, checkpoint_key: CheckpointKey
    ) -> None:
        append(audit_sessions, [decision(1, time=OLD), decision(2, time=RECENT)])
        with session_scope(audit_sessions) as session:
            result = run_audit_retention(session, kek=kek, retention_days=180, now=NOW)
        assert (result.purged, result.through_seq, result.head_seq) == (1, 1, 3)
        with session_scope(audit_sessions) as session:
            kinds = sorted(session.scalars(select(AuditCheckpoint.kind)))
        assert kinds == ["head", "purge"]
        assert _verify(audit_sessions, checkpoint_key).ok

    def test_head_checkpoints_of_purged_records_go_with_them(
        self, audit_sessions: sessionmaker[Session], kek: bytes, checkpoint_key: CheckpointKey
    ) -> None:
        append(audit_sessions, [decision(1, time=OLD)])
        with session_scope(audit_sessions) as session:
            run_audit_retention(session, kek=kek, retention_days=180, now=OLD)  # signs head 1
            run_audit_retention(session, kek=kek, retention_days=180, now=NOW)  # purges 1
        with session_scope(audit_sessions) as session:
            left = list(session.execute(select(AuditCheckpoint.kind, AuditCheckpoint.seq)))
        assert sorted(left) == [("head", 2), ("purge", 1)]
        assert _verify(audit_sessions, checkpoint_key).ok

    def test_without_the_kek_and_nothing_past_retention_a_run_signs_nothing(
        self, audit_sessions: sessionmaker[Session]
    ) -> None:
        # The embedded defaults have no key-encryption key: retention must not fail
        # every interval while it has nothing to purge, and must not sign anything.
        append(audit_sessions, [decision(1, time=RECENT)])
        with session_scope(audit_sessions) as session:
            result = run_audit_retention(session, kek=None, retention_days=180, now=NOW)
        assert (result.purged, result.head_seq, result.head_signed) == (0, 1, False)
        with session_scope(audit_sessions) as session:
            assert session.scalar(select(func.count()).select_from(AuditCheckpoint)) == 0
            assert session.scalar(select(func.count()).select_from(AuditRecord)) == 1

    def test_refuses_to_purge_without_the_kek(self, audit_sessions: sessionmaker[Session]) -> None:
        append(audit_sessions, [decision(1, time=OLD)])
        with pytest.raises(AuditError) as raised, session_scope(audit_sessions) as session:
            run_audit_retention(session, kek=None, retention_days=180, now=NOW)
        assert raised.value.code == "config.no_kek"
        assert "1 audit record(s) are past the 180-day retention period" in raised.value.message
        with session_scope(audit_sessions) as session:
            assert session.scalar(select(func.count()).select_from(AuditRecord)) == 1
            assert session.scalar(select(func.count()).select_from(AuditCheckpoint)) == 0
