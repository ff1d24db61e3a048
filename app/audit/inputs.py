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
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Insert, delete, exists, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.audit.canonical import HASH_PATTERN, canonical_json, content_hash
from app.db.base import utcnow
from app.db.models import AuditRecord, StoredInput


def _insert_ignoring_duplicates(session: Session) -> Insert:
    """An INSERT of stored inputs that does nothing for a hash already stored."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(StoredInput).on_conflict_do_nothing(
            index_elements=[StoredInput.hash]
        )
    if dialect == "sqlite":
        return sqlite.insert(StoredInput).on_conflict_do_nothing(index_elements=[StoredInput.hash])
    raise NotImplementedError(f"stored inputs on {dialect}")  # settings allow only these two


def store_inputs(session: Session, bodies: Sequence[bytes]) -> list[str]:
    """Store each body (canonical JSON bytes, see ``canonical_json``) unless already stored;
    return their names ``sha256:<hex>`` in order. Runs in the caller's transaction."""
    names = [content_hash(body) for body in bodies]
    if names:
        now = utcnow()
        rows = {
            name: {"hash": name, "body": body, "size": len(body), "created_at": now}
            for name, body in zip(names, bodies, strict=True)
        }
        session.execute(_insert_ignoring_duplicates(session), list(rows.values()))
    return names


def store_input(session: Session, body: bytes) -> str:
    """Store one body unless already stored; return its name (see ``store_inputs``)."""
    return store_inputs(session, [body])[0]


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
    it yet (a writer may be about to), and anything an audit record names stays. Run it
    holding the chain lock (``purge_expired`` does): a writer that hands its inputs to
    ``append_audit`` stores them under the same lock, so an old input it reuses is either
    still there or stored again, never deleted between its store and its record.
    """
    referenced = exists().where(AuditRecord.input_hash == StoredInput.hash)
    result = session.execute(
        delete(StoredInput)
        .where(StoredInput.created_at < cutoff, ~referenced)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
