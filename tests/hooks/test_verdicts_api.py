"""``GET /v1/images/{image}/verdicts`` and ``sealgate inbox list|retry|purge``."""

from __future__ import annotations

import json
from collections.abc import Callable
from urllib.parse import quote

from fastapi.testclient import TestClient

from app.auth.tokens import create_token
from app.db.models import InboxEvent, InboxStatus
from app.db.session import session_scope
from app.hooks.worker import Worker
from app.oci.refs import ImageRef
from app.services import Services
from tests.hooks.test_worker import FAKE, CountingDecide, push_event, rows, store

IMAGE = ImageRef.parse("127.0.0.1:5000/team/app:1.0@sha256:" + "b" * 64)


def _token(services: Services, scopes: list[str], name: str) -> dict[str, str]:
    with session_scope(services.sessions) as session:
        issued = create_token(session, name=name, scopes=scopes)
    return {"Authorization": f"Bearer {issued.token}"}


class TestVerdictsApi:
    async def test_by_reference_encoded_or_not(
        self, hook_services: Services, make_client: Callable[..., TestClient]
    ) -> None:
        store(hook_services, push_event(IMAGE, event_id="p1"))
        await Worker(services=hook_services, decide=CountingDecide(allowed=False)).run_once()
        client = make_client()
        headers = _token(hook_services, ["verify:127.0.0.1:5000/team/*"], "reader")
        pinned = f"127.0.0.1:5000/team/app@{IMAGE.digest}"
        for path in (
            pinned,
            quote(pinned, safe=""),
            "127.0.0.1:5000/team/app:1.0",
            "127.0.0.1:5000/team/app",
        ):
            reply = client.get(f"/v1/images/{path}/verdicts", headers=headers)
            assert reply.status_code == 200, (path, reply.text)
            (verdict,) = reply.json()
            assert verdict["digest"] == IMAGE.digest and verdict["allowed"] is False
            assert verdict["current"] is True and verdict["event_id"] == "p1"
        other_tag = client.get("/v1/images/127.0.0.1:5000/team/app:2.0/verdicts", headers=headers)
        assert other_tag.json() == []

    async def test_needs_verify_scope_on_the_image(
        self, hook_services: Services, make_client: Callable[..., TestClient]
    ) -> None:
        client = make_client()
        path = "/v1/images/127.0.0.1:5000/team/app/verdicts"
        assert client.get(path).status_code == 401
        wrong = _token(hook_services, ["verify:127.0.0.1:5000/other/*"], "other")
        assert client.get(path, headers=wrong).status_code == 403
        bad = client.get("/v1/images/NOT%20A%20REF/verdicts", headers=wrong)
        assert bad.status_code == 400


class TestInboxCli:
    def test_list_retry_purge(self, hook_services: Services, sealgate) -> None:
        # Port 1: nothing listens, so the real decision is a quick denial.
        store(hook_services, push_event(FAKE, event_id="p1"), push_event(FAKE, event_id="p2"))
        with session_scope(hook_services.sessions) as session:
            session.query(InboxEvent).filter(InboxEvent.event_id == "p2").update(
                {"status": InboxStatus.dead, "attempts": 8, "last_error": "gave up"}
            )
        listed = sealgate("inbox", "list", "--status", "dead")
        assert listed.exit_code == 0, listed.output
        document = json.loads(listed.stdout)
        assert document["counts"] == {"pending": 1, "dead": 1}
        assert [e["event_id"] for e in document["events"]] == ["p2"]
        assert sealgate("inbox", "list", "--status", "weird").exit_code == 1
        assert sealgate("inbox", "retry").exit_code == 1
        retried = sealgate("inbox", "retry", "--all-dead")
        assert json.loads(retried.stdout) == {"requeued": 1}
        assert {r.status for r in rows(hook_services, InboxEvent)} == {InboxStatus.pending}
        done = sealgate("worker", "--once")
        assert done.exit_code == 0, done.output
        assert {r.status for r in rows(hook_services, InboxEvent)} == {InboxStatus.done}
        assert json.loads(sealgate("inbox", "purge", "--older-than-days", "1").stdout) == {
            "purged": 0
        }
        assert json.loads(sealgate("inbox", "purge", "--older-than-days", "0").stdout) == {
            "purged": 2
        }
        assert rows(hook_services, InboxEvent) == []
