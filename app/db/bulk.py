"""Inserting many rows at once: ``COPY`` on PostgreSQL, executemany elsewhere.

The decision recorder and the audit trail write hundreds of rows per transaction. On
PostgreSQL, psycopg's pipelined executemany still costs about a round trip's worth of client
work per row and statement; ``COPY … FROM STDIN`` streams the rows in one command for a
fraction of that. The rows are given as Core values (every column the table needs, as
``insert`` would take them); JSON columns are serialised here (orjson: the same values as
SQLAlchemy's ``json.dumps`` would store, spelt without spaces or ASCII escapes) and
timestamps pass through their column type, as an ``insert`` would bind them. A Python
``None`` in a JSON column is SQL NULL. The COPY text lines are made here (``CopyLines``),
so that a caller can make them ahead of its transaction, in another thread.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import math
import re
from collections.abc import Callable, Sequence
from typing import Any

import orjson
import psycopg
from psycopg import sql
from sqlalchemy import JSON, Dialect, String, Table, TypeDecorator, insert
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg
from sqlalchemy.exc import DataError, DBAPIError
from sqlalchemy.orm import Session
from sqlalchemy.types import TypeEngine


def insert_rows(session: Session, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert ``rows`` (each with the same keys) into ``table`` in the session's
    transaction."""
    if not rows:
        return
    if session.get_bind().dialect.name != "postgresql":
        session.execute(insert(table), list(rows))
        return
    columns = tuple(rows[0])
    lines = CopyLines(table, columns, dialect=session.get_bind().dialect)
    copy_lines(session, table, columns, [lines.line([row[c] for c in columns]) for row in rows])


class CopyLines:
    """The ``COPY … FROM STDIN`` text lines of rows of ``table``'s ``columns``, made ahead
    of the write (PostgreSQL).

    Each value passes through its column's bind processing (as an ``insert`` would bind
    it), JSON columns are serialised with orjson, and the text is escaped as COPY's text
    format asks: backslash, tab, newline and carriage return behind a backslash, NULL as
    ``\\N``. A line can be made in one thread and copied in another: the decision
    recorder makes its rows' lines where the record is submitted and its writer copies
    them in, so the writer holds the GIL for less (``app.enforce.records``).
    """

    def __init__(self, table: Table, columns: Sequence[str], *, dialect: Dialect) -> None:
        self.columns = tuple(columns)
        self._convert = [_converter(table.columns[name].type, dialect) for name in self.columns]

    def line(self, values: Sequence[Any]) -> str:
        """The line (without its newline) of one row's ``values``, in ``columns`` order."""
        return "\t".join([c(v) for c, v in zip(self._convert, values, strict=True)])


def postgresql_lines(table: Table, columns: Sequence[str]) -> CopyLines:
    """``CopyLines`` for PostgreSQL, made without a connection: for rows made before the
    transaction that copies them in."""
    return CopyLines(table, columns, dialect=_postgresql())


@functools.cache
def _postgresql() -> Dialect:
    return PGDialect_psycopg()  # type: ignore[no-untyped-call]


def copy_lines(session: Session, table: Table, columns: Sequence[str], lines: list[str]) -> None:
    """Copy ``lines`` (``CopyLines.line`` of ``columns``) into ``table`` in the session's
    transaction, in one write; PostgreSQL only. A value PostgreSQL refuses raises as
    SQLAlchemy would (``DataError``: ``session_scope`` makes it an ``InputError``)."""
    if not lines:
        return
    statement = _copy_statement(table.name, tuple(columns))
    driver = psycopg_connection(session)
    try:
        with driver.cursor() as cursor, cursor.copy(statement) as copy:
            copy.write("\n".join(lines) + "\n")
    except psycopg.Error as e:  # as SQLAlchemy would raise it, for session_scope
        text = statement.decode()
        if isinstance(e, psycopg.DataError):
            raise DataError(text, None, e) from e
        raise DBAPIError(text, None, e) from e


def psycopg_connection(session: Session) -> psycopg.Connection[Any]:
    """The psycopg connection under ``session``'s transaction (PostgreSQL), for the
    statements a writer runs in every batch: straight on the driver, a statement costs a
    fraction of the client CPU the ORM's ``execute`` spends compiling and wrapping it."""
    driver = session.connection().connection.driver_connection
    assert isinstance(driver, psycopg.Connection)
    return driver


@functools.cache
def _copy_statement(table: str, columns: tuple[str, ...]) -> bytes:
    """``COPY table (columns) FROM STDIN``, composed once per table and columns (quoting
    each identifier through libpq on every batch was a tenth of an audit record's cost)."""
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    return statement.as_bytes(None)


# COPY's text format: these four characters are escaped, NULL is \N.
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_NEEDS_ESCAPE = re.compile(r"[\\\t\n\r]")
_NULL = "\\N"


def _converter(column_type: TypeEngine[Any], dialect: Dialect) -> Callable[[Any], str]:
    """The COPY text of one column's values; by column type, since a line is made per
    record on the event loop (``_field`` is the general case)."""
    if isinstance(column_type, JSON):
        return _json_field
    if isinstance(column_type, TypeDecorator):
        decorator = column_type

        def bound(value: Any) -> str:
            return _field(decorator.process_bind_param(value, dialect))

        return bound
    if isinstance(column_type, String):
        return _text_field
    return _field


def _text_field(value: Any) -> str:
    if value is None:
        return _NULL
    return copy_field(value) if isinstance(value, str) else _field(value)


def _field(value: Any) -> str:
    """One value as COPY text: PostgreSQL's input spelling of its Python type."""
    if value is None:
        return _NULL
    if isinstance(value, str):
        return copy_field(value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not copied; use datetime.now(UTC)")
        return value.isoformat()
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isfinite(value):
            return repr(value)
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    raise TypeError(f"no COPY text for {type(value).__name__}")


def _json_field(value: Any) -> str:
    text = _json_text(value)
    return _NULL if text is None else copy_field(text)


def copy_field(text: str) -> str:
    """``text`` as one COPY text field (for a caller that writes a line of known text
    columns itself: ``CopyLines`` calls a converter per column)."""
    return text.translate(_COPY_ESCAPES) if _NEEDS_ESCAPE.search(text) else text


def _json_text(value: Any) -> str | None:
    if value is None:
        return None
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # what only the standard library writes (integers beyond 64 bits)
        return json.dumps(value)
