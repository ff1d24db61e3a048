"""``POST /v1/verify`` against the real registry: 200 with the verified signatures, 422 with
reasons, and scope checks on the token.
"""

from __future__ import annotations

import secrets

import pytest
from fastapi.testclient import TestClient

from app.auth.tokens import create_token
from app.db.session import session_scope
from app.services import Services
from tests.fixtures.registry import RegistryProcess
from tests.verify import cosign_wire as wire


def bearer(services: Services, name: str, *scopes: str) -> dict[str, str]:
    with session_scope(services.sessions) as session:
        issued = create_token(session, name=name, scopes=list(scopes))
    return {"Authorization": f"Bearer {issued.token}"}


def repository(registry: RegistryProcess) -> str:
    return f"{registry.host}/api{secrets.token_hex(4)}/app"


def test_verifies_with_a_key(
    client: TestClient, services: Services, registry: RegistryProcess
) -> None:
    key = wire.new_key()
    image = wire.push_signed_image_sync(registry, repository(registry), key)
    headers = bearer(services, "ci", f"verify:{image.name}")

    answer = client.post(
        "/v1/verify",
        headers=headers,
        json={"image": f"{image.name}:v1", "key": wire.public_pem(key)},
    )

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["verified"] is True and body["digest"] == image.digest
    (signature,) = body["signatures"]
    assert signature["format"] == "bundle"
    assert signature["key_id"] == wire.spki_sha256(key).hex()


def test_verifies_with_a_stored_authority(
    client: TestClient, services: Services, registry: RegistryProcess
) -> None:
    key = wire.new_key("ecdsa-p384")
    image = wire.push_signed_image_sync(registry, repository(registry), key, legacy=True)
    admin = bearer(services, "admin", "admin")
    created = client.post(
        "/v1/authorities",
        headers=admin,
        json={"name": "team", "keys": [wire.public_pem(key)], "scopes": ["**"]},
    )
    assert created.status_code == 201

    answer = client.post(
        "/v1/verify", headers=admin, json={"image": str(image), "authority": "team"}
    )

    assert answer.status_code == 200, answer.text
    assert answer.json()["signatures"][0]["authority"] == "team"
    assert answer.json()["signatures"][0]["format"] == "legacy"


@pytest.mark.parametrize(
    ("trust", "code"),
    [
        ({"key": wire.public_pem(wire.new_key())}, "verify.bad_signature"),
        (
            {
                "certificate_identity": "ci@example.com",
                "certificate_oidc_issuer": "https://issuer.example",
            },
            "verify.wrong_kind",
        ),
    ],
    ids=["wrong-key", "keyless-identity"],
)
def test_nothing_verifies_is_422_with_reasons(
    client: TestClient,
    services: Services,
    registry: RegistryProcess,
    trust: dict[str, str],
    code: str,
) -> None:
    image = wire.push_signed_image_sync(registry, repository(registry), wire.new_key())
    headers = bearer(services, "ci", "verify:**")

    answer = client.post("/v1/verify", headers=headers, json={"image": str(image), **trust})

    assert answer.status_code == 422
    error = answer.json()["error"]
    assert error["code"] == "verify.no_valid_signature"
    assert [r["code"] for r in error["details"]["rejections"]] == [code]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"image": "UPPER::case", "key": "x"}, 400),
        ({"image": "127.0.0.1:1/a/b:v1"}, 400),
        ({"image": "127.0.0.1:1/a/b:v1", "key": "not a pem"}, 400),
        ({"image": "127.0.0.1:1/a/b:v1", "key": "k", "authority": "a"}, 400),
        ({"image": "127.0.0.1:1/a/b:v1", "authority": "nobody"}, 404),
        ({"image": "127.0.0.1:1/a/b:v1", "key": "k", "trusted_root": "staging"}, 400),
        ({"image": "127.0.0.1:1/a/b:v1", "certificate_identity": "x"}, 400),
    ],
)
def test_bad_requests_are_clear_4xx(
    client: TestClient, services: Services, body: dict[str, object], status: int
) -> None:
    answer = client.post("/v1/verify", headers=bearer(services, "ci", "admin"), json=body)
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]["message"]


def test_token_scoped_to_another_repository_is_403(
    client: TestClient, services: Services, registry: RegistryProcess
) -> None:
    key = wire.new_key()
    image = wire.push_signed_image_sync(registry, repository(registry), key)
    headers = bearer(services, "other", f"verify:{registry.host}/elsewhere/*", "sign:**")

    answer = client.post(
        "/v1/verify", headers=headers, json={"image": str(image), "key": wire.public_pem(key)}
    )

    assert answer.status_code == 403
    assert answer.json()["error"]["code"] == "auth.out_of_scope"
    assert client.post("/v1/verify", json={"image": str(image)}).status_code == 401
