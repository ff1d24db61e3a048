"""The hash chain: what a record's hash covers, and appending records in one chain order.

Each record's ``hash`` is ``sha256:<hex>`` of the canonical JSON of its content, which
includes its ``seq`` and the ``prev_hash`` of the record before it (``GENESIS`` for the
first). Changing, removing or inserting a record therefore breaks the recomputation at that
record (``app.audit.verification``).

Every replica appends to the one chain. ``append_audit`` takes the chain lock inside the
caller's transaction, reads the head, assigns the next numbers and inserts, and the lock is
released when that transaction ends:

- PostgreSQL: a transaction-scoped advisory lock (``pg_advisory_xact_lock``), the pattern of
  ``app.oci.locks`` and ``app.policy.versions``. Under READ COMMITTED the head is read by a
  statement that starts after the lock is held, so it sees the previous holder's commit.
- SQLite: one writer at a time is the file's own rule; a no-op ``UPDATE`` takes the write
  lock before the head is read (a plain read would not, and two writers could both read
  the same head).

Because numbers and hashes are assigned under the lock inside the transaction, a transaction
that rolls back takes its records with it and leaves no hole. Append last in a transaction:
the lock is held until commit, so every writer waits for the slowest committer.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from app.audit.canonical import SHA256_PREFIX, canonical_json, content_hash
from app.audit.entry import AuditEntry
from app.audit.inputs import InputBody, store_inputs
from app.db.base import Base, utcnow
from app.db.bulk import insert_rows
from app.db.models import AuditCheckpoint, AuditRecord, AuditSubject
from app.errors import InputError
from app.oci.refs import ImageRef

GENESIS = SHA256_PREFIX + "0" * 64
CHAIN_FORMAT = 1
# Advisory-lock id under which every replica appends to the chain ("sgaudit").
CHAIN_LOCK = 0x7367617564697400
PURGE_CHECKPOINT = "purge"
HEAD_CHECKPOINT = "head"
# Core tables: the inserts below bypass the ORM's per-row bookkeeping.
_RECORDS = Base.metadata.tables[AuditRecord.__tablename__]
_SUBJECTS = Base.metadata.tables[AuditSubject.__tablename__]


def time_text(value: dt.datetime) -> str:
    """The canonical spelling of a record time: UTC, microseconds, ``Z``."""
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def record_hash(values: Mapping[Any, Any]) -> str:
    """The hash of a record given its column values (a row mapping or the values to insert).

    Latency is hashed as whole microseconds, never as a float: floats are the one JSON value
    two encoders may spell differently.
    """
    latency = values["latency_ms"]
    content = {
        "format": CHAIN_FORMAT,
        "seq": values["seq"],
        "time": time_text(values["time"]),
        "kind": values["kind"],
        "source": values["source"],
        "actor": values["actor"],
        "namespace": values["namespace"],
        "object": values["object"],
        "images": list(values["images"]),
        "digests": list(values["digests"]),
        "decision": values["decision"],
        "reasons": list(values["reasons"]),
        "policy_version": values["policy_version"],
        "policy_revision": values["policy_revision"],
        "latency_us": None if latency is None else round(latency * 1000),
        "input_hash": values["input_hash"],
        "details": values["details"],
        "prev_hash": values["prev_hash"],
    }
    return content_hash(canonical_json(content))


def lock_chain(session: Session) -> None:
    """Hold the chain lock until the session's transaction ends (see the module docstring)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(CHAIN_LOCK)))
    else:
        session.execute(text("UPDATE audit_records SET seq = seq WHERE 1 = 0"))


def chain_head(session: Session) -> tuple[int, str]:
    """The last record's (seq, hash); after a purge of everything, the purge checkpoint's;
    ``(0, GENESIS)`` for an empty chain. Call it holding the chain lock."""
    last = session.execute(
        select(AuditRecord.seq, AuditRecord.hash).order_by(AuditRecord.seq.desc()).limit(1)
    ).first()
    if last is not None:
        return int(last.seq), str(last.hash)
    checkpoint = session.execute(
        select(AuditCheckpoint.seq, AuditCheckpoint.hash)
        .where(AuditCheckpoint.kind == PURGE_CHECKPOINT)
        .order_by(AuditCheckpoint.seq.desc())
        .limit(1)
    ).first()
    if checkpoint is not None:
        return int(checkpoint.seq), str(checkpoint.hash)
    return 0, GENESIS


def subject_terms(images: Sequence[str], digests: Sequence[str]) -> list[tuple[str, str]]:
    """The (field, value) index terms of a record: each image's name (without tag or
    digest; the text itself when it is not a reference) and every digest it names."""
    terms: dict[tuple[str, str], None] = {}
    for image in images:
        try:
            ref = ImageRef.parse(image)
        except InputError:
            terms["image", image] = None
            continue
        terms["image", ref.name] = None
        if ref.digest:
            terms["digest", ref.digest] = None
    for digest in digests:
        terms["digest", digest] = None
    return list(terms)


def append_audit(
    session: Session,
    entries: Sequence[AuditEntry],
    *,
    inputs: Sequence[bytes | InputBody] = (),
) -> list[int]:
    """Append ``entries`` in order to the chain in the caller's transaction; return their
    sequence numbers. An entry without a time gets the current time.

    The records commit or roll back with the caller's transaction. An ``input_hash`` must
    name an input stored in this transaction or earlier: pass the canonical bodies of the
    entries' inputs as ``inputs`` (bytes, or ``InputBody`` with findings) and they are
    stored (once per content) under the chain lock, which no retention purge can
    interleave with (``app.audit.inputs``).
    """
    if not entries:
        return []
    lock_chain(session)
    store_inputs(session, inputs)
    seq, prev_hash = chain_head(session)
    now = utcnow()
    records: list[dict[str, Any]] = []
    subjects: list[dict[str, Any]] = []
    for entry in entries:
        seq += 1
        values: dict[str, Any] = {
            "seq": seq,
            "time": entry.time or now,
            "kind": entry.kind.value,
            "source": entry.source,
            "actor": entry.actor,
            "namespace": entry.namespace,
            "object": entry.object,
            "images": list(entry.images),
            "digests": list(entry.digests),
            "decision": entry.decision,
            "reasons": list(entry.reasons),
            "policy_version": entry.policy_version,
            "policy_revision": entry.policy_revision,
            "latency_ms": None if entry.latency_ms is None else round(entry.latency_ms, 3),
            "input_hash": entry.input_hash,
            "details": entry.details,
            "prev_hash": prev_hash,
        }
        values["hash"] = prev_hash = record_hash(values)
        records.append(values)
        subjects += [
            {"seq": seq, "field": field, "value": value[:512]}
            for field, value in subject_terms(entry.images, entry.digests)
        ]
    # COPY on PostgreSQL, executemany elsewhere (app.db.bulk): a multi-row VALUES
    # statement would be compiled and planned anew for each batch size.
    insert_rows(session, _RECORDS, records)
    insert_rows(session, _SUBJECTS, subjects)
    return [r["seq"] for r in records]
