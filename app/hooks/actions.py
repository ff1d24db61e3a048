"""Actions on a push verdict, each at most once per event: a "gate passed" attestation and an
outbound webhook. Neither runs unless configured.

- **attestation** (``SEALGATE_GATE_ATTESTATION_KEY`` names a stored key; allowed verdicts
  only): an in-toto statement with predicate type ``https://sealgate.dev/gate/v1`` (the
  verdict, its decision id and policy version) about the pinned image, signed in a DSSE
  envelope inside a Sigstore bundle and pushed as a referrer, like every Sealgate signature.
  Admission can then require one signature that already implies the push gate.
- **webhook** (``SEALGATE_VERDICT_WEBHOOK_URL``): ``POST`` of the verdict as JSON, the body
  signed with HMAC-SHA256 under ``SEALGATE_VERDICT_WEBHOOK_SECRET`` in
  ``X-Sealgate-Signature: sha256=<hex>``, with ``Idempotency-Key: <source>:<event id>:webhook``;
  retried with back-off on transport errors, 429 and 5xx.

How "at most once" holds across crashes. The worker records each action's intent
(``verdict_actions`` row, unique per (event, action), status ``started``) in the transaction
that stores the verdict, and acts only after that commit; it records each result (``done``)
in the transaction that marks the event done.

- attestation: check-before-sign. Only an intent this attempt recorded is signed. A row a
  retry finds ``started`` means an earlier attempt may have signed and then died before
  recording it, so it is not signed again: it becomes ``abandoned``. At most one signature
  per event, at the price of possibly none after a crash at that instant.
- webhook: the bound is the idempotency id. A row found ``started`` is sent again with the
  same ``Idempotency-Key``, so a call made just before a crash reaches the receiver twice with
  one id; a receiver that keeps the ids it has seen acts once. Sealgate itself never sends a
  call for an event whose webhook row is ``done``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import json
import random
from enum import StrEnum
from typing import Any

import httpx
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.config import Settings
from app.db.base import utcnow
from app.db.models import ActionStatus, VerdictAction
from app.errors import ActionError
from app.oci.refs import ImageRef
from app.services import Services

GATE_PREDICATE_TYPE = "https://sealgate.dev/gate/v1"
SIGNATURE_HEADER = "X-Sealgate-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"


class ActionName(StrEnum):
    attestation = "attestation"
    webhook = "webhook"


def configured_actions(settings: Settings, *, allowed: bool) -> list[ActionName]:
    """The actions a verdict gets: the attestation for allowed verdicts, the webhook for all."""
    actions = []
    if settings.gate_attestation_key and allowed:
        actions.append(ActionName.attestation)
    if settings.verdict_webhook_url:
        actions.append(ActionName.webhook)
    return actions


def idempotency_id(*, source: str, event_id: str, action: ActionName) -> str:
    return f"{source}:{event_id}:{action.value}"


def record_intents(
    session: Session, *, inbox_event_id: int, source: str, event_id: str, actions: list[ActionName]
) -> list[VerdictAction]:
    """Record the intent of each action, already ``started`` (the caller commits before acting)."""
    rows = [
        VerdictAction(
            inbox_event_id=inbox_event_id,
            action=action.value,
            idempotency_id=idempotency_id(source=source, event_id=event_id, action=action),
            status=ActionStatus.started,
            attempts=1,
        )
        for action in actions
    ]
    session.add_all(rows)
    return rows


def open_actions(session: Session, *, inbox_event_id: int) -> list[VerdictAction]:
    """The event's actions not yet done or abandoned, in a stable order."""
    return list(
        session.scalars(
            select(VerdictAction)
            .where(
                VerdictAction.inbox_event_id == inbox_event_id,
                VerdictAction.status.in_([ActionStatus.pending, ActionStatus.started]),
            )
            .order_by(VerdictAction.id)
        )
    )


def start(session: Session, row_id: int) -> ActionStatus:
    """Move an action to ``started``; return the status it had (``pending`` or ``started``)."""
    before = session.scalar(
        select(VerdictAction.status).where(VerdictAction.id == row_id).with_for_update()
    )
    session.execute(
        update(VerdictAction)
        .where(VerdictAction.id == row_id)
        .values(status=ActionStatus.started, attempts=VerdictAction.attempts + 1)
        .execution_options(synchronize_session=False)
    )
    return ActionStatus(before) if before is not None else ActionStatus.started


