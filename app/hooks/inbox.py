"""The inbox table: storing events from webhooks, and claiming them for a worker.

Storing (``store_events``): one transaction per envelope, one multi-row
``INSERT ... ON CONFLICT (source, event_id) DO NOTHING`` (PostgreSQL and SQLite both have it),
so a registry's retry of events already stored is acknowledged and nothing is stored twice.
The receiver answers only after the commit.

Claiming (``claim``): one statement sets a fresh claim token and a lease (``claimed_until``)
on up to ``limit`` due rows and returns them:

    UPDATE inbox_events SET claim_token = :token, claimed_until = :lease, attempts = attempts + 1
    WHERE id IN (SELECT id FROM inbox_events
                 WHERE status = 'pending' AND next_attempt_at <= :now
                   AND (claimed_until IS NULL OR claimed_until < :now)
                 ORDER BY id LIMIT :n [FOR UPDATE SKIP LOCKED])
    RETURNING ...

On PostgreSQL ``FOR UPDATE SKIP LOCKED`` lets concurrent workers take disjoint rows without
waiting; on SQLite the statement runs under the database's single writer lock, so two workers
can never claim the same row either. A worker that dies leaves its lease to run out; the row
is then claimable again (and the attempt it used counts). Every later write about a claimed
row (``finish``, ``fail``) names the claim token: a worker whose lease ran out and whose row
was taken by another cannot record anything (its transaction is rolled back).
"""

from __future__ import annotations

import datetime as dt
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import Select, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.db.base import utcnow
from app.db.models import InboxEvent, InboxStatus
from app.errors import LostClaim
from app.hooks.events import RegistryEvent


@dataclass(frozen=True)
class StoreResult:
    stored: int
    duplicates: int


def store_events(session: Session, events: Sequence[RegistryEvent]) -> StoreResult:
    """Insert ``events`` (ignoring ones already stored); the caller commits."""
    if not events:
        return StoreResult(stored=0, duplicates=0)
    now = utcnow()
    rows = [
        {
            "source": e.source.value,
            "event_id": e.event_id,
            "action": e.action.value,
            "image": e.image[:1024],
            "event": e.model_dump(mode="json"),
            "status": InboxStatus.pending.value,
            "attempts": 0,
            "next_attempt_at": now,
            "received_at": now,
        }
        for e in _unique(events)
    ]
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    # The rows as parameters, not in the statement: one statement text for every envelope,
    # compiled once and cached (inlined values made each envelope a new compilation).
    statement = (
        insert(InboxEvent)
        .on_conflict_do_nothing(index_elements=["source", "event_id"])
        .returning(InboxEvent.id)
    )
    stored = len(session.execute(statement, rows).all())
    return StoreResult(stored=stored, duplicates=len(events) - stored)


def _unique(events: Sequence[RegistryEvent]) -> list[RegistryEvent]:
    """One row per (source, event id) even when an envelope repeats an event."""
    seen: dict[tuple[str, str], RegistryEvent] = {}
    for event in events:
        seen.setdefault((event.source.value, event.event_id), event)
    return list(seen.values())


class Claimed(BaseModel):
    """An inbox row a worker holds: its event, attempt number and claim token."""

    model_config = ConfigDict(frozen=True)

    id: int
    token: str
    attempts: int
    event: RegistryEvent


def claim(
    session: Session, *, limit: int, lease_seconds: float, now: dt.datetime | None = None
) -> list[Claimed]:
    """Claim up to ``limit`` due events (see the module doc); the caller commits."""
    now = now or utcnow()
    token = str(uuid.uuid4())
    due: Select[Any] = (
        select(InboxEvent.id)
        .where(
            InboxEvent.status == InboxStatus.pending,
            InboxEvent.next_attempt_at <= now,
            (InboxEvent.claimed_until.is_(None)) | (InboxEvent.claimed_until < now),
        )
        .order_by(InboxEvent.id)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True)
    statement = (
        update(InboxEvent)
        .where(InboxEvent.id.in_(due.scalar_subquery()))
        .values(
            claim_token=token,
            claimed_until=now + dt.timedelta(seconds=lease_seconds),
            attempts=InboxEvent.attempts + 1,
        )
        .returning(InboxEvent.id, InboxEvent.attempts, InboxEvent.event)
        .execution_options(synchronize_session=False)
    )
    claimed = [
        Claimed(
            id=row.id,
            token=token,
            attempts=row.attempts,
            event=RegistryEvent.model_validate(row.event),
        )
        for row in session.execute(statement)
    ]
    return sorted(claimed, key=lambda c: c.id)


