"""Decision records and replay: what a candidate bundle would have decided.

Every decision is stored with the exact input it was made on (``record_decision``).
``replay_decisions`` re-evaluates recorded inputs from a time window against another
engine (loaded with a candidate bundle) and reports which images would now be denied
and which would now be allowed, so an author sees the impact before activating.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.audit.chain import lock_chain
from app.audit.inputs import InputReader, store_input_value
from app.db.models import Decision
from app.errors import Error, InputError
from app.policy.decision import PolicyDecision
from app.policy.engines import PolicyEngine
from app.policy.input import PolicyInput

MAX_REPLAYED = 100_000
_SPAN = re.compile(r"^(\d+)([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def record_decision(
    session: Session,
    *,
    policy_input: PolicyInput,
    decision: PolicyDecision,
    policy_version: int | None,
) -> Decision:
    """Store ``decision`` with its input (once per distinct content, under the chain lock
    as every input is: see ``app.audit.inputs``), for replay; returns the row."""
    lock_chain(session)
    row = Decision(
        entrypoint=policy_input.entrypoint.value,
        image=policy_input.image.reference,
        digest=policy_input.image.digest,
        allowed=decision.allow,
        result=decision.model_dump(mode="json"),
        input_hash=store_input_value(session, policy_input.to_rego()),
        policy_version=policy_version,
    )
    session.add(row)
    session.flush()
    return row


def parse_since(text: str) -> dt.timedelta:
    """``30m``, ``12h``, ``7d``, ``2w`` as a time span; InputError otherwise."""
    match = _SPAN.match(text.strip())
    if not match or int(match.group(1)) == 0:
        raise InputError(f"--since {text!r} is not a span like 30m, 12h, 7d or 2w")
    return dt.timedelta(seconds=int(match.group(1)) * _UNIT_SECONDS[match.group(2)])


class ReplayChange(BaseModel):
    model_config = ConfigDict(frozen=True)

    decision_id: int
    entrypoint: str
    image: str
    recorded_at: dt.datetime
    was_allowed: bool
    now_allowed: bool
    denials: list[str] = Field(default_factory=list, description="Codes of the new denials.")
    error: str | None = None


class ReplayReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    replayed: int
    unchanged: int
    newly_denied: list[ReplayChange]
    newly_allowed: list[ReplayChange]


def _replay_one(
    engine: PolicyEngine, recorded: dict[str, Any] | None
) -> tuple[bool, list[str], str | None]:
    """What ``engine`` decides on a recorded input: allowed, denial codes, error."""
    try:
        outcome = engine.decide(PolicyInput.from_json(recorded))
    except Error as e:
        return False, [], f"{e.code}: {e.message}"
    return outcome.allow, outcome.codes, None


def replay_decisions(
    session: Session, *, engine: PolicyEngine, since: dt.timedelta
) -> ReplayReport:
    """Re-evaluate decisions recorded in the last ``since`` with ``engine``.

    Each recorded input is evaluated as it was (its ``evaluated_at`` included, so
    expiries and scan ages are judged at the original time). A record the candidate
    cannot decide counts as newly denied, with the error: that is what enforcement
    would do.
    """
    cutoff = dt.datetime.now(dt.UTC) - since
    rows = session.scalars(
        select(Decision)
        .where(Decision.created_at >= cutoff)
        .order_by(Decision.created_at, Decision.id)
        .limit(MAX_REPLAYED)
    )
    replayed = unchanged = 0
    newly_denied: list[ReplayChange] = []
    newly_allowed: list[ReplayChange] = []
    inputs = InputReader(session)
    for row in rows:
        replayed += 1
        now_allowed, denials, error = _replay_one(engine, inputs.load(row.input_hash))
        if now_allowed == row.allowed:
            unchanged += 1
            continue
        change = ReplayChange(
            decision_id=row.id,
            entrypoint=row.entrypoint,
            image=row.image,
            recorded_at=row.created_at,
            was_allowed=row.allowed,
            now_allowed=now_allowed,
            denials=denials,
            error=error,
        )
        (newly_allowed if now_allowed else newly_denied).append(change)
    return ReplayReport(
        replayed=replayed,
        unchanged=unchanged,
        newly_denied=newly_denied,
        newly_allowed=newly_allowed,
    )
