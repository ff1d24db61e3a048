"""``/v1/keys`` over HTTP: admin only, public material only, clear 4xx, the KEK start-up rule."""

from __future__ import annotations

import logging

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec
from fastapi.testclient import TestClient

from app.auth.tokens import create_token
from app.config import Settings, load_settings
from app.db.session import session_scope
from app.errors import ConfigError
from app.main import create_app
from app.services import Services
from tests.signing.keyfiles import private_pem


def _token(services: Services, name: str, *scopes: str) -> dict[str, str]:
    with session_scope(services.sessions) as session:
        issued = create_token(session, name=name, scopes=list(scopes))
    return {"Authorization": f"Bearer {issued.token}"}


@pytest.fixture
def admin(services: Services) -> dict[str, str]:
    return _token(services, "admin", "admin")


class TestAuth:
    def test_missing_token_is_401(self, client: TestClient) -> None:
        assert client.get("/v1/keys").status_code == 401
        assert client.post("/v1/keys", json={"scopes": ["**"], "name": "k"}).status_code == 401

    def test_non_admin_is_403(self, client: TestClient, services: Services) -> None:
        headers = _token(services, "ci", "sign:**")
        response = client.post("/v1/keys", json={"scopes": ["**"], "name": "k"}, headers=headers)
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "auth.not_admin"
        assert client.get("/v1/keys", headers=headers).status_code == 403


class TestLifecycle:
    def test_generate_list_show_public_disable(
        self, client: TestClient, admin: dict[str, str]
    ) -> None:
        created = client.post(
            "/v1/keys",
            json={"scopes": ["**"], "name": "release", "algorithm": "ed25519"},
            headers=admin,
        )
        assert created.status_code == 201, created.text
        body = created.json()
        assert set(body) == {
            "name",
            "algorithm",
            "key_id",
            "public_key_pem",
            "scopes",
            "status",
            "created_at",
            "disabled_at",
        }
        assert body["scopes"] == ["**"]
        assert body["algorithm"] == "ed25519" and body["status"] == "active"
        listed = client.get("/v1/keys", headers=admin).json()
        assert [k["name"] for k in listed] == ["release"]
        assert client.get("/v1/keys/release", headers=admin).json()["key_id"] == body["key_id"]
        public = client.get("/v1/keys/release/public", headers=admin)
        assert public.headers["content-type"].startswith("application/x-pem-file")
        serialization.load_pem_public_key(public.content)
        disabled = client.post("/v1/keys/release/disable", headers=admin)
        assert disabled.json()["status"] == "disabled"
        assert client.get("/v1/keys/release/public", headers=admin).status_code == 200

    def test_default_algorithm_is_cosigns(self, client: TestClient, admin: dict[str, str]) -> None:
        body = client.post("/v1/keys", json={"scopes": ["**"], "name": "d"}, headers=admin).json()
        assert body["algorithm"] == "ecdsa-p256"

    def test_errors_are_clear_4xx(self, client: TestClient, admin: dict[str, str]) -> None:
        bad = client.post(
            "/v1/keys", json={"scopes": ["**"], "name": "k", "algorithm": "rsa-512"}, headers=admin
        )
        assert bad.status_code == 400
        assert "unknown key algorithm" in bad.json()["error"]["message"]
        assert (
            client.post(
                "/v1/keys", json={"scopes": ["**"], "name": "a b"}, headers=admin
            ).status_code
            == 400
        )
        assert client.post("/v1/keys", json={}, headers=admin).status_code == 400
        assert client.post("/v1/keys", content=b"{", headers=admin).status_code == 400
        client.post("/v1/keys", json={"scopes": ["**"], "name": "k"}, headers=admin)
        assert (
            client.post("/v1/keys", json={"scopes": ["**"], "name": "k"}, headers=admin).status_code
            == 409
        )
        assert client.get("/v1/keys/nope", headers=admin).status_code == 404
        assert client.post("/v1/keys/nope/disable", headers=admin).status_code == 404


class TestImport:
    def test_encrypted_import(self, client: TestClient, admin: dict[str, str]) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        response = client.post(
            "/v1/keys/import",
            json={
                "scopes": ["**"],
                "name": "imp",
                "pem": private_pem(key, b"pw").decode(),
                "password": "pw",
            },
            headers=admin,
        )
        assert response.status_code == 201, response.text
        assert response.json()["algorithm"] == "ecdsa-p256"

    def test_unsupported_and_wrong_password_do_not_echo_the_key(
        self, client: TestClient, admin: dict[str, str]
    ) -> None:
        dsa_pem = private_pem(dsa.generate_private_key(key_size=2048)).decode()
        refused = client.post(
            "/v1/keys/import", json={"scopes": ["**"], "name": "d", "pem": dsa_pem}, headers=admin
        )
        assert refused.status_code == 400
        assert refused.json()["error"]["code"] == "input.key_unsupported"
        ec_pem = private_pem(ec.generate_private_key(ec.SECP256R1()), b"right").decode()
        wrong = client.post(
            "/v1/keys/import",
            json={"scopes": ["**"], "name": "w", "pem": ec_pem, "password": "wrong"},
            headers=admin,
        )
        assert wrong.status_code == 400
        for response in (refused, wrong):
            for line in (dsa_pem + ec_pem).splitlines()[1:-1]:
                assert line not in response.text

    def test_malformed_body_does_not_echo_the_pem(
        self, client: TestClient, admin: dict[str, str]
    ) -> None:
        pem = private_pem(ec.generate_private_key(ec.SECP256R1())).decode()
        response = client.post(
            "/v1/keys/import",
            json={"scopes": ["**"], "name": "x", "pem": pem, "extra": 1},
            headers=admin,
        )
        assert response.status_code == 400
        assert pem.splitlines()[1] not in response.text


