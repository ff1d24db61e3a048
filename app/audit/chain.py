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

import dataclasses
import datetime as dt
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from app.audit.canonical import SHA256_PREFIX, canonical_json, content_hash
from app.audit.entry import AuditEntry
from app.audit.inputs import InputBody, store_inputs
from app.db.base import Base, utcnow
from app.db.bulk import (
    CopyLines,
    copy_field,
    copy_lines,
    insert_rows,
    postgresql_lines,
    psycopg_connection,
)
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
    return content_hash(canonical_json(_hashed_content(values)))


def _hashed_content(values: Mapping[Any, Any]) -> dict[str, Any]:
    """What a record's hash covers, from its column values (``seq``, ``time`` and
    ``prev_hash`` left out when ``values`` lacks them: ``prepare_entry``)."""
    latency = values["latency_ms"]
    content = {
        "format": CHAIN_FORMAT,
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
    }
    for placed in _PLACED:
        if placed in values:
            content[placed] = time_text(values[placed]) if placed == "time" else values[placed]
    return content


# Given when a record is appended, under the chain lock; the rest is known before.
_PLACED = ("seq", "time", "prev_hash")
# The audit_records columns copied in between seq and time (first) and prev_hash and
# hash (last): everything known before the record's place in the chain.
_MIDDLE_COLUMNS = (
    "kind",
    "source",
    "actor",
    "namespace",
    "object",
    "images",
    "digests",
    "decision",
    "reasons",
    "policy_version",
    "policy_revision",
    "latency_ms",
    "input_hash",
    "details",
)
_RECORD_COLUMNS = ("seq", "time", *_MIDDLE_COLUMNS, "prev_hash", "hash")
_SUBJECT_COLUMNS = ("seq", "field", "value")


@dataclass(frozen=True, slots=True)
class PreparedEntry:
    """An ``AuditEntry`` made ready to append, so that little is left to do under the
    chain lock: its column values, the canonical JSON of its hashed content but the three
    members a place in the chain gives (``seq``, ``time``, ``prev_hash``), its index
    terms, and on PostgreSQL the COPY text of its columns and terms.

    The decision recorder prepares its entries where they are submitted, so that its
    writer thread holds the GIL for less (``app.enforce.records``); the hash comes out the
    same as ``record_hash`` of the appended row (``tests/audit/test_chain.py``).
    """

    values: dict[str, Any]
    time: dt.datetime | None
    # The unplaced content's canonical JSON cut where the placed members go, in key
    # order: {…policy_version} + prev_hash + reasons + seq + source + time.
    before_prev_hash: bytes
    reasons: bytes
    source: bytes
    subjects: tuple[tuple[str, str], ...]
    copy_text: str | None = None
    subject_texts: tuple[str, ...] = ()


def prepare_entry(entry: AuditEntry, *, copy_text: bool = False) -> PreparedEntry:
    """``entry`` ready to append (see ``PreparedEntry``); with its COPY text when
    ``copy_text`` (for PostgreSQL)."""
    values: dict[str, Any] = {
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
    }
    # Canonical JSON sorts keys, and the placed members fall between the last three:
    # "policy_version" < "prev_hash" < "reasons" < "seq" < "source" < "time". The cuts are
    # found from the right, where only the reasons (strings) and the source (a string)
    # follow: a JSON string holds no unescaped quote, so neither marker can occur inside.
    text = canonical_json(_hashed_content(values))
    reasons = text.rindex(b',"reasons":[')
    source = text.rindex(b',"source":"')
    subjects = tuple(
        (field, value[:512]) for field, value in subject_terms(entry.images, entry.digests)
    )
    texts = _copy_texts(values, subjects) if copy_text else (None, ())
    return PreparedEntry(
        values=values,
        time=entry.time,
        before_prev_hash=text[:reasons],
        reasons=text[reasons + 1 : source],
        source=text[source + 1 : -1],
        subjects=subjects,
        copy_text=texts[0],
        subject_texts=texts[1],
    )


def _copy_texts(
    values: dict[str, Any], subjects: tuple[tuple[str, str], ...]
) -> tuple[str, tuple[str, ...]]:
    """The COPY text of a record's middle columns, and of each of its index terms (a field
    name, which needs no escape, and a value)."""
    terms = tuple(f"{field}\t{copy_field(value)}" for field, value in subjects)
    return _middle_copy().line([values[c] for c in _MIDDLE_COLUMNS]), terms


