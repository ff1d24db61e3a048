"""``POST /v1/signatures`` and ``GET /v1/images/{image}/signatures`` against the real registry."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from app.auth.tokens import create_token
from app.config import Settings
from app.db.session import session_scope
from app.oci.client import RegistryClient
from app.oci.refs import ImageRef
from app.services import Services
from app.signing.keys import generate_key
from app.signing.signers import Algorithm
from tests.fixtures.images import push_random_image_sync
from tests.fixtures.registry import RegistryProcess


def _token(services: Services, name: str, *scopes: str) -> dict[str, str]:
    with session_scope(services.sessions) as session:
        issued = create_token(session, name=name, scopes=list(scopes))
    return {"Authorization": f"Bearer {issued.token}"}


@pytest.fixture
def image(
    services: Services, registry: RegistryProcess, unique_repo: Callable[[str], str]
) -> ImageRef:
    with session_scope(services.sessions) as session:
        generate_key(
            session,
            settings=services.settings,
            name="ci",
            algorithm=Algorithm.ecdsa_p256,
            scopes=["**"],
        )
    repository = unique_repo("app").split("/", 1)[1]
    ref, _ = push_random_image_sync(registry, repository)
    return ref


def _written(settings: Settings, image: ImageRef) -> tuple[int, bool]:
    """How many referrers ``image`` has, and whether its legacy ``.sig`` tag exists."""

    async def _look() -> tuple[int, bool]:
        client = RegistryClient.from_settings(settings)
        try:
            referrers = await client.list_referrers(image)
            tag = "sha256-" + (image.digest or "").split(":")[1] + ".sig"
            try:
                await client.resolve_digest(image.with_tag(tag))
                legacy = True
            except Exception:
                legacy = False
            return len(referrers), legacy
        finally:
            await client.aclose()

    return asyncio.run(_look())


def _sign_body(image: ImageRef, **extra: object) -> dict[str, object]:
    return {"image": f"{image.name}:v1", "key": "ci", "format": "both", **extra}


class TestWhoMaySign:
    def test_missing_and_wrong_token_are_401_and_write_nothing(
        self, client: TestClient, image: ImageRef, settings: Settings
    ) -> None:
        assert client.post("/v1/signatures", json=_sign_body(image)).status_code == 401
        wrong = {"Authorization": "Bearer sgt_" + "x" * 43}
        assert (
            client.post("/v1/signatures", json=_sign_body(image), headers=wrong).status_code == 401
        )
        assert _written(settings, image) == (0, False)

    def test_token_for_another_repository_is_403_and_writes_nothing(
        self, client: TestClient, services: Services, image: ImageRef, settings: Settings
    ) -> None:
        headers = _token(services, "other", f"sign:{image.registry}/elsewhere/*")
        response = client.post("/v1/signatures", json=_sign_body(image), headers=headers)
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "auth.out_of_scope"
        assert _written(settings, image) == (0, False)

    def test_key_scoped_elsewhere_is_403_and_writes_nothing(
        self, client: TestClient, services: Services, image: ImageRef, settings: Settings
    ) -> None:
        # The token may sign the image; the key it picks may not.
        admin = _token(services, "root", "admin")
        made = client.post(
            "/v1/keys",
            json={"name": "team-key", "scopes": [f"{image.registry}/elsewhere/*"]},
            headers=admin,
        )
        assert made.status_code == 201, made.text
        headers = _token(services, "ci", f"sign:{image.name}")
        response = client.post(
            "/v1/signatures", json=_sign_body(image, key="team-key"), headers=headers
        )
        assert response.status_code == 403, response.text
        error = response.json()["error"]
        assert error["code"] == "signing.key_out_of_scope"
        assert image.name in error["message"]
        assert _written(settings, image) == (0, False)

    def test_scoped_token_signs_and_records(
        self, client: TestClient, services: Services, image: ImageRef, settings: Settings
    ) -> None:
        team = image.name.rsplit("/", 1)[0]
        headers = _token(services, "ci", f"sign:{team}/*")
        response = client.post(
            "/v1/signatures",
            json=_sign_body(image, annotations={"git": "abc123"}),
            headers=headers,
        )
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["digest"] == image.digest
        assert body["formats"] == ["bundle", "legacy"]
        assert [s["format"] for s in body["signatures"]] == ["bundle", "legacy"]
        assert _written(settings, image) == (1, True)
        records = client.get(f"/v1/images/{image.name}/signatures", headers=headers)
        assert records.status_code == 200
        (record,) = records.json()
        assert record["signed_by"] == "ci"
        assert record["digest"] == image.digest
        assert record["signature_digests"] == [s["signature_digest"] for s in body["signatures"]]
        by_digest = client.get(f"/v1/images/{image}/signatures", headers=headers)
        assert len(by_digest.json()) == 1


class TestRecords:
    def test_reading_records_needs_a_scope_on_the_image(
        self, client: TestClient, services: Services, image: ImageRef
    ) -> None:
        assert client.get(f"/v1/images/{image.name}/signatures").status_code == 401
        other = _token(services, "other", "verify:elsewhere/**")
        assert client.get(f"/v1/images/{image.name}/signatures", headers=other).status_code == 403
        reader = _token(services, "reader", "verify:**")
        assert client.get(f"/v1/images/{image.name}/signatures", headers=reader).json() == []

    def test_bad_reference_is_400(self, client: TestClient, services: Services) -> None:
        admin = _token(services, "root", "admin")
        response = client.get("/v1/images/Bad::Ref/signatures", headers=admin)
        assert response.status_code == 400


class TestBadRequests:
    @pytest.mark.parametrize(
        ("body", "code"),
        [
            ({}, "input.invalid"),
            ({"image": "x::y", "key": "ci"}, "input.invalid_reference"),
            ({"image": "r.io/a/b:v1", "key": "ci", "format": "pdf"}, "input.sign_format"),
            ({"image": "r.io/a/b:v1"}, "input.sign_method"),
            ({"image": "r.io/a/b:v1", "key": "ci", "annotations": {"k": 1}}, "input.invalid"),
        ],
    )
    def test_clear_400(
        self, client: TestClient, services: Services, body: dict[str, object], code: str
    ) -> None:
        admin = _token(services, "root", "admin")
        response = client.post("/v1/signatures", json=body, headers=admin)
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == code

    def test_unknown_key_is_404_and_disabled_key_is_422(
        self, client: TestClient, services: Services, image: ImageRef, settings: Settings
    ) -> None:
        admin = _token(services, "root", "admin")
        missing = client.post("/v1/signatures", json=_sign_body(image, key="nope"), headers=admin)
        assert missing.status_code == 404
        client.post("/v1/keys/ci/disable", headers=admin)
        disabled = client.post("/v1/signatures", json=_sign_body(image), headers=admin)
        assert disabled.status_code == 422
        assert disabled.json()["error"]["code"] == "signing.key_disabled"
        assert _written(settings, image) == (0, False)
