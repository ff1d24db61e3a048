"""Actions on a verdict: the signed outbound webhook and the "gate passed" attestation,
each at most once per event (the webhook bounded by its idempotency id)."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import update

from app.db.base import utcnow
from app.db.models import ActionStatus, InboxEvent, VerdictAction
from app.db.session import session_scope
from app.enforce.verify import verify_image
from app.hooks.actions import GATE_PREDICATE_TYPE
from app.hooks.worker import Worker
from app.services import Services
from app.signing.keys import generate_key
from app.signing.signers import Algorithm
from tests.fixtures.images import push_random_image
from tests.hooks.conftest import with_settings
from tests.hooks.receiver import VerdictReceiver
from tests.hooks.test_worker import FAKE, CountingDecide, push_event, rows, store


class TestWebhook:
    async def test_each_verdict_is_sent_once_signed_with_its_idempotency_id(
        self, hook_services: Services
    ) -> None:
        with VerdictReceiver(secret="s3cret") as receiver:
            hook_services.settings = with_settings(
                hook_services.settings,
                verdict_webhook_url=receiver.url,
                verdict_webhook_secret="s3cret",
            )
            store(hook_services, push_event(FAKE, event_id="p1"), push_event(FAKE, event_id="p2"))
            worker = Worker(services=hook_services, decide=CountingDecide(allowed=False))
            await worker.run_once()
            store(hook_services, push_event(FAKE, event_id="p1"))  # redelivery
            await worker.run_once()
        assert receiver.keys() == {"distribution:p1:webhook": 1, "distribution:p2:webhook": 1}
        assert all(c.signed for c in receiver.calls)
        body = receiver.calls[0].body
        assert body["allowed"] is False and body["image"] == str(FAKE)
        assert body["reasons"] == [{"code": "test.denied", "message": "denied"}]
        assert {a.status for a in rows(hook_services, VerdictAction)} == {ActionStatus.done}

    async def test_a_failing_receiver_is_retried_within_the_attempt(
        self, hook_services: Services
    ) -> None:
        with VerdictReceiver(secret="s3cret", fail_first=2) as receiver:
            hook_services.settings = with_settings(
                hook_services.settings,
                verdict_webhook_url=receiver.url,
                verdict_webhook_secret="s3cret",
                verdict_webhook_retries=3,
            )
            store(hook_services, push_event(FAKE, event_id="p1"))
            await Worker(services=hook_services, decide=CountingDecide()).run_once()
        assert receiver.keys() == {"distribution:p1:webhook": 3}  # one id for every try
        (action,) = rows(hook_services, VerdictAction)
        assert action.status is ActionStatus.done and action.result == {
            "status": 200,
            "attempts": 3,
        }

    async def test_a_receiver_that_keeps_failing_fails_the_event(
        self, hook_services: Services
    ) -> None:
        with VerdictReceiver(secret="other") as receiver:  # signatures never match: 401
            hook_services.settings = with_settings(
                hook_services.settings,
                verdict_webhook_url=receiver.url,
                verdict_webhook_secret="s3cret",
            )
            store(hook_services, push_event(FAKE, event_id="p1"))
            await Worker(services=hook_services, decide=CountingDecide()).run_once()
        (event,) = rows(hook_services, InboxEvent)
        assert event.status.value == "pending" and "HTTP 401" in (event.last_error or "")
        (action,) = rows(hook_services, VerdictAction)
        assert action.status is ActionStatus.started  # re-sent with the same id next attempt


class TestGateAttestation:
    async def test_an_allowed_verdict_is_attested_once(
        self, hook_services: Services, unique_repo: Callable[[str], str]
    ) -> None:
        with session_scope(hook_services.sessions) as session:
            key = generate_key(
                session,
                settings=hook_services.settings,
                name="gate",
                algorithm=Algorithm.ecdsa_p256,
                scopes=["**"],
            )
        hook_services.settings = with_settings(hook_services.settings, gate_attestation_key="gate")
        image, _ = await push_random_image(hook_services.registry, unique_repo("attest"))
        store(hook_services, push_event(image, event_id="p1"))
        await Worker(services=hook_services, decide=CountingDecide(allowed=True)).run_once()
        (action,) = rows(hook_services, VerdictAction)
        assert action.status is ActionStatus.done and action.result["key"] == "gate"
        report = await verify_image(hook_services, image=image, key_pem=key.public_key_pem)
        gate = [a for a in report.attestations if a.predicate_type == GATE_PREDICATE_TYPE]
        assert len(gate) == 1 and gate[0].predicate["allowed"] is True

    async def test_a_denied_verdict_is_not_attested(self, hook_services: Services) -> None:
        hook_services.settings = with_settings(hook_services.settings, gate_attestation_key="gate")
        store(hook_services, push_event(FAKE, event_id="p1"))
        await Worker(services=hook_services, decide=CountingDecide(allowed=False)).run_once()
        assert rows(hook_services, VerdictAction) == []

    async def test_signing_interrupted_after_it_started_is_not_repeated(
        self, hook_services: Services
    ) -> None:
        """Check-before-sign: an intent found 'started' (a crash mid-signing) is abandoned."""
        hook_services.settings = with_settings(hook_services.settings, gate_attestation_key="gate")
        store(hook_services, push_event(FAKE, event_id="p1"))
        decide = CountingDecide(allowed=True)
        worker = Worker(services=hook_services, decide=decide)
        await worker.run_once()  # no key "gate" stored: signing fails after 'started'
        (action,) = rows(hook_services, VerdictAction)
        assert action.status is ActionStatus.started
        with session_scope(hook_services.sessions) as session:
            session.execute(update(InboxEvent).values(next_attempt_at=utcnow()))
        await worker.run_once()
        (action,) = rows(hook_services, VerdictAction)
        assert (
            action.status is ActionStatus.abandoned and "at most once" in action.result["abandoned"]
        )
        assert len(decide.calls) == 1  # the verdict was not decided again
