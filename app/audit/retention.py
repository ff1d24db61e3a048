"""Retention: purge records past the retention period behind a signed checkpoint.

``purge_expired`` deletes, under the chain lock, the longest run of oldest records whose
times are all before the cutoff (in ``seq`` order, so the remaining chain stays one piece
even if a replica's clock once ran behind), writes a signed purge checkpoint naming the last
deleted record, records the purge itself in the chain (``audit.purge``) and deletes stored
inputs no remaining record names. ``run_audit_retention`` is the one call for the worker:
the purge, then a signed head checkpoint (see ``app.audit.checkpoints``).

Decision rows (``decisions``: what ``sealgate policy replay`` and verdicts read) go too,
``DECISION_MARGIN`` after the records they were written with (a decision and its audit
record share a transaction and a clock, but records go oldest first by sequence, so a
record written by a replica whose clock ran behind outlives its time: the margin keeps
its decisions, and so its images' inputs, as long), and never while a verdict names them.
They are deleted before the chain lock is taken: no writer touches an old decision, so a
large backlog does not hold up the recorders.

Every replica's worker runs it; ``take_retention_turn`` lets one at a time do so and the
others skip their turn rather than queue behind it on the chain lock (and then find
nothing left to do).
"""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, ConfigDict
from sqlalchemy import delete, exists, func, select
from sqlalchemy.orm import Session

from app.audit.chain import HEAD_CHECKPOINT, PURGE_CHECKPOINT, append_audit, chain_head, lock_chain
from app.audit.checkpoints import CheckpointKey, write_checkpoint
from app.audit.entry import AuditEntry, AuditKind
from app.audit.inputs import purge_unreferenced_inputs
from app.db.models import AuditCheckpoint, AuditRecord, AuditSubject, Decision, ImageVerdict
from app.errors import AuditError

# Advisory-lock id of the retention run ("sgretain"): held by the replica purging.
RETENTION_LOCK = 0x736772657461696E
# How much longer than the audit records a decision row is kept (see the module doc).
DECISION_MARGIN = dt.timedelta(days=1)


def take_retention_turn(session: Session) -> bool:
    """Whether this transaction may run retention now: False while another replica's
    transaction holds the turn (PostgreSQL: a transaction-scoped advisory lock tried, not
    waited for). On SQLite one process writes at a time anyway: always True."""
    if session.get_bind().dialect.name != "postgresql":
        return True
    return bool(session.scalar(select(func.pg_try_advisory_xact_lock(RETENTION_LOCK))))


class PurgeResult(BaseModel):
    """What a retention run did."""

    model_config = ConfigDict(frozen=True)

    cutoff: dt.datetime
    purged: int
    through_seq: int | None
    inputs_purged: int
    head_seq: int
    decisions_purged: int = 0
    # False when no key-encryption key is configured: the head is then left unsigned.
    head_signed: bool = True


def _last_purged_seq(session: Session) -> int:
    return int(
        session.scalar(
            select(func.max(AuditCheckpoint.seq)).where(AuditCheckpoint.kind == PURGE_CHECKPOINT)
        )
        or 0
    )