@functools.cache
def _middle_copy() -> CopyLines:
    """COPY text of a record's middle columns."""
    return postgresql_lines(_RECORDS, _MIDDLE_COLUMNS)


def _placed_hash(prepared: PreparedEntry, *, seq: int, time: str, prev_hash: str) -> str:
    """The record's hash once it has its place: its prepared canonical JSON with the
    placed members put where canonical JSON's key order puts them."""
    text = b"".join(
        (
            prepared.before_prev_hash,
            b',"prev_hash":"',
            prev_hash.encode(),  # sha256:<hex> and the time text need no JSON escapes
            b'",',
            prepared.reasons,
            b',"seq":',
            str(seq).encode(),
            b",",
            prepared.source,
            b',"time":"',
            time.encode(),
            b'"}',
        )
    )
    return content_hash(text)


def lock_chain(session: Session) -> None:
    """Hold the chain lock until the session's transaction ends (see the module docstring)."""
    if session.get_bind().dialect.name == "postgresql":
        psycopg_connection(session).execute("SELECT pg_advisory_xact_lock(%s)", (CHAIN_LOCK,))
    else:
        session.execute(text("UPDATE audit_records SET seq = seq WHERE 1 = 0"))


def chain_head(session: Session) -> tuple[int, str]:
    """The last record's (seq, hash); after a purge of everything, the purge checkpoint's;
    ``(0, GENESIS)`` for an empty chain. Call it holding the chain lock."""
    last: Any
    if session.get_bind().dialect.name == "postgresql":  # every batch: through the driver
        last = (
            psycopg_connection(session)
            .execute("SELECT seq, hash FROM audit_records ORDER BY seq DESC LIMIT 1")
            .fetchone()
        )
    else:
        last = session.execute(
            select(AuditRecord.seq, AuditRecord.hash).order_by(AuditRecord.seq.desc()).limit(1)
        ).first()
    if last is not None:
        return int(last[0]), str(last[1])
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
    copy_text = session.get_bind().dialect.name == "postgresql"
    prepared = [prepare_entry(entry, copy_text=copy_text) for entry in entries]
    return append_prepared(session, prepared, inputs=inputs)


def append_prepared(
    session: Session,
    entries: Sequence[PreparedEntry],
    *,
    inputs: Sequence[bytes | InputBody] = (),
) -> list[int]:
    """``append_audit`` of entries already prepared (``prepare_entry``)."""
    if not entries:
        return []
    lock_chain(session)
    store_inputs(session, inputs)
    seq, prev_hash = chain_head(session)
    now = utcnow()
    now_text = time_text(now)
    first = seq + 1
    # Each entry's place: (entry, seq, time, its canonical text, prev_hash, hash).
    placed: list[tuple[PreparedEntry, int, dt.datetime, str, str, str]] = []
    for entry in entries:
        seq += 1
        stamp = time_text(entry.time) if entry.time is not None else now_text
        hashed = _placed_hash(entry, seq=seq, time=stamp, prev_hash=prev_hash)
        placed.append((entry, seq, entry.time or now, stamp, prev_hash, hashed))
        prev_hash = hashed
    if session.get_bind().dialect.name != "postgresql":
        records = [
            {**entry.values, "seq": n, "time": time, "prev_hash": prev, "hash": hashed}
            for entry, n, time, _, prev, hashed in placed
        ]
        subjects = [
            {"seq": n, "field": f, "value": v} for entry, n, *_ in placed for f, v in entry.subjects
        ]
        insert_rows(session, _RECORDS, records)
        insert_rows(session, _SUBJECTS, subjects)
        return list(range(first, seq + 1))
    # COPY on PostgreSQL (app.db.bulk): a multi-row VALUES statement would be compiled and
    # planned anew for each batch size. Each line is its prepared text with its place.
    lines: list[str] = []
    terms: list[str] = []
    for entry, n, _, stamp, prev, hashed in placed:
        if entry.copy_text is None:
            copy_text, subject_texts = _copy_texts(entry.values, entry.subjects)
            entry = dataclasses.replace(entry, copy_text=copy_text, subject_texts=subject_texts)
        lines.append(f"{n}\t{stamp}\t{entry.copy_text}\t{prev}\t{hashed}")
        terms += [f"{n}\t{text}" for text in entry.subject_texts]
    copy_lines(session, _RECORDS, _RECORD_COLUMNS, lines)
    copy_lines(session, _SUBJECTS, _SUBJECT_COLUMNS, terms)
    return list(range(first, seq + 1))
