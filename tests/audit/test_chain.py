"""Appending to the chain and verifying it, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

import pytest
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from app.audit.canonical import canonical_json, content_hash
from app.audit.chain import (
    GENESIS,
    _hashed_content,
    _placed_hash,
    append_audit,
    prepare_entry,
    record_hash,
    time_text,
)
from app.audit.entry import AuditEntry, AuditKind
from app.audit.inputs import store_input_value
from app.audit.verification import verify_chain
from app.db.models import AuditRecord, AuditSubject, StoredInput
from app.db.session import session_scope
from app.errors import StoreError
from tests.audit.samples import DIGEST, append, decision

PLACED = {
    "seq": 9,
    "time": dt.datetime(2026, 12, 4, 1, 2, 3, 456789, tzinfo=dt.UTC),
    "prev_hash": GENESIS,
}


class TestAppend:
    def test_records_are_numbered_and_linked_in_order(
        self, audit_sessions: sessionmaker[Session]
    ) -> None:
        assert append(audit_sessions, [decision(1), decision(2), decision(3)]) == [1, 2, 3]
        assert append(audit_sessions, [decision(4)]) == [4]
        with session_scope(audit_sessions) as session:
            rows = list(session.scalars(select(AuditRecord).order_by(AuditRecord.seq)))
            report = verify_chain(session, key=None)
        assert rows[0].prev_hash == GENESIS
        assert [r.prev_hash for r in rows[1:]] == [r.hash for r in rows[:-1]]
        assert report.ok and report.checked == 4
        assert (report.first_seq, report.last_seq, report.head_hash) == (1, 4, rows[-1].hash)

    def test_a_hash_covers_every_field(self, audit_sessions: sessionmaker[Session]) -> None:
        append(audit_sessions, [decision(1)])
        with session_scope(audit_sessions) as session:
            row = session.execute(select(AuditRecord.__table__)).mappings().one()
        original = record_hash(row)
        assert original == row["hash"]
        changes = {
            "seq": 2,
            "time": row["time"] + dt.timedelta(microseconds=1),
            "decision": "deny",
            "latency_ms": row["latency_ms"] + 0.001,
            "images": [],
            "details": {"n": 2},
            "prev_hash": "sha256:" + "1" * 64,
            "input_hash": "sha256:" + "2" * 64,
        }
        for field, value in changes.items():
            assert record_hash({**row, field: value}) != original, field

    def test_a_rolled_back_append_leaves_no_hole(
        self, audit_sessions: sessionmaker[Session]
    ) -> None:
        append(audit_sessions, [decision(1)])
        with pytest.raises(RuntimeError), session_scope(audit_sessions) as session:
            append_audit(session, [decision(2), decision(3)])
            raise RuntimeError("the change failed after its record was written")
        assert append(audit_sessions, [decision(4)]) == [2]
        with session_scope(audit_sessions) as session:
            assert verify_chain(session, key=None).ok

    def test_images_and_digests_are_indexed_by_name(
        self, audit_sessions: sessionmaker[Session]
    ) -> None:
        append(audit_sessions, [decision(1, image="r.test/team/app:v1")])
        with session_scope(audit_sessions) as session:
            terms = set(session.execute(select(AuditSubject.field, AuditSubject.value)).all())
        assert terms == {("image", "r.test/team/app"), ("digest", DIGEST)}

    def test_a_record_names_its_stored_input(self, audit_sessions: sessionmaker[Session]) -> None:
        with session_scope(audit_sessions) as session:
            name = store_input_value(session, {"input": 1})
            append_audit(session, [decision(1).model_copy(update={"input_hash": name})])
        with pytest.raises(StoreError), session_scope(audit_sessions) as session:
            unknown = "sha256:" + "9" * 64
            append_audit(session, [decision(2).model_copy(update={"input_hash": unknown})])
            session.flush()

    def test_inputs_handed_to_the_append_are_stored_once(
        self, audit_sessions: sessionmaker[Session]
    ) -> None:
        body = canonical_json({"input": "shared"})
        named = decision(1).model_copy(update={"input_hash": content_hash(body)})
        with session_scope(audit_sessions) as session:
            append_audit(session, [named, named], inputs=[body, body])
        with session_scope(audit_sessions) as session:
            append_audit(session, [named], inputs=[body])
            assert session.scalar(select(func.count()).select_from(StoredInput)) == 1
            assert verify_chain(session, key=None).checked == 3

    def test_hostile_text_hashes_and_reads_back_as_written(
        self, audit_sessions: sessionmaker[Session]
    ) -> None:
        """What a Pod author controls (names, images, details) may hold COPY's and JSON's
        own characters: each record reads back as given and its stored hash is the one
        ``record_hash`` recomputes from the row, so the chain verifies."""
        hostile = 'tab\there new\nline \\N back\\slash "quote" ünï 🐳\r'
        entry = decision(1).model_copy(
            update={
                "source": hostile,
                "object": f"Pod/{hostile}",
                "images": (f"r.test/{hostile}",),
                "details": {"note": hostile, hostile: [1, None, True]},
                "latency_ms": 0.0004,
            }
        )
        append(audit_sessions, [entry, decision(2)])
        with session_scope(audit_sessions) as session:
            rows = list(
                session.execute(select(AuditRecord.__table__).order_by(AuditRecord.seq)).mappings()
            )
            terms = set(session.scalars(select(AuditSubject.value).where(AuditSubject.seq == 1)))
            report = verify_chain(session, key=None)
        assert (rows[0]["source"], rows[0]["object"]) == (hostile, f"Pod/{hostile}")
        assert rows[0]["details"] == entry.details and rows[0]["images"] == list(entry.images)
        assert [record_hash(row) for row in rows] == [row["hash"] for row in rows]
        assert f"r.test/{hostile}" in terms
        assert report.ok and report.checked == 2

    def test_a_prepared_hash_is_the_record_hash_of_its_row(self) -> None:
        """A prepared entry's hash puts the placed members (prev_hash, seq, time) where
        canonical JSON's key order puts them, even when the text around them spells the
        markers it is cut at."""
        assert sorted(_hashed_content({**prepare_entry(decision(1)).values, **PLACED}))[-6:] == [
            "policy_version",
            "prev_hash",
            "reasons",
            "seq",
            "source",
            "time",
        ]
        tricky = decision(2).model_copy(
            update={
                "source": 'a,"reasons":["x"],"seq":1,"source":"b',
                "reasons": ('r,"source":"s', '"],"seq":2,'),
                "policy_revision": ',"prev_hash":"sha256:',
                "details": {"reasons": [',"source":"'], "source": "x"},
            }
        )
        for entry in (decision(1), tricky):
            prepared = prepare_entry(entry)
            row = {**prepared.values, **PLACED}
            assert _placed_hash(
                prepared, seq=9, time=time_text(PLACED["time"]), prev_hash=GENESIS
            ) == record_hash(row)

    def test_an_empty_batch_writes_nothing(self, audit_sessions: sessionmaker[Session]) -> None:
        with session_scope(audit_sessions) as session:
            assert append_audit(session, []) == []
            assert verify_chain(session, key=None).checked == 0


class TestEntry:
    @pytest.mark.parametrize(
        "change",
        [
            {"time": dt.datetime(2026, 1, 1)},  # naive
            {"input_hash": "md5:abc"},
            {"details": {"blob": "x" * 20_000}},
            {"images": ("",)},
            {"kind": "made.up"},
            {"source": ""},
        ],
    )
    def test_bad_entries_are_refused(self, change: dict[str, object]) -> None:
        fields = decision(1).model_dump() | change
        with pytest.raises(ValidationError):
            AuditEntry(**fields)

    def test_kinds_are_the_documented_ones(self) -> None:
        assert AuditKind("policy.rollback") is AuditKind.policy_rollback
