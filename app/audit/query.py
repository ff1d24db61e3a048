"""Reading the trail back: filters, cursor pages, one record with its input, export order.

Records leave this package as frozen ``AuditRecordView`` objects. Pages run newest first;
the cursor is the opaque base64 of the last ``seq`` a page returned, so a page never skips
or repeats a record however many are appended meanwhile. ``iter_records`` runs oldest first
in batches, for exports of any length.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Select, exists, func, select
from sqlalchemy.orm import Session

from app.audit.inputs import load_input
from app.db.models import AuditRecord, AuditSubject
from app.errors import AuditError, InputError
from app.oci.refs import ImageRef

MAX_PAGE = 500
_RELATIVE = re.compile(r"^(\d{1,6})([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
_CURSOR_PREFIX = "seq:"


class AuditRecordView(BaseModel):
    """One audit record as the API, the CLI and exports show it."""

    model_config = ConfigDict(frozen=True)

    seq: int
    time: dt.datetime
    kind: str
    source: str
    actor: str
    namespace: str | None
    object: str | None
    images: list[str]
    digests: list[str]
    decision: str | None
    reasons: list[str]
    policy_version: int | None
    policy_revision: str | None
    latency_ms: float | None
    input_hash: str | None
    details: dict[str, Any]
    prev_hash: str
    hash: str

    @classmethod
    def from_row(cls, row: AuditRecord) -> AuditRecordView:
        return cls.model_validate(row, from_attributes=True)


class AuditFilter(BaseModel):
    """Which records to read; every given field must match (``image`` by name, ignoring a
    tag; with a digest in it, that digest too)."""

    model_config = ConfigDict(frozen=True)

    since: dt.datetime | None = None
    until: dt.datetime | None = None
    image: str | None = Field(default=None, max_length=512)
    digest: str | None = Field(default=None, max_length=100)
    namespace: str | None = Field(default=None, max_length=253)
    decision: str | None = Field(default=None, max_length=16)
    actor: str | None = Field(default=None, max_length=256)
    kind: str | None = Field(default=None, max_length=64)

    def apply(self, query: Select[Any]) -> Select[Any]:
        if self.since is not None:
            query = query.where(AuditRecord.time >= self.since)
        if self.until is not None:
            query = query.where(AuditRecord.time < self.until)
        for column, value in (
            (AuditRecord.namespace, self.namespace),
            (AuditRecord.decision, self.decision),
            (AuditRecord.actor, self.actor),
            (AuditRecord.kind, self.kind),
        ):
            if value is not None:
                query = query.where(column == value)
        terms: list[tuple[str, str]] = []
        if self.image is not None:
            ref = ImageRef.parse(self.image)
            terms.append(("image", ref.name))
            if ref.digest:
                terms.append(("digest", ref.digest))
        if self.digest is not None:
            terms.append(("digest", self.digest))
        for field, value in terms:
            query = query.where(
                exists().where(
                    AuditSubject.seq == AuditRecord.seq,
                    AuditSubject.field == field,
                    AuditSubject.value == value,
                )
            )
        return query


class AuditPage(BaseModel):
    model_config = ConfigDict(frozen=True)

    records: list[AuditRecordView]
    next_cursor: str | None


def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"{_CURSOR_PREFIX}{seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The ``seq`` inside a cursor from ``encode_cursor``; ``AuditError`` (400) otherwise."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if not text.startswith(_CURSOR_PREFIX):
            raise ValueError(text)
        seq = int(text.removeprefix(_CURSOR_PREFIX))
        if not 0 < seq < 2**63:
            raise ValueError(text)
    except (binascii.Error, UnicodeDecodeError, ValueError) as e:
        raise AuditError(
            f"cursor {cursor[:60]!r} is not one this service issued",
            code="audit.cursor",
        ) from e
    return seq


def list_records(
    session: Session, *, where: AuditFilter, limit: int = 100, cursor: str | None = None
) -> AuditPage:
    """One page of matching records, newest first, and the cursor of the next page."""
    if not 1 <= limit <= MAX_PAGE:
        raise InputError(f"limit must be 1 to {MAX_PAGE}", code="input.invalid")
    query = where.apply(select(AuditRecord))
    if cursor is not None:
        query = query.where(AuditRecord.seq < decode_cursor(cursor))
    rows = list(session.scalars(query.order_by(AuditRecord.seq.desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return AuditPage(
        records=[AuditRecordView.from_row(r) for r in rows],
        next_cursor=encode_cursor(rows[-1].seq) if more and rows else None,
    )


def count_records(session: Session, *, where: AuditFilter) -> int:
    query = where.apply(select(AuditRecord)).with_only_columns(func.count())
    return int(session.scalar(query) or 0)


def iter_records(
    session: Session, *, where: AuditFilter, batch: int = 1000
) -> Iterator[AuditRecordView]:
    """Every matching record, oldest first, read ``batch`` at a time."""
    after = 0
    while True:
        query = where.apply(select(AuditRecord)).where(AuditRecord.seq > after)
        rows = list(session.scalars(query.order_by(AuditRecord.seq).limit(batch)))
        for row in rows:
            yield AuditRecordView.from_row(row)
        if len(rows) < batch:
            return
        after = rows[-1].seq
        session.expunge_all()  # keep memory flat on long exports


def get_record(session: Session, *, seq: int) -> tuple[AuditRecordView, dict[str, Any] | None]:
    """Record ``seq`` and its stored input (None when it names none); ``AuditError`` (404)."""
    row = session.get(AuditRecord, seq) if 0 < seq < 2**63 else None
    if row is None:
        raise AuditError(f"no audit record {seq}", code="not_found.audit_record")
    view = AuditRecordView.from_row(row)
    return view, load_input(session, view.input_hash) if view.input_hash else None


def parse_since(text: str, *, now: dt.datetime) -> dt.datetime:
    """A point in time from ``7d``/``24h``/``30m``/``10s`` before ``now``, an ISO date
    (midnight UTC) or an ISO date-time (UTC unless it names a zone); ``AuditError`` (400)."""
    text = text.strip()
    try:
        relative = _RELATIVE.match(text)
        if relative:
            amount, unit = int(relative.group(1)), _UNITS[relative.group(2)]
            return now - dt.timedelta(**{unit: amount})
        moment = dt.datetime.fromisoformat(text)
    except (ValueError, OverflowError):
        raise AuditError(
            f"{text[:60]!r} is not a time: give 7d, 24h, 30m, a date (2026-12-01) or a "
            "date-time (2026-12-01T08:00:00Z)",
            code="audit.since",
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