def complete(
    session: Session, row_id: int, *, result: dict[str, Any], status: ActionStatus
) -> None:
    session.execute(
        update(VerdictAction)
        .where(VerdictAction.id == row_id)
        .values(status=status, result=result, done_at=utcnow())
        .execution_options(synchronize_session=False)
    )


def verdict_body(
    *,
    image: str,
    source: str,
    event_id: str,
    allowed: bool,
    reasons: list[dict[str, str]],
    decision_id: int | None,
    policy_version: int | None,
    decided_at: dt.datetime,
) -> dict[str, Any]:
    """The JSON both actions carry (the webhook's body, the attestation's predicate)."""
    return {
        "image": image,
        "allowed": allowed,
        "reasons": reasons,
        "decision_id": decision_id,
        "policy_version": policy_version,
        "event": {"source": source, "id": event_id},
        "decided_at": decided_at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def sign_body(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookSender:
    """Sends verdict calls over one HTTP client, so that a worker reuses its connections."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client: httpx.AsyncClient | None = None

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def send(self, *, body: dict[str, Any], key: str) -> dict[str, Any]:
        """POST ``body`` to the verdict webhook with retries; ActionError if it never succeeds."""
        settings = self.settings
        url = settings.verdict_webhook_url
        secret = settings.verdict_webhook_secret
        if url is None or secret is None:
            raise ActionError("the verdict webhook is not configured")
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=settings.verdict_webhook_timeout)
        data = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign_body(secret.get_secret_value(), data),
            IDEMPOTENCY_HEADER: key,
        }
        problem = "no attempt"
        for attempt in range(settings.verdict_webhook_retries + 1):
            if attempt:
                await asyncio.sleep(min(8.0, 0.25 * 2**attempt) * random.uniform(0.5, 1.0))
            try:
                reply = await self._client.post(url, content=data, headers=headers)
            except httpx.HTTPError as e:
                problem = f"{type(e).__name__}"
                continue
            if reply.status_code < 300:
                return {"status": reply.status_code, "attempts": attempt + 1}
            problem = f"HTTP {reply.status_code}"
            if reply.status_code != 429 and reply.status_code < 500:
                break
        raise ActionError(f"the verdict webhook {url} refused the call: {problem}")


def gate_statement(*, image: ImageRef, body: dict[str, Any]) -> bytes:
    """The in-toto statement of a passed gate about the pinned ``image``."""
    from app.signing.payloads import STATEMENT_TYPE

    if image.digest is None:
        raise ValueError("a gate statement needs an image pinned to a digest")
    algorithm, _, encoded = image.digest.partition(":")
    statement = {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": image.name, "digest": {algorithm: encoded}}],
        "predicateType": GATE_PREDICATE_TYPE,
        "predicate": body,
    }
    return json.dumps(statement, separators=(",", ":"), sort_keys=True).encode()


async def sign_gate_attestation(
    services: Services, *, image: ImageRef, body: dict[str, Any]
) -> dict[str, Any]:
    """Sign and push the gate attestation with the configured key; return its digest."""
    from app.db.session import session_scope
    from app.signing.bundles import key_dsse_bundle
    from app.signing.keys import load_signer
    from app.signing.publish import publish_bundle
    from app.signing.signers import KeySigner

    key_name = services.settings.gate_attestation_key
    if key_name is None:
        raise ActionError("no SEALGATE_GATE_ATTESTATION_KEY is configured")

    def _signer() -> KeySigner:
        with session_scope(services.sessions) as session:
            return load_signer(
                session, settings=services.settings, name=key_name, image_name=image.name
            )

    signer = await asyncio.to_thread(_signer)
    bundle = key_dsse_bundle(statement=gate_statement(image=image, body=body), signer=signer)
    digest = await publish_bundle(
        services.registry, image=image, bundle=bundle, predicate_type=GATE_PREDICATE_TYPE
    )
    return {"attestation_digest": digest, "key": key_name}
