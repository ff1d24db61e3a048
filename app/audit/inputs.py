"""Decision inputs stored once per distinct content, named by the hash of their bytes.

A busy cluster decides the same image again and again: the audit record and the decision
row (``Decision.input_hash``) name the decision's input by ``sha256:<hex>`` of its canonical
JSON, in the one table both share, so it is stored once for both. Inputs differ from one
decision to the next by their time at least, but their bulk, the scan's findings, is the
same for every decision on one scan: a decision's findings are stored as an input of their
own (a canonical JSON array), the input names them in their place (``scan.vulnerabilities``
is ``{"$findings": <name>}``) and its row's ``findings_hash`` says so, which keeps them from
being purged while it is there. ``load_input`` puts them back: whoever reads an input gets
it whole, exactly as the engine received it.

``store_inputs`` is safe under concurrent writers on every replica: it is one ``INSERT ...
ON CONFLICT DO NOTHING`` on PostgreSQL and SQLite (after a look at which names are already
there, so a scan's findings travel to the database once), so two writers of the same
content both succeed and one row remains.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from sqlalchemy import Insert, delete, exists, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, aliased

from app.audit.canonical import HASH_PATTERN, canonical_json, content_hash
from app.db.base import utcnow
from app.db.bulk import psycopg_connection
from app.db.models import AuditRecord, Decision, StoredInput

# What a stored input puts in the place of the findings it names.
FINDINGS_KEY = "$findings"


@dataclass(frozen=True)
class InputBody:
    """One input to store: its canonical JSON, and the canonical JSON of the findings it
    names (``{"$findings": findings_name}`` at ``scan.vulnerabilities``), if any."""

    document: bytes
    findings: bytes | None = None
    findings_name: str | None = None

    @cached_property
    def name(self) -> str:
        return content_hash(self.document)


# An admission review's stored input lists each of its images' own decision and names its
# input: ``{"review_inputs": [{"image", "digest", "allowed", "warned", "codes",
# "input": {"$input": NAME}}, ...]}``.
REVIEW_INPUTS_KEY = "review_inputs"
INPUT_KEY = "$input"


@dataclass(frozen=True)
class ReviewImage:
    """One image of an admission review: what was decided for it, and its input's name.
    ``warned``: its denials were answered as warnings (unchanged on UPDATE)."""

    image: str
    digest: str | None
    allowed: bool
    warned: bool
    codes: tuple[str, ...]
    input: str


def review_inputs_body(images: Sequence[ReviewImage]) -> InputBody:
    """The stored input of an admission review: each image's decision and the name of its
    input, in the object's order. Identical reviews (a ReplicaSet's Pods) share one row."""
    return InputBody(
        canonical_json(
            {
                REVIEW_INPUTS_KEY: [
                    {
                        "image": i.image,
                        "digest": i.digest,
                        "allowed": i.allowed,
                        "warned": i.warned,
                        "codes": list(i.codes),
                        "input": {INPUT_KEY: i.input},
                    }
                    for i in images
                ]
            }
        )
    )


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


def _row(name: str, body: bytes, *, now: dt.datetime, findings: str | None) -> dict[str, Any]:
    return {
        "hash": name,
        "body": body,
        "size": len(body),
        "created_at": now,
        "findings_hash": findings,
    }


def store_inputs(session: Session, bodies: Sequence[bytes | InputBody]) -> list[str]:
    """Store each input (canonical JSON bytes, see ``canonical_json``, or an ``InputBody``
    with its findings) unless already stored; return their names ``sha256:<hex>`` in
    order. Runs in the caller's transaction.

    Raises ``ValueError`` when findings are not named by their hash (a caller's bug: the
    input would name other findings than it was decided on).
    """
    inputs = [b if isinstance(b, InputBody) else InputBody(b) for b in bodies]
    names = [i.name for i in inputs]
    if not names:
        return names
    now = utcnow()
    documents: dict[str, dict[str, Any]] = {}
    findings: dict[str, bytes] = {}
    for item, name in zip(inputs, names, strict=True):
        documents[name] = _row(name, item.document, now=now, findings=item.findings_name)
        if item.findings is not None and item.findings_name is not None:
            findings[item.findings_name] = item.findings
    wanted = [*findings, *documents]
    present = _present(session, wanted)
    missing_findings = []
    for name, body in findings.items():
        if name in present:
            continue
        if content_hash(body) != name:
            raise ValueError(f"findings named {name} do not hash to that name")
        missing_findings.append(_row(name, body, now=now, findings=None))
    # Findings first: an input's row names its findings' row.
    for rows in (missing_findings, [r for n, r in documents.items() if n not in present]):
        if rows:
            session.execute(_insert_ignoring_duplicates(session), rows)
    return names


def _present(session: Session, names: list[str]) -> set[str]:
    """Which of ``names`` are stored already (on PostgreSQL through the driver: the
    decision recorder asks in every batch)."""
    if session.get_bind().dialect.name == "postgresql":
        rows = psycopg_connection(session).execute(
            "SELECT hash FROM stored_inputs WHERE hash = ANY(%s)", (names,)
        )
        return {str(row[0]) for row in rows}
    return set(session.scalars(select(StoredInput.hash).where(StoredInput.hash.in_(names))))


def store_input(session: Session, body: bytes) -> str:
    """Store one body unless already stored; return its name (see ``store_inputs``)."""
    return store_inputs(session, [body])[0]


def store_input_value(session: Session, value: Any) -> str:
    """Store the canonical JSON of ``value``; return its name."""
    return store_input(session, canonical_json(value))


class InputReader:
    """Reads stored inputs back whole, decoding each findings body once (a replay reads
    thousands of inputs that name the same findings)."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._findings: dict[str, Any] = {}

    def load(self, name: str) -> dict[str, Any] | None:
        """The stored input called ``name`` as decoded JSON with its findings in place, or
        None when there is none."""
        if not HASH_PATTERN.match(name):
            return None
        stored = self._session.get(StoredInput, name)
        if stored is None:
            return None
        document: dict[str, Any] = stored.value()
        named = stored.findings_hash
        scan = document.get("scan")
        # Only where the row says, never wherever the placeholder's shape appears.
        if (
            named is not None
            and isinstance(scan, dict)
            and scan.get("vulnerabilities") == {FINDINGS_KEY: named}
        ):
            scan["vulnerabilities"] = self._findings_named(named)
        if document.keys() == {REVIEW_INPUTS_KEY}:
            self._review_inputs_in_place(document[REVIEW_INPUTS_KEY])
        return document

    def _review_inputs_in_place(self, entries: Any) -> None:
        """Each image's input named in a review's stored input, put in its place (only
        there: a decision's input never has ``review_inputs`` as its one key)."""
        for entry in entries if isinstance(entries, list) else ():
            reference = entry.get("input") if isinstance(entry, dict) else None
            if isinstance(reference, dict) and reference.keys() == {INPUT_KEY}:
                name = reference[INPUT_KEY]
                entry["input"] = self.load(name) if isinstance(name, str) else None

    def _findings_named(self, name: str) -> Any:
        if name not in self._findings:
            stored = self._session.get(StoredInput, name)
            # The purge keeps them while an input names them.
            self._findings[name] = stored.value() if stored is not None else None
        return self._findings[name]


