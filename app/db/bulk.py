"""Inserting many rows at once: ``COPY`` on PostgreSQL, executemany elsewhere.

The decision recorder and the audit trail write hundreds of rows per transaction. On
PostgreSQL, psycopg's pipelined executemany still costs about a round trip's worth of client
work per row and statement; ``COPY … FROM STDIN`` streams the rows in one command for a
fraction of that. The rows are given as Core values (every column the table needs, as
``insert`` would take them); JSON columns are serialised here (orjson: the same values as
SQLAlchemy's ``json.dumps`` would store, spelt without spaces or ASCII escapes) and
timestamps pass through their column type, as an ``insert`` would bind them. A Python
``None`` in a JSON column is SQL NULL.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from typing import Any

import orjson
import psycopg
from psycopg import sql
from sqlalchemy import JSON, Table, TypeDecorator, insert
from sqlalchemy.exc import DataError, DBAPIError
from sqlalchemy.orm import Session


def insert_rows(session: Session, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert ``rows`` (each with the same keys) into ``table`` in the session's
    transaction."""
    if not rows:
        return
    if session.get_bind().dialect.name != "postgresql":
        session.execute(insert(table), list(rows))
        return
    columns = list(rows[0])
    convert = [_converter(table, name, session) for name in columns]
    statement = _copy_statement(table.name, tuple(columns))
    driver = session.connection().connection.driver_connection
    assert driver is not None
    try:
        with driver.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row([c(row[name]) for c, name in zip(convert, columns, strict=True)])
    except psycopg.Error as e:  # as SQLAlchemy would raise it, for session_scope
        text = statement.decode()
        if isinstance(e, psycopg.DataError):
            raise DataError(text, None, e) from e
        raise DBAPIError(text, None, e) from e


@functools.cache
def _copy_statement(table: str, columns: tuple[str, ...]) -> bytes:
    """``COPY table (columns) FROM STDIN``, composed once per table and columns (quoting
    each identifier through libpq on every batch was a tenth of an audit record's cost)."""
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    return statement.as_bytes(None)


def _converter(table: Table, name: str, session: Session) -> Callable[[Any], Any]:
    column_type = table.columns[name].type
    if isinstance(column_type, JSON):
        return _json_text
    if isinstance(column_type, TypeDecorator):
        dialect = session.get_bind().dialect

        def bind(value: Any) -> Any:
            return column_type.process_bind_param(value, dialect)

        return bind
    return _as_is


def _json_text(value: Any) -> str | None:
    if value is None:
        return None
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # what only the standard library writes (integers beyond 64 bits)
        return json.dumps(value)


def _as_is(value: Any) -> Any:
    return value