def finish(
    session: Session,
    claimed: Claimed,
    *,
    status: InboxStatus,
    outcome: dict[str, Any],
) -> None:
    """Mark a claimed row done or ignored, fenced by its claim token (LostClaim if taken)."""
    _fenced_update(
        session,
        claimed,
        status=status,
        outcome=outcome,
        processed_at=utcnow(),
        claim_token=None,
        claimed_until=None,
        last_error=None,
    )


def backoff_seconds(attempts: int, *, base: float, cap: float) -> float:
    """Exponential back-off with jitter: a random time in [half, all] of base * 2^(n-1), capped."""
    ceiling = min(cap, base * (2 ** max(0, attempts - 1)))
    return random.uniform(ceiling / 2, ceiling)


def fail(
    session: Session,
    claimed: Claimed,
    *,
    error: str,
    max_attempts: int,
    base: float,
    cap: float,
    now: dt.datetime | None = None,
) -> InboxStatus:
    """Release a claim after a failure: retry later with back-off, or ``dead`` once the row
    has used ``max_attempts``. Returns the new status."""
    now = now or utcnow()
    dead = claimed.attempts >= max_attempts
    status = InboxStatus.dead if dead else InboxStatus.pending
    _fenced_update(
        session,
        claimed,
        status=status,
        last_error=error[:2000],
        claim_token=None,
        claimed_until=None,
        next_attempt_at=now
        + dt.timedelta(seconds=backoff_seconds(claimed.attempts, base=base, cap=cap)),
        processed_at=now if dead else None,
    )
    return status


def check_claim(session: Session, claimed: Claimed) -> None:
    """Raise LostClaim unless ``claimed`` still holds its row (lock it for this transaction
    on PostgreSQL, so that the token cannot change before the transaction commits)."""
    query = select(InboxEvent.claim_token).where(InboxEvent.id == claimed.id)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    if session.scalar(query) != claimed.token:
        raise LostClaim(f"inbox event {claimed.id} was claimed by another worker")


def _fenced_update(session: Session, claimed: Claimed, **values: Any) -> None:
    result = session.execute(
        update(InboxEvent)
        .where(InboxEvent.id == claimed.id, InboxEvent.claim_token == claimed.token)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise LostClaim(f"inbox event {claimed.id} was claimed by another worker")


# Operator commands (sealgate inbox list|retry|purge).


class InboxRow(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: int
    source: str
    event_id: str
    action: str
    image: str
    status: str
    attempts: int
    claimed: bool
    next_attempt_at: dt.datetime
    last_error: str | None
    received_at: dt.datetime
    processed_at: dt.datetime | None


def list_events(
    session: Session, *, status: InboxStatus | None = None, limit: int = 100
) -> list[InboxRow]:
    query = select(InboxEvent).order_by(InboxEvent.id.desc()).limit(limit)
    if status is not None:
        query = query.where(InboxEvent.status == status)
    now = utcnow()
    return [
        InboxRow(
            id=r.id,
            source=r.source,
            event_id=r.event_id,
            action=r.action,
            image=r.image,
            status=r.status.value,
            attempts=r.attempts,
            claimed=r.claimed_until is not None and r.claimed_until > now,
            next_attempt_at=r.next_attempt_at,
            last_error=r.last_error,
            received_at=r.received_at,
            processed_at=r.processed_at,
        )
        for r in session.scalars(query)
    ]


def counts(session: Session) -> dict[str, int]:
    rows = session.execute(select(InboxEvent.status, func.count()).group_by(InboxEvent.status))
    return {status.value: n for status, n in rows}


def retry(session: Session, *, ids: Sequence[int] = (), all_dead: bool = False) -> int:
    """Put dead events (the given ids, or every dead one) back in the queue with fresh attempts."""
    query = update(InboxEvent).where(InboxEvent.status == InboxStatus.dead)
    if not all_dead:
        query = query.where(InboxEvent.id.in_(list(ids)))
    result = session.execute(
        query.values(
            status=InboxStatus.pending,
            attempts=0,
            next_attempt_at=utcnow(),
            claim_token=None,
            claimed_until=None,
            processed_at=None,
        ).execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def purge(session: Session, *, older_than: dt.timedelta, include_dead: bool = False) -> int:
    """Delete finished (done, ignored; with ``include_dead`` also dead) events older than
    ``older_than`` with their action records; verdicts stay."""
    from sqlalchemy import delete

    statuses = [InboxStatus.done, InboxStatus.ignored]
    if include_dead:
        statuses.append(InboxStatus.dead)
    result = session.execute(
        delete(InboxEvent)
        .where(InboxEvent.status.in_(statuses), InboxEvent.received_at < utcnow() - older_than)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
