"""What the worker does with one claimed inbox event.

- ``push``: unless the pushed manifest is a referrer or signature (``app.hooks.own``), decide
  the pinned image at the ``push`` entry point (``decide_push``), then store the verdict and
  the intents of its actions in one transaction, fenced by the claim; run the actions
  (``app.hooks.actions``); mark the event done.
- ``scan_completed`` (Harbor): store the scan (``app.hooks.harbor_api``), then as ``push``:
  the re-decision's verdict is newer, so it wins.
- ``delete``: mark the digest's verdicts deleted.
- ``scan_failed`` / ``scan_stopped``: recorded in the event's outcome; nothing else.

Exactly once per event: a verdict row is unique per inbox event, and it is written in the
same transaction that checks the claim token. A retry after a crash finds the verdict and
goes on with the actions that are still open.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import select

from app.db.models import ActionStatus, ImageVerdict, InboxStatus
from app.db.session import session_scope
from app.errors import Error
from app.hooks import actions
from app.hooks.events import EventAction, RegistryEvent
from app.hooks.inbox import Claimed, check_claim, finish
from app.hooks.own import is_referrer_manifest
from app.hooks.verdicts import PushDecision, decide_push, mark_deleted
from app.oci.refs import ImageRef
from app.services import Services

log = logging.getLogger(__name__)

# How long one push decision may take (the engine's share of it is capped separately).
PUSH_DECISION_SECONDS = 5.0


class Decide(Protocol):
    def __call__(
        self,
        services: Services,
        *,
        image: str,
        event_id: str,
        actor: str | None,
        deadline_seconds: float,
    ) -> Awaitable[PushDecision]: ...


async def process_event(
    services: Services,
    claimed: Claimed,
    *,
    decide: Decide = decide_push,
    webhook: actions.WebhookSender | None = None,
) -> dict[str, Any]:
    """Process ``claimed`` to its end (done or ignored); return its outcome.

    Raises what failed (the worker retries) and LostClaim when another worker took it.
    """
    event = claimed.event
    if event.action in (EventAction.scan_failed, EventAction.scan_stopped):
        outcome: dict[str, Any] = {
            "recorded": event.action.value,
            "scan_status": event.scan.status if event.scan else None,
        }
        await _finish(services, claimed, InboxStatus.done, outcome)
        return outcome
    if event.action is EventAction.delete:
        return await _delete(services, claimed)
    # A first attempt cannot have stored anything yet; a retry looks for what it did.
    found = None
    if claimed.attempts > 1:
        found = await asyncio.to_thread(_stored_verdict, services, claimed.id)
    if found is None:
        if event.action is EventAction.push and await _is_referrer(services, event):
            outcome = {"ignored": "the manifest is a signature, attestation or referrer"}
            await _finish(services, claimed, InboxStatus.ignored, outcome)
            return outcome
        if event.action is EventAction.scan_completed:
            from app.hooks.harbor_api import store_registry_scan

            await store_registry_scan(services, event)
        decision = await decide(
            services,
            image=event.image,
            event_id=event.event_id,
            actor=event.actor,
            deadline_seconds=PUSH_DECISION_SECONDS,
        )
        verdict, started = await asyncio.to_thread(_store_verdict, services, claimed, decision)
    else:
        verdict = found
        started = await asyncio.to_thread(_restart_actions, services, claimed)
    outcome = {"verdict": verdict.id, "allowed": verdict.allowed}
    sender = webhook or actions.WebhookSender(services.settings)
    try:
        results = [
            await _run_action(services, claimed, verdict, action, sender) for action in started
        ]
    finally:
        if webhook is None:
            await sender.aclose()

    def _done() -> None:
        with session_scope(services.sessions) as session:
            for action_id, result, status in results:
                actions.complete(session, action_id, result=result, status=status)
            finish(session, claimed, status=InboxStatus.done, outcome=outcome)

    await asyncio.to_thread(_done)
    return outcome


async def _finish(
    services: Services, claimed: Claimed, status: InboxStatus, outcome: dict[str, Any]
) -> None:
    def _write() -> None:
        with session_scope(services.sessions) as session:
            finish(session, claimed, status=status, outcome=outcome)

    await asyncio.to_thread(_write)


async def _delete(services: Services, claimed: Claimed) -> dict[str, Any]:
    event = claimed.event

    def _write() -> dict[str, Any]:
        with session_scope(services.sessions) as session:
            check_claim(session, claimed)
            marked = mark_deleted(session, name=event.name, digest=event.digest or "")
            outcome = {"verdicts_marked_deleted": marked}
            finish(session, claimed, status=InboxStatus.done, outcome=outcome)
            return outcome

    return await asyncio.to_thread(_write)


async def _is_referrer(services: Services, event: RegistryEvent) -> bool:
    """Whether the pushed manifest is a referrer/signature. A manifest that cannot be read
    is not ignored: the decision then fails closed and says why."""
    try:
        manifest = await services.registry.get_manifest(ImageRef.parse(event.image))
    except Error:
        return False
    return is_referrer_manifest(manifest.json)


def _stored_verdict(services: Services, inbox_event_id: int) -> ImageVerdict | None:
    with session_scope(services.sessions) as session:
        return session.scalar(
            select(ImageVerdict).where(ImageVerdict.inbox_event_id == inbox_event_id)
        )


@dataclass(frozen=True)
class _Started:
    """An action about to run: its row, name and idempotency id, and the status it had."""

    id: int
    name: str
    key: str
    before: ActionStatus


def _store_verdict(
    services: Services, claimed: Claimed, decision: PushDecision
) -> tuple[ImageVerdict, list[_Started]]:
    """Store the verdict and its actions' intents, already ``started`` (one transaction,
    fenced by the claim): nothing acts before this commit."""
    event = claimed.event
    with session_scope(services.sessions) as session:
        check_claim(session, claimed)
        row = ImageVerdict(
            inbox_event_id=claimed.id,
            source=event.source.value,
            event_id=event.event_id,
            name=event.name,
            digest=decision.digest or event.digest or "",
            tag=event.tag,
            allowed=decision.allowed,
            reasons=[r.model_dump() for r in decision.reasons],
            decision_id=decision.decision_id,
            policy_version=decision.policy_version,
            trigger=event.action.value,
            actor=event.actor,
        )
        session.add(row)
        intents = actions.record_intents(
            session,
            inbox_event_id=claimed.id,
            source=event.source.value,
            event_id=event.event_id,
            actions=actions.configured_actions(services.settings, allowed=decision.allowed),
        )
        session.flush()
        return row, [
            _Started(id=a.id, name=a.action, key=a.idempotency_id, before=ActionStatus.pending)
            for a in intents
        ]


def _restart_actions(services: Services, claimed: Claimed) -> list[_Started]:
    """On a retry: the actions still open, each marked started again (fenced)."""
    with session_scope(services.sessions) as session:
        check_claim(session, claimed)
        return [
            _Started(
                id=a.id, name=a.action, key=a.idempotency_id, before=actions.start(session, a.id)
            )
            for a in actions.open_actions(session, inbox_event_id=claimed.id)
        ]


async def _run_action(
    services: Services,
    claimed: Claimed,
    verdict: ImageVerdict,
    action: _Started,
    webhook: actions.WebhookSender,
) -> tuple[int, dict[str, Any], ActionStatus]:
    """Run one started action; return (row id, result, final status) to record."""
    event = claimed.event
    body = actions.verdict_body(
        image=f"{verdict.name}@{verdict.digest}",
        source=event.source.value,
        event_id=event.event_id,
        allowed=verdict.allowed,
        reasons=list(verdict.reasons),
        decision_id=verdict.decision_id,
        policy_version=verdict.policy_version,
        decided_at=verdict.decided_at,
    )
    if action.name == actions.ActionName.attestation:
        if action.before is ActionStatus.started:
            # Check-before-sign: an earlier attempt started signing and did not record the
            # result; it may have signed, so this one does not.
            note = (
                "an earlier attempt started signing and did not record its result; "
                "not signed again (at most once)"
            )
            return action.id, {"abandoned": note}, ActionStatus.abandoned
        result = await actions.sign_gate_attestation(
            services, image=ImageRef.parse(body["image"]), body=body
        )
        return action.id, result, ActionStatus.done
    result = await webhook.send(body=body, key=action.key)
    return action.id, result, ActionStatus.done
