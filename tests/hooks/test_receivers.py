"""``POST /hooks/distribution`` and ``/hooks/harbor``: who may deliver, what is stored, refused.

Every refusal is shown to store nothing and to be counted in
``sealgate_hook_rejected_total{source,reason}``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.hooks.conftest import HOOK_SECRET

V1 = "application/vnd.docker.distribution.events.v1+json"
V2 = "application/vnd.docker.distribution.events.v2+json"


def _push_event(event_id: str, *, repository: str = "team/app", digest: str = "a" * 64) -> dict:
    return {
        "id": event_id,
        "action": "push",
        "target": {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": f"sha256:{digest}",
            "repository": repository,
            "tag": "1.0",
        },
        "request": {"host": "127.0.0.1:5000"},
        "actor": {"name": "ci"},
    }


def envelope(*ids: str) -> bytes:
    return json.dumps({"events": [_push_event(i) for i in ids]}).encode()


def deliver(
    client: TestClient,
    body: bytes,
    *,
    path: str = "/hooks/distribution",
    auth: str | None = f"Bearer {HOOK_SECRET}",
    content_type: str = V1,
) -> object:
    headers = {"Content-Type": content_type}
    if auth is not None:
        headers["Authorization"] = auth
    return client.post(path, content=body, headers=headers)


def rejected(client: TestClient, source: str, reason: str) -> float:
    text = client.get("/metrics").text
    needle = f'sealgate_hook_rejected_total{{reason="{reason}",source="{source}"}} '
    for line in text.splitlines():
        if line.startswith(needle):
            return float(line.split()[-1])
    return 0.0


class TestAccepted:
    @pytest.mark.parametrize("content_type", [V1, V2, "application/json"])
    def test_envelope_is_stored_then_acknowledged(
        self,
        make_client: Callable[..., TestClient],
        inbox_count: Callable[[], int],
        content_type: str,
    ) -> None:
        client = make_client()
        reply = deliver(client, envelope("e1", "e2"), content_type=content_type)
        assert reply.status_code == 200, reply.text
        assert reply.json() == {"stored": 2, "duplicates": 0, "ignored": 0, "unreadable": []}
        assert inbox_count() == 2

    def test_the_plain_secret_is_accepted_too(
        self, make_client: Callable[..., TestClient], inbox_count: Callable[[], int]
    ) -> None:
        assert deliver(make_client(), envelope("e1"), auth=HOOK_SECRET).status_code == 200
        assert inbox_count() == 1

    def test_redelivery_is_deduplicated(
        self, make_client: Callable[..., TestClient], inbox_count: Callable[[], int]
    ) -> None:
        client = make_client()
        deliver(client, envelope("e1", "e2"))
        again = deliver(client, envelope("e2", "e3", "e3"))
        assert again.json()["stored"] == 1
        assert again.json()["duplicates"] == 2
        assert inbox_count() == 3

    def test_an_unknown_event_does_not_fail_the_others(
        self, make_client: Callable[..., TestClient], inbox_count: Callable[[], int]
    ) -> None:
        body = json.dumps(
            {"events": [_push_event("good"), {"id": "odd", "action": "teleport", "target": {}}, 42]}
        ).encode()
        reply = deliver(make_client(), body)
        assert reply.status_code == 200
        assert reply.json()["stored"] == 1
        assert reply.json()["ignored"] == 1
        assert len(reply.json()["unreadable"]) == 1
        assert inbox_count() == 1

    def test_harbor_payloads_in_both_formats(
        self,
        make_client: Callable[..., TestClient],
        inbox_count: Callable[[], int],
        asset: Callable[[str], Path],
    ) -> None:
        client = make_client()
        for name, content_type in (
            ("registry-harbor/zulip_PUSH_ARTIFACT.json", "application/json"),
            (
                "registry-harbor/harbor_docs_SCANNING_COMPLETED_cloudevents.json",
                "application/cloudevents+json",
            ),
        ):
            reply = deliver(
                client, asset(name).read_bytes(), path="/hooks/harbor", content_type=content_type
            )
            assert reply.status_code == 200, reply.text
        assert inbox_count() == 2

    def test_per_source_secret_overrides_the_common_one(
        self, make_client: Callable[..., TestClient], inbox_count: Callable[[], int]
    ) -> None:
        client = make_client(hook_secret_harbor="harbor-only")
        body = b'{"type": "PUSH_ARTIFACT", "event_data": {"resources": []}}'
        harbor = {"path": "/hooks/harbor", "content_type": "application/json"}
        assert deliver(client, body, **harbor).status_code == 401
        assert deliver(client, body, auth="harbor-only", **harbor).status_code == 200
        assert deliver(client, envelope("d1")).status_code == 200  # distribution: common secret


class TestRefused:
    @pytest.mark.parametrize(
        "auth",
        [
            None,
            "",
            "Bearer wrong",
            f"Basic {HOOK_SECRET}",
            f"{HOOK_SECRET}x",
            f"bearer  {HOOK_SECRET}",
        ],
    )
    def test_wrong_or_missing_secret(
        self,
        make_client: Callable[..., TestClient],
        inbox_count: Callable[[], int],
        auth: str | None,
    ) -> None:
        client = make_client()
        reply = deliver(client, envelope("e1"), auth=auth)
        assert reply.status_code == 401
        assert reply.json()["error"]["code"] == "hook.unauthenticated"
        assert inbox_count() == 0
        assert rejected(client, "distribution", "unauthenticated") == 1

    def test_no_secret_configured_refuses_everything(
        self, make_client: Callable[..., TestClient], inbox_count: Callable[[], int]
    ) -> None:
        client = make_client(hook_secret=None)
        reply = deliver(client, envelope("e1"), auth="Bearer ")
        assert reply.status_code == 401
        assert "no SEALGATE_HOOK_SECRET" in reply.json()["error"]["message"]
        assert inbox_count() == 0

    def test_address_outside_the_allow_list(
        self, make_client: Callable[..., TestClient], inbox_count: Callable[[], int]
    ) -> None:
        # The in-process client's peer is "testclient", on no network.
        client = make_client(hook_allowed_cidrs=["10.0.0.0/8"])
        reply = deliver(client, envelope("e1"))
        assert reply.status_code == 403
        assert reply.json()["error"]["code"] == "hook.address_refused"
        assert inbox_count() == 0
        assert rejected(client, "distribution", "address") == 1

    def test_per_source_allow_list(
        self, make_client: Callable[..., TestClient], inbox_count: Callable[[], int]
    ) -> None:
        client = make_client(hook_allowed_cidrs_harbor=["192.0.2.0/24"])
        assert deliver(client, envelope("e1")).status_code == 200
        body = b'{"type": "PUSH_ARTIFACT", "event_data": {"resources": []}}'
        reply = deliver(client, body, path="/hooks/harbor", content_type="application/json")
        assert reply.status_code == 403

    @pytest.mark.parametrize(
        ("body", "words"),
        [
            (b"{not json", "not JSON"),
            (b'{"events": "many"}', 'expected {"events"'),
            (b"", "not JSON"),
        ],
    )
    def test_malformed_envelope_names_the_problem(
        self,
        make_client: Callable[..., TestClient],
        inbox_count: Callable[[], int],
        body: bytes,
        words: str,
    ) -> None:
        client = make_client()
        reply = deliver(client, body)
        assert reply.status_code == 400
        assert reply.json()["error"]["code"] == "hook.malformed"
        assert words in reply.json()["error"]["message"]
        assert inbox_count() == 0
        assert rejected(client, "distribution", "malformed") == 1

    def test_other_content_type(
        self, make_client: Callable[..., TestClient], inbox_count: Callable[[], int]
    ) -> None:
        client = make_client()
        reply = deliver(client, envelope("e1"), content_type="text/plain")
        assert reply.status_code == 415
        assert inbox_count() == 0
        assert rejected(client, "distribution", "media_type") == 1

    def test_a_20_mib_body(
        self, make_client: Callable[..., TestClient], inbox_count: Callable[[], int]
    ) -> None:
        events = [_push_event(f"e{i}") for i in range(100)]
        body = json.dumps({"events": events, "padding": "x" * (20 * 1024 * 1024)}).encode()
        client = make_client()
        reply = deliver(client, body)
        assert reply.status_code == 413
        assert reply.json()["error"]["code"] == "input.too_large"
        assert inbox_count() == 0

        def chunks():  # no Content-Length: the limit still holds while reading
            for start in range(0, len(body), 1024 * 1024):
                yield body[start : start + 1024 * 1024]

        reply = client.post(
            "/hooks/distribution",
            content=chunks(),
            headers={"Authorization": f"Bearer {HOOK_SECRET}", "Content-Type": V1},
        )
        assert reply.status_code == 413
        assert inbox_count() == 0

    def test_secret_is_checked_before_the_body_is_read(
        self, make_client: Callable[..., TestClient], inbox_count: Callable[[], int]
    ) -> None:
        reply = deliver(make_client(), b"{not json", auth="Bearer wrong")
        assert reply.status_code == 401