def load_input(session: Session, name: str) -> dict[str, Any] | None:
    """The stored input called ``name`` as decoded JSON, whole, or None when there is none."""
    return InputReader(session).load(name)


def purge_unreferenced_inputs(session: Session, *, cutoff: dt.datetime) -> int:
    """Delete inputs stored before ``cutoff`` that no audit record, decision or other
    input names; return how many (findings named by an input purged here go next time).

    An admission review's stored input names its images' inputs in its body
    (``review_inputs_body``); their decisions name them too, and a decision is purged a day
    after its record (``app.audit.retention``), so they stay while the review's record does.

    Conservative on purpose: an input newer than the cutoff stays even when nothing names
    it yet (a writer may be about to), and anything a record names stays. Run it holding
    the chain lock (``purge_expired`` does): a writer stores its inputs under the same lock
    (``append_audit``; the decision recorder inserts its decisions after, in the same
    transaction), so an old input it reuses is either still there or stored again, never
    deleted between its store and its record.
    """
    naming = aliased(StoredInput)
    named_by_record = exists().where(AuditRecord.input_hash == StoredInput.hash)
    named_by_decision = exists().where(Decision.input_hash == StoredInput.hash)
    named_by_input = exists().where(naming.findings_hash == StoredInput.hash)
    result = session.execute(
        delete(StoredInput)
        .where(
            StoredInput.created_at < cutoff,
            ~named_by_record,
            ~named_by_decision,
            ~named_by_input,
        )
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
