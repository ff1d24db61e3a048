"""Bulk inserts (``app.db.bulk``): COPY on PostgreSQL reads back as an insert would."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import JSON, Column, Engine, Float, Integer, MetaData, String, Table, select

from app.db.base import UTCDateTime
from app.db.bulk import CopyLines, insert_rows
from app.db.session import make_engine, make_session_factory, session_scope
from app.errors import InputError

METADATA = MetaData()
NOTES = Table(
    "bulk_notes",
    METADATA,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("note", String(64)),
    Column("doc", JSON, nullable=True),
    Column("at", UTCDateTime()),
    Column("latency", Float, nullable=True),
)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    made = make_engine(database_url)
    METADATA.create_all(made)
    yield made
    made.dispose()


def row(i: int, **changes: Any) -> dict[str, Any]:
    values = {
        "id": i,
        "note": f"note {i} é",
        "doc": {"images": ["a:1", "b@sha256:" + "0" * 64], "n": i, "nested": {"x": [True]}},
        "at": dt.datetime(2026, 12, 2, 10, 0, i, 123456, tzinfo=dt.timezone(dt.timedelta(hours=2))),
        "latency": 1.25 * i,
    }
    return {**values, **changes}


def test_rows_read_back_as_written(engine: Engine) -> None:
    sessions = make_session_factory(engine)
    rows = [row(i) for i in range(1, 6)] + [row(6, doc=None, latency=None)]
    with session_scope(sessions) as session:
        insert_rows(session, NOTES, rows)

    with session_scope(sessions) as session:
        stored = [dict(r._mapping) for r in session.execute(select(NOTES).order_by(NOTES.c.id))]

    assert [r["id"] for r in stored] == [1, 2, 3, 4, 5, 6]
    for written, read in zip(rows, stored, strict=True):
        assert read["note"] == written["note"]
        assert read["doc"] == written["doc"]
        assert read["latency"] == written["latency"]
        assert read["at"] == written["at"] and read["at"].tzinfo == dt.UTC


def test_a_value_postgresql_refuses_is_an_input_error_and_nothing_is_stored(
    engine: Engine,
) -> None:
    """PostgreSQL text cannot hold NUL: the COPY fails as an insert would (a 400, not a
    500); SQLite stores it, and the row reads back."""
    sessions = make_session_factory(engine)
    rows = [row(1), row(2, note="nul \x00 inside")]
    if engine.dialect.name == "postgresql":
        with pytest.raises(InputError) as refused, session_scope(sessions) as session:
            insert_rows(session, NOTES, rows)
        assert refused.value.code == "input.unstorable"
        expected: list[str] = []
    else:
        with session_scope(sessions) as session:
            insert_rows(session, NOTES, rows)
        expected = [r["note"] for r in rows]

    with session_scope(sessions) as session:
        assert list(session.scalars(select(NOTES.c.note).order_by(NOTES.c.id))) == expected


HOSTILE = [
    "tab\there",
    "new\nline and\r\nCRLF",
    "back\\slash \\N \\t \\\\",
    '"quoted" {json} [1,2]',
    "ünïcødé ✓ 🐳",
    "",
]


def test_hostile_text_reads_back_exactly_as_an_insert_stores_it(engine: Engine) -> None:
    """COPY's own characters (tab, newline, CR, backslash, a literal ``\\N``) in text and
    inside JSON are escaped, so each row reads back as the same row inserted by
    ``insert()``; on SQLite both are the insert."""
    sessions = make_session_factory(engine)
    copied = [
        row(i + 1, note=text, doc={"k\tey": text, "list": [text, None, 2**40]}, latency=1e-7 * i)
        for i, text in enumerate(HOSTILE)
    ]
    inserted = [{**r, "id": r["id"] + 100} for r in copied]
    with session_scope(sessions) as session:
        insert_rows(session, NOTES, copied)
        session.execute(NOTES.insert(), inserted)

    with session_scope(sessions) as session:
        stored = {r.id: dict(r._mapping) for r in session.execute(select(NOTES))}

    for written in copied:
        by_copy, by_insert = stored[written["id"]], stored[written["id"] + 100]
        assert by_copy["note"] == written["note"] == by_insert["note"]
        assert by_copy["doc"] == written["doc"] == by_insert["doc"]
        assert by_copy["latency"] == written["latency"] == by_insert["latency"]
        assert by_copy["at"] == by_insert["at"]


def test_copy_lines_spell_null_and_escapes_as_copy_text_does(engine: Engine) -> None:
    lines = CopyLines(NOTES, ("id", "note", "doc", "latency"), dialect=engine.dialect)

    assert lines.line([1, "a\tb\\c\nd\re", None, None]) == "1\ta\\tb\\\\c\\nd\\re\t\\N\t\\N"
    assert lines.line([2, "\\N", {"s": "x\ny"}, float("inf")]) == (
        '2\t\\\\N\t{"s":"x\\\\ny"}\tInfinity'
    )
