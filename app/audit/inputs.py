"""Decision inputs stored once per distinct content, named by the hash of their bytes.

A busy cluster decides the same input again and again (the same image under the same
policy): the audit record and the decision row name the input by ``sha256:<hex>`` of its
canonical JSON and the body is stored once. ``store_input`` is safe under concurrent writers
on every replica: it is one ``INSERT ... ON CONFLICT DO NOTHING`` on PostgreSQL and SQLite,
so two writers of the same content both succeed and one row remains.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from sqlalchemy import Insert, delete, exists, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.audit.canonical import HASH_PATTERN, canonical_json, content_hash
from app.db.base import utcnow
from app.db.models import AuditRecord, StoredInput


def _insert_ignoring_duplicates(session: Session, values: dict[str, Any]) -> Insert:
    """An INSERT of one stored input that does nothing when the hash is already stored."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return (
            postgresql.insert(StoredInput)
            .values(values)
            .on_conflict_do_nothing(index_elements=[StoredInput.hash])
        )
    if dialect == "sqlite":
        return (
            sqlite.insert(StoredInput)
            .values(values)
            .on_conflict_do_nothing(index_elements=[StoredInput.hash])
        )
    raise NotImplementedError(f"stored inputs on {dialect}")  # settings allow only these two


def store_input(session: Session, body: bytes) -> str:
    """Store ``body`` (canonical JSON bytes, see ``canonical_json``) unless already stored;
    return its name ``sha256:<hex>``. Runs in the caller's transaction."""
    name = content_hash(body)
    session.execute(
        _insert_ignoring_duplicates(
            session, {"hash": name, "body": body, "size": len(body), "created_at": utcnow()}
        )
    )
    return name


def store_input_value(session: Session, value: Any) -> str:
    """Store the canonical JSON of ``value``; return its name."""
    return store_input(session, canonical_json(value))


def load_input(session: Session, name: str) -> dict[str, Any] | None:
    """The stored input called ``name`` as decoded JSON, or None when there is none."""
    if not HASH_PATTERN.match(name):
        return None
    body = session.scalar(select(StoredInput.body).where(StoredInput.hash == name))
    if body is None:
        return None
    decoded: dict[str, Any] = json.loads(body)
    return decoded


def purge_unreferenced_inputs(session: Session, *, cutoff: dt.datetime) -> int:
    """Delete inputs stored before ``cutoff`` that no audit record names; return how many.

    Conservative on purpose: an input newer than the cutoff stays even when nothing names
    it yet (a writer may be about to), and anything an audit record names stays.
    """
    referenced = exists().where(AuditRecord.input_hash == StoredInput.hash)
    result = session.execute(
        delete(StoredInput)
        .where(StoredInput.created_at < cutoff, ~referenced)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