def purge_expired(
    session: Session,
    *,
    key: CheckpointKey | None,
    retention_days: int,
    now: dt.datetime,
    actor: str = "retention",
) -> PurgeResult:
    """Delete records older than ``retention_days`` before ``now`` (see the module docstring)
    in the caller's transaction; return what was deleted.

    Without a ``key`` nothing past retention can be vouched for: when there is something
    to purge, ``AuditError`` (``config.no_kek``) says so and the caller's transaction
    must roll back; when there is nothing, the run is a no-op."""
    cutoff = now - dt.timedelta(days=retention_days)
    decisions = purge_expired_decisions(session, before=cutoff - DECISION_MARGIN)
    lock_chain(session)
    head_seq, _ = chain_head(session)
    first_kept = session.scalar(select(func.min(AuditRecord.seq)).where(AuditRecord.time >= cutoff))
    through = head_seq if first_kept is None else first_kept - 1
    purged = 0
    last_purged = _last_purged_seq(session)
    if through > last_purged:
        through_hash = session.scalar(select(AuditRecord.hash).where(AuditRecord.seq == through))
        if through_hash is not None:
            if key is None:
                raise AuditError(
                    f"{through - last_purged} audit record(s) are past the {retention_days}-day "
                    "retention period and are kept: a purge is signed with a key derived from "
                    "the key-encryption key; set SEALGATE_KEY_ENCRYPTION_KEY or "
                    "SEALGATE_KEY_ENCRYPTION_KEY_FILE",
                    code="config.no_kek",
                )
            session.execute(delete(AuditSubject).where(AuditSubject.seq <= through))
            result = session.execute(delete(AuditRecord).where(AuditRecord.seq <= through))
            purged = int(result.rowcount or 0)  # type: ignore[attr-defined]
            # Head checkpoints inside the purged range vouch for nothing that is left.
            session.execute(
                delete(AuditCheckpoint).where(
                    AuditCheckpoint.kind == HEAD_CHECKPOINT, AuditCheckpoint.seq <= through
                )
            )
            write_checkpoint(
                session,
                key=key,
                kind=PURGE_CHECKPOINT,
                seq=through,
                hash=through_hash,
                at=now,
                cutoff=cutoff,
            )
            append_audit(
                session,
                [
                    AuditEntry(
                        kind=AuditKind.audit_purge,
                        source="retention",
                        actor=actor,
                        time=now,
                        details={
                            "purged": purged,
                            "through_seq": through,
                            "cutoff": cutoff.isoformat(),
                            "retention_days": retention_days,
                        },
                    )
                ],
            )
    inputs = purge_unreferenced_inputs(session, cutoff=cutoff)
    return PurgeResult(
        cutoff=cutoff,
        purged=purged,
        through_seq=through if purged else None,
        inputs_purged=inputs,
        head_seq=chain_head(session)[0],
        decisions_purged=decisions,
    )


def purge_expired_decisions(session: Session, *, before: dt.datetime) -> int:
    """Delete the decision rows made before ``before`` that no verdict names; return how
    many (their inputs go with the inputs no record names)."""
    named_by_verdict = exists().where(ImageVerdict.decision_id == Decision.id)
    result = session.execute(
        delete(Decision)
        .where(Decision.created_at < before, ~named_by_verdict)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def checkpoint_head(session: Session, *, key: CheckpointKey, now: dt.datetime) -> int | None:
    """Sign the current head unless it is already signed; return its seq (None if empty)."""
    lock_chain(session)
    seq, hash_ = chain_head(session)
    if seq == 0:
        return None
    signed = session.scalar(
        select(AuditCheckpoint.id).where(AuditCheckpoint.seq == seq, AuditCheckpoint.hash == hash_)
    )
    if signed is None:
        write_checkpoint(session, key=key, kind=HEAD_CHECKPOINT, seq=seq, hash=hash_, at=now)
    return seq


def run_audit_retention(
    session: Session,
    *,
    kek: bytes | None,
    retention_days: int,
    now: dt.datetime | None = None,
) -> PurgeResult:
    """The worker's periodic call: purge what is past retention, then sign the head.

    Without a key-encryption key (the embedded defaults) there is no checkpoint key: the
    head is left unsigned (``head_signed`` False), and when records are past retention
    ``AuditError`` (``config.no_kek``) is raised, since nothing may be deleted that a
    checkpoint could not vouch for.
    """
    key = CheckpointKey.from_kek(kek) if kek is not None else None
    moment = now or dt.datetime.now(dt.UTC)
    result = purge_expired(session, key=key, retention_days=retention_days, now=moment)
    if key is None:
        return result.model_copy(update={"head_signed": False})
    checkpoint_head(session, key=key, now=moment)
    return result