class TestNoSecrets:
    def test_no_private_material_in_responses_or_logs(
        self, client: TestClient, admin: dict[str, str], caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.DEBUG)
        key = ec.generate_private_key(ec.SECP256R1())
        pem = private_pem(key).decode()
        texts = [
            client.post(
                "/v1/keys/import", json={"scopes": ["**"], "name": "i", "pem": pem}, headers=admin
            ).text,
            client.post("/v1/keys", json={"scopes": ["**"], "name": "g"}, headers=admin).text,
            client.get("/v1/keys", headers=admin).text,
            client.get("/v1/keys/i", headers=admin).text,
            client.post("/v1/keys/i/disable", headers=admin).text,
        ]
        scalar = key.private_numbers().private_value
        secrets = [*pem.splitlines()[1:-1], str(scalar), scalar.to_bytes(32, "big").hex()]
        everything = "\n".join(texts) + caplog.text
        assert "PRIVATE KEY" not in everything
        for secret in secrets:
            assert secret not in everything


class TestStartup:
    def test_refuses_to_start_with_keys_and_no_kek(
        self, client: TestClient, admin: dict[str, str], test_database_url: str, registry: object
    ) -> None:
        assert (
            client.post("/v1/keys", json={"scopes": ["**"], "name": "k"}, headers=admin).status_code
            == 201
        )
        without = load_settings(database_url=test_database_url)
        services = Services.from_settings(without)
        try:
            with (
                pytest.raises(ConfigError, match="no key-encryption key"),
                TestClient(create_app(services=services)),
            ):
                pass
        finally:
            services.engine.dispose()

    def test_starts_without_kek_when_no_keys(
        self, test_database_url: str, clean_database: object
    ) -> None:
        services = Services.from_settings(load_settings(database_url=test_database_url))
        try:
            with TestClient(create_app(services=services)) as client:
                assert client.get("/healthz").status_code == 200
        finally:
            services.engine.dispose()

    def test_generate_without_kek_is_503(
        self, test_database_url: str, clean_database: object
    ) -> None:
        settings: Settings = load_settings(database_url=test_database_url)
        services = Services.from_settings(settings)
        headers = _token(services, "root", "admin")
        try:
            with TestClient(create_app(services=services)) as client:
                response = client.post(
                    "/v1/keys", json={"scopes": ["**"], "name": "k"}, headers=headers
                )
            assert response.status_code == 503
            assert response.json()["error"]["code"] == "config.no_kek"
        finally:
            services.engine.dispose()


class TestScopes:
    @pytest.mark.parametrize("scopes", [None, [], ["  "]])
    def test_a_new_key_must_name_its_scopes(
        self, client: TestClient, admin: dict[str, str], scopes: list[str] | None
    ) -> None:
        pem = private_pem(ec.generate_private_key(ec.SECP256R1())).decode()
        body: dict[str, object] = (
            {"name": "k"} if scopes is None else {"name": "k", "scopes": scopes}
        )
        for path, extra in (("/v1/keys", {}), ("/v1/keys/import", {"pem": pem})):
            answer = client.post(path, json={**body, **extra}, headers=admin)
            assert answer.status_code == 400, answer.text
            error = answer.json()["error"]
            assert error["code"] in ("input.key_scope", "input.invalid")
            if scopes is None or scopes == []:
                assert error["code"] == "input.key_scope"
                assert "'**'" in error["message"]
        assert client.get("/v1/keys", headers=admin).json() == []

    def test_scopes_are_shown_and_replaced(self, client: TestClient, admin: dict[str, str]) -> None:
        made = client.post(
            "/v1/keys", json={"name": "k", "scopes": ["ghcr.io/acme/*"]}, headers=admin
        ).json()
        assert made["scopes"] == ["ghcr.io/acme/*"]
        replaced = client.put(
            "/v1/keys/k/scopes", json={"scopes": ["ghcr.io/ops/**"]}, headers=admin
        )
        assert replaced.status_code == 200, replaced.text
        assert replaced.json()["scopes"] == ["ghcr.io/ops/**"]
        emptied = client.put("/v1/keys/k/scopes", json={"scopes": []}, headers=admin)
        assert emptied.status_code == 400
        assert emptied.json()["error"]["code"] == "input.key_scope"
        assert client.get("/v1/keys/k", headers=admin).json()["scopes"] == ["ghcr.io/ops/**"]
