"""Recomputing the chain: ``verify_chain`` finds the first record changed, removed or inserted.

Walking the records in ``seq`` order from the anchor (the latest signed purge checkpoint, or
the genesis), each record must:

1. come right after the one before (a gap means records were **removed**);
2. name the hash of the one before as its ``prev_hash`` (otherwise it was **inserted**, or
   the record before it was rewritten together with its hash);
3. hash to its stored ``hash`` (otherwise its content was **changed**, or it was inserted by
   hand with a made-up hash);
4. agree with every signed head checkpoint at its ``seq``; and the chain must reach every
   head checkpoint (otherwise its tail was **removed**).

Every checkpoint's signature is checked first; one not signed with this installation's key
is a forgery and fails the check. What no hash chain can show on its own: a rewrite of the
records after the last head checkpoint, done with the hashes recomputed. Head checkpoints
are written by each retention run (``app.audit.retention``), which bounds that window.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from enum import StrEnum

from pydantic import BaseModel, ConfigDict
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.audit.chain import GENESIS, HEAD_CHECKPOINT, PURGE_CHECKPOINT, record_hash, time_text
from app.audit.checkpoints import CheckpointKey, list_checkpoints
from app.db.models import AuditCheckpoint, AuditRecord

Progress = Callable[[int, int], None]
_BATCH = 1000


class ProblemKind(StrEnum):
    changed = "changed"
    removed = "removed"
    inserted = "inserted"
    checkpoint = "checkpoint"


class ChainProblem(BaseModel):
    """The first thing wrong with the chain: what, at which record, in words."""

    model_config = ConfigDict(frozen=True)

    kind: ProblemKind
    seq: int | None
    message: str


class ChainReport(BaseModel):
    """What ``verify_chain`` found: how much it checked, and the first problem if any."""

    model_config = ConfigDict(frozen=True)

    checked: int
    first_seq: int | None
    last_seq: int | None
    head_hash: str | None
    checkpoints: int
    problem: ChainProblem | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


def _describe(checkpoint: AuditCheckpoint) -> str:
    return (
        f"{checkpoint.kind} checkpoint #{checkpoint.id} of {time_text(checkpoint.created_at)} "
        f"(seq {checkpoint.seq})"
    )


def _check_checkpoints(
    checkpoints: list[AuditCheckpoint], key: CheckpointKey | None
) -> ChainProblem | None:
    if checkpoints and key is None:
        return ChainProblem(
            kind=ProblemKind.checkpoint,
            seq=None,
            message=f"{len(checkpoints)} checkpoint(s) cannot be checked without the "
            "key-encryption key (SEALGATE_KEY_ENCRYPTION_KEY)",
        )
    for checkpoint in checkpoints:
        assert key is not None
        if not key.signed(checkpoint):
            return ChainProblem(
                kind=ProblemKind.checkpoint,
                seq=checkpoint.seq,
                message=f"{_describe(checkpoint)} is not signed with this installation's "
                "key: it was forged or altered",
            )
    return None


def _removed(first: int, last: int, why: str) -> ChainProblem:
    which = f"record {first} was" if first == last else f"records {first} to {last} were"
    return ChainProblem(kind=ProblemKind.removed, seq=first, message=f"{which} removed ({why})")


def verify_chain(
    session: Session,
    *,
    key: CheckpointKey | None,
    since: dt.datetime | None = None,
    on_progress: Progress | None = None,
) -> ChainReport:
    """Recompute the chain (from the first record at or after ``since``, when given) and
    return what was checked and the first problem. ``key`` checks the checkpoints; without
    it a chain that has checkpoints does not verify. ``on_progress(done, total)`` is called
    after each batch of records."""
    checkpoints = list_checkpoints(session)
    problem = _check_checkpoints(checkpoints, key)

    def report(
        checked: int = 0,
        first: int | None = None,
        last: int | None = None,
        head: str | None = None,
        found: ChainProblem | None = None,
    ) -> ChainReport:
        return ChainReport(
            checked=checked,
            first_seq=first,
            last_seq=last,
            head_hash=head,
            checkpoints=len(checkpoints),
            problem=found,
        )

    if problem is not None:
        return report(found=problem)
    purges = [c for c in checkpoints if c.kind == PURGE_CHECKPOINT]
    anchor = max(purges, key=lambda c: c.seq, default=None)
    anchor_seq, anchor_hash = (anchor.seq, anchor.hash) if anchor else (0, GENESIS)
    heads = {c.seq: c for c in checkpoints if c.kind == HEAD_CHECKPOINT and c.seq > anchor_seq}

    stray = session.scalar(select(func.min(AuditRecord.seq)).where(AuditRecord.seq <= anchor_seq))
    if stray is not None:
        return report(
            found=ChainProblem(
                kind=ProblemKind.inserted,
                seq=stray,
                message=f"record {stray} was inserted: the chain was purged through seq "
                f"{anchor_seq} ({_describe(anchor) if anchor else 'genesis'})",
            )
        )

    start = anchor_seq + 1
    expected_prev: str | None = anchor_hash
    if since is not None:
        first_since = session.scalar(
            select(func.min(AuditRecord.seq)).where(AuditRecord.time >= since)
        )
        if first_since is not None and first_since - 1 > anchor_seq:
            # Start one record early: its own hash is checked, and its prev_hash taken on
            # trust, so the first record since ``since`` is checked against it.
            start = first_since - 1
            expected_prev = None
        elif first_since is None:
            start = (session.scalar(select(func.max(AuditRecord.seq))) or anchor_seq) + 1
    total = session.scalar(select(func.count()).where(AuditRecord.seq >= start)) or 0

    columns = AuditRecord.__table__.c
    expected, checked, first, head = start, 0, None, None
    while True:
        rows = (
            session.execute(
                select(AuditRecord.__table__)
                .where(columns.seq >= expected)
                .order_by(columns.seq)
                .limit(_BATCH)
            )
            .mappings()
            .all()
        )
        for row in rows:
            seq = int(row["seq"])
            found: ChainProblem | None = None
            if seq > expected:
                found = _removed(expected, seq - 1, f"the chain jumps from {expected - 1} to {seq}")
            elif expected_prev is not None and row["prev_hash"] != expected_prev:
                found = ChainProblem(
                    kind=ProblemKind.inserted,
                    seq=seq,
                    message=f"record {seq} does not follow record {seq - 1}: it was inserted, "
                    f"or record {seq - 1} was rewritten with a recomputed hash",
                )
            elif record_hash(row) != row["hash"]:
                found = ChainProblem(
                    kind=ProblemKind.changed,
                    seq=seq,
                    message=f"record {seq} was changed: its content does not match its hash "
                    "(or it was inserted by hand with a made-up hash)",
                )
            elif seq in heads and heads[seq].hash != row["hash"]:
                found = ChainProblem(
                    kind=ProblemKind.changed,
                    seq=seq,
                    message=f"record {seq} was rewritten: it differs from the signed "
                    f"{_describe(heads[seq])}",
                )
            if found is not None:
                return report(checked, first, expected - 1 if checked else None, head, found)
            first = seq if first is None else first
            checked += 1
            expected, expected_prev, head = seq + 1, row["hash"], row["hash"]
        if on_progress is not None:
            on_progress(checked, total)
        if len(rows) < _BATCH:
            break
    last = expected - 1 if checked else None
    beyond = sorted(s for s in heads if s >= expected)
    if beyond:
        return report(
            checked,
            first,
            last,
            head,
            _removed(
                expected,
                beyond[-1],
                f"the signed {_describe(heads[beyond[-1]])} names record "
                f"{beyond[-1]}, and the chain ends at {expected - 1}",
            ),
        )
    return report(checked, first, last, head)
