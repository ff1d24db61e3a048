"""``GET /v1/audit``: who may read it, every filter, cursor pages; ``GET /v1/audit/{seq}``."""

from __future__ import annotations

import datetime as dt

import pytest
from fastapi.testclient import TestClient

from app.audit.chain import append_audit
from app.audit.entry import AuditEntry, AuditKind
from app.audit.inputs import store_input_value
from app.auth.tokens import create_token
from app.db.session import session_scope
from app.services import Services
from tests.audit.samples import DIGEST, decision

OTHER_DIGEST = "sha256:" + "cd" * 32
NOW = dt.datetime.now(dt.UTC)


def _token(services: Services, name: str, *scopes: str) -> dict[str, str]:
    with session_scope(services.sessions) as session:
        issued = create_token(session, name=name, scopes=list(scopes))
    return {"Authorization": f"Bearer {issued.token}"}


@pytest.fixture
def admin(services: Services) -> dict[str, str]:
    return _token(services, "admin", "admin")


@pytest.fixture
def trail(services: Services) -> list[int]:
    """Ten admission decisions on two images in two namespaces, a sign, a key change."""
    entries: list[AuditEntry] = []
    for n in range(10):
        entry = decision(n, time=NOW - dt.timedelta(days=10 - n), image="r.test/app")
        if n >= 6:
            entry = entry.model_copy(
                update={
                    "images": (f"r.test/other:v{n}",),
                    "digests": (OTHER_DIGEST,),
                    "namespace": "dev",
                }
            )
        entries.append(entry)
    entries.append(
        AuditEntry(kind=AuditKind.key_create, source="cli", actor="cli", object="key/release")
    )
    with session_scope(services.sessions) as session:
        name = store_input_value(session, {"request": {"uid": "uid-0"}})
        entries[0] = entries[0].model_copy(update={"input_hash": name})
        return append_audit(session, entries)


def _positions(response: object, trail: list[int]) -> list[int | str]:
    """Which of the trail's entries a page holds (by position), newest first; other
    records (the tokens' own creation) show as their kind."""
    body = response.json()  # type: ignore[attr-defined]
    return [trail.index(r["seq"]) if r["seq"] in trail else r["kind"] for r in body["records"]]


class TestReading:
    def test_filters(self, client: TestClient, admin: dict[str, str], trail: list[int]) -> None:
        def seqs(**params: object) -> list[int | str]:
            response = client.get("/v1/audit", params=params, headers=admin)
            assert response.status_code == 200, response.text
            return _positions(response, trail)

        assert seqs() == [10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0, "token.create"]
        assert seqs(kind="key.create") == [10]
        assert seqs(namespace="dev") == [9, 8, 7, 6]
        assert seqs(image="r.test/other") == [9, 8, 7, 6]
        assert seqs(image="r.test/other:v7") == [9, 8, 7, 6]  # a tag is ignored
        assert seqs(image=f"r.test/app@{DIGEST}") == [5, 4, 3, 2, 1, 0]
        assert seqs(digest=OTHER_DIGEST) == [9, 8, 7, 6]
        assert seqs(decision="deny", namespace="prod") == [4, 2, 0]
        assert seqs(actor="cli", kind="key.create") == [10]
        assert seqs(since="3d", kind="admission.decision") == [9, 8]
        until = (NOW - dt.timedelta(days=8, hours=12)).isoformat()
        assert seqs(until=until) == [1, 0]

    def test_cursor_pages_cover_everything_once(
        self, client: TestClient, admin: dict[str, str], trail: list[int]
    ) -> None:
        seen: list[int] = []
        cursor = None
        for _ in range(10):
            params: dict[str, object] = {"limit": 5, "kind": "admission.decision"}
            if cursor:
                params["cursor"] = cursor
            body = client.get("/v1/audit", params=params, headers=admin).json()
            seen += [r["seq"] for r in body["records"]]
            cursor = body["next_cursor"]
            if cursor is None:
                break
        assert seen == trail[9::-1]

    def test_show_returns_the_input(
        self, client: TestClient, admin: dict[str, str], trail: list[int]
    ) -> None:
        body = client.get(f"/v1/audit/{trail[0]}", headers=admin).json()
        assert body["record"]["source"] == "uid-0"
        assert body["input"] == {"request": {"uid": "uid-0"}}
        assert client.get("/v1/audit/999", headers=admin).status_code == 404

    def test_bad_requests_are_clear_400s(
        self, client: TestClient, admin: dict[str, str], trail: list[int]
    ) -> None:
        for params, code in (
            ({"limit": 501}, "input.invalid"),
            ({"limit": 0}, "input.invalid"),
            ({"cursor": "not-a-cursor"}, "audit.cursor"),
            ({"since": "last tuesday"}, "audit.since"),
            ({"image": "r.test/UPPER::bad"}, "input."),
        ):
            response = client.get("/v1/audit", params=params, headers=admin)
            assert response.status_code == 400, (params, response.text)
            assert response.json()["error"]["code"].startswith(code), params


class TestWhoMayRead:
    def test_no_token_is_401(self, client: TestClient, trail: list[int]) -> None:
        assert client.get("/v1/audit").status_code == 401

    def test_a_sign_token_is_refused(
        self, client: TestClient, services: Services, trail: list[int]
    ) -> None:
        ci = _token(services, "ci", "sign:**")
        assert client.get("/v1/audit", headers=ci).status_code == 403
        assert (
            client.get("/v1/audit", params={"image": "r.test/app"}, headers=ci).status_code == 403
        )

    def test_an_image_scoped_auditor_sees_only_its_images(
        self, client: TestClient, services: Services, trail: list[int]
    ) -> None:
        auditor = _token(services, "auditor", "audit:r.test/app")
        assert client.get("/v1/audit", headers=auditor).status_code == 403
        assert client.get(f"/v1/audit/{trail[0]}", headers=auditor).status_code == 403
        other = client.get("/v1/audit", params={"image": "r.test/other"}, headers=auditor)
        assert other.status_code == 403
        mine = client.get("/v1/audit", params={"image": "r.test/app"}, headers=auditor)
        assert _positions(mine, trail) == [5, 4, 3, 2, 1, 0]

    def test_a_scoped_auditor_sees_only_its_images_of_a_review(
        self, client: TestClient, services: Services, admin: dict[str, str]
    ) -> None:
        review = decision(0, image="r.test/app").model_copy(
            update={"images": (f"r.test/app@{DIGEST}", "r.test/other:v1", "not a reference")}
        )
        with session_scope(services.sessions) as session:
            append_audit(session, [review])
        auditor = _token(services, "auditor", "audit:r.test/app")

        seen = client.get("/v1/audit", params={"image": "r.test/app"}, headers=auditor).json()
        whole = client.get("/v1/audit", params={"image": "r.test/app"}, headers=admin).json()

        (record,) = [r for r in seen["records"] if r["kind"] == "admission.decision"]
        assert record["images"] == [f"r.test/app@{DIGEST}"]
        assert record["details"]["withheld_images"] == 2
        (full,) = [r for r in whole["records"] if r["kind"] == "admission.decision"]
        assert len(full["images"]) == 3 and "withheld_images" not in full["details"]

    def test_an_audit_everything_token_reads_all(
        self, client: TestClient, services: Services, trail: list[int]
    ) -> None:
        reader = _token(services, "siem", "audit:**")
        page = _positions(client.get("/v1/audit", headers=reader), trail)
        assert page == ["token.create", *range(10, -1, -1)]  # the reader's own token, first
        assert client.get(f"/v1/audit/{trail[0]}", headers=reader).status_code == 200
