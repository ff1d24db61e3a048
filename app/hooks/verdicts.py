"""The push gate's one call into the decision pipeline, and the verdicts it stores.

``decide_push`` is the adapter: the worker never calls ``app.enforce`` anywhere else, so the
pipeline can change behind it. It runs ``app.enforce.pipeline.decide_and_store`` at the
``push`` entry point (which records the decision with its input) and returns the part a
verdict keeps.

A verdict is one ``image_verdicts`` row per deciding inbox event; the newest row of a
(repository, digest) is the one in force (``current``). ``verdicts_for`` answers
``GET /v1/images/{image}/verdicts``.
"""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.db.base import utcnow
from app.db.models import ImageVerdict
from app.oci.refs import ImageRef
from app.services import Services


class Reason(BaseModel):
    model_config = ConfigDict(frozen=True)

    code: str
    message: str


class PushDecision(BaseModel):
    """What the decision pipeline said about one pushed digest."""

    model_config = ConfigDict(frozen=True)

    allowed: bool
    digest: str | None
    reasons: tuple[Reason, ...] = ()
    warnings: tuple[Reason, ...] = ()
    decision_id: int | None = None
    policy_version: int | None = None


async def decide_push(
    services: Services,
    *,
    image: str,
    event_id: str,
    actor: str | None,
    deadline_seconds: float,
) -> PushDecision:
    """Decide ``image`` (pinned) at the ``push`` entry point within ``deadline_seconds``,
    through the decision pipeline; the verdict keeps the id of the committed record."""
    from app.enforce.deadline import Deadline
    from app.enforce.outcome import Actor, DecisionRequest
    from app.enforce.pipeline import decide_and_store
    from app.policy.input import Entrypoint

    request = DecisionRequest(
        image=image,
        entrypoint=Entrypoint.push,
        deadline=Deadline(deadline_seconds),
        actor=Actor(kind="registry", name=actor),
        source=event_id,
    )
    outcome, decision_id = await decide_and_store(request, services.decisions)
    decision = outcome.decision
    return PushDecision(
        allowed=decision.allow,
        digest=outcome.digest,
        reasons=tuple(Reason(code=f.code, message=f.message) for f in decision.deny),
        warnings=tuple(Reason(code=f.code, message=f.message) for f in decision.warn),
        decision_id=decision_id,
        policy_version=outcome.policy_version,
    )


class Verdict(BaseModel):
    """One stored verdict, as ``GET /v1/images/{image}/verdicts`` shows it."""

    model_config = ConfigDict(frozen=True)

    id: int
    name: str
    digest: str
    tag: str | None
    allowed: bool
    reasons: list[dict[str, str]] = Field(default_factory=list)
    decision_id: int | None
    policy_version: int | None
    trigger: str = Field(description="The event that decided it: push or scan_completed.")
    source: str
    event_id: str
    actor: str | None
    decided_at: dt.datetime
    deleted_at: dt.datetime | None
    current: bool = Field(description="True for the newest verdict of its digest.")

    @classmethod
    def from_row(cls, row: ImageVerdict, *, current: bool) -> Verdict:
        return cls(
            id=row.id,
            name=row.name,
            digest=row.digest,
            tag=row.tag,
            allowed=row.allowed,
            reasons=list(row.reasons),
            decision_id=row.decision_id,
            policy_version=row.policy_version,
            trigger=row.trigger,
            source=row.source,
            event_id=row.event_id,
            actor=row.actor,
            decided_at=row.decided_at,
            deleted_at=row.deleted_at,
            current=current,
        )


def verdicts_for(
    session: Session, ref: ImageRef, *, by_tag: bool, limit: int = 100
) -> list[Verdict]:
    """Verdicts of ``ref``'s repository, newest first: of its digest when the reference is
    pinned, else of its tag when ``by_tag`` (the reference wrote one), else of every digest."""
    query = (
        select(ImageVerdict)
        .where(ImageVerdict.name == ref.name)
        .order_by(ImageVerdict.decided_at.desc(), ImageVerdict.id.desc())
        .limit(limit)
    )
    if ref.digest:
        query = query.where(ImageVerdict.digest == ref.digest)
    elif by_tag and ref.tag:
        query = query.where(ImageVerdict.tag == ref.tag)
    seen: set[str] = set()
    result = []
    for row in session.scalars(query):
        result.append(Verdict.from_row(row, current=row.digest not in seen))
        seen.add(row.digest)
    return result


def mark_deleted(session: Session, *, name: str, digest: str) -> int:
    """Mark every verdict of ``digest`` in ``name`` deleted; return how many."""
    result = session.execute(
        update(ImageVerdict)
        .where(
            ImageVerdict.name == name,
            ImageVerdict.digest == digest,
            ImageVerdict.deleted_at.is_(None),
        )
        .values(deleted_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
