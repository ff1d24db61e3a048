"""``/v1/authorities``: admin-only CRUD of key and keyless authorities, clear 4xx on bad input."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.auth.tokens import create_token
from app.db.session import session_scope
from app.main import create_app
from app.services import Services
from tests.verify import cosign_wire as wire


@pytest.fixture
def client(services: Services) -> Iterator[TestClient]:
    with TestClient(create_app(services=services)) as test_client:
        yield test_client


def bearer(services: Services, name: str, *scopes: str) -> dict[str, str]:
    with session_scope(services.sessions) as session:
        issued = create_token(session, name=name, scopes=list(scopes))
    return {"Authorization": f"Bearer {issued.token}"}


@pytest.fixture
def admin(services: Services) -> dict[str, str]:
    return bearer(services, "admin", "admin")


class TestCrud:
    def test_key_authority_round_trip(self, client: TestClient, admin: dict[str, str]) -> None:
        key = wire.new_key()
        created = client.post(
            "/v1/authorities",
            headers=admin,
            json={"name": "team", "keys": [wire.public_pem(key)], "scopes": ["ghcr.io/acme/*"]},
        )
        assert created.status_code == 201, created.text
        body = created.json()
        assert body["kind"] == "key"
        assert body["keys"][0]["key_id"] == wire.spki_sha256(key).hex()
        assert body["scopes"] == ["ghcr.io/acme/*"]

        assert [a["name"] for a in client.get("/v1/authorities", headers=admin).json()] == ["team"]
        assert client.get("/v1/authorities/team", headers=admin).json()["name"] == "team"
        assert client.delete("/v1/authorities/team", headers=admin).status_code == 204
        missing = client.get("/v1/authorities/team", headers=admin)
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "not_found.authority"

    def test_keyless_authority_with_builtin_and_custom_roots(
        self, client: TestClient, admin: dict[str, str], asset: Callable[[str], Path]
    ) -> None:
        staging = client.post(
            "/v1/authorities",
            headers=admin,
            json={
                "name": "ci",
                "certificate_identity_regexp": "https://github.com/acme/.*",
                "certificate_oidc_issuer": "https://token.actions.githubusercontent.com",
                "trusted_root": "staging",
                "scopes": ["ghcr.io/acme/**"],
            },
        )
        assert staging.status_code == 201, staging.text
        assert staging.json()["identity"] == {
            "subject_regex": "https://github.com/acme/.*",
            "issuer": "https://token.actions.githubusercontent.com",
        }
        assert staging.json()["trusted_root"] == "staging"
        root_text = asset("sigstore/trusted-roots/cosign.trusted_root_pgi.json").read_text()
        custom = client.post(
            "/v1/authorities",
            headers=admin,
            json={
                "name": "private",
                "certificate_identity": "a@b",
                "certificate_oidc_issuer": "https://i",
                "trusted_root": root_text,
                "scopes": ["**"],
            },
        )
        assert custom.status_code == 201, custom.text
        assert custom.json()["trusted_root"].startswith("custom sha256:")

    def test_duplicate_name_is_409(self, client: TestClient, admin: dict[str, str]) -> None:
        body = {"name": "dup", "keys": [wire.public_pem(wire.new_key())], "scopes": ["**"]}
        assert client.post("/v1/authorities", headers=admin, json=body).status_code == 201
        again = client.post("/v1/authorities", headers=admin, json=body)
        assert again.status_code == 409


class TestRefusals:
    @pytest.mark.parametrize(
        ("body", "words"),
        [
            ({"name": "x"}, "give public keys"),
            ({"name": "x", "keys": ["not a key"]}, "no PEM public key"),
            ({"name": "x", "certificate_identity": "a@b"}, "issuer"),
            (
                {"name": "x", "certificate_identity_regexp": "(", "certificate_oidc_issuer": "i"},
                "regex",
            ),
            (
                {
                    "name": "x",
                    "certificate_identity": "a@b",
                    "certificate_oidc_issuer": "i",
                    "trusted_root": "/etc/passwd",
                },
                "file path is not accepted",
            ),
            (
                {
                    "name": "x",
                    "keys": ["k"],
                    "certificate_identity": "a",
                    "certificate_oidc_issuer": "https://i",
                },
                "not both",
            ),
            ({"name": "bad name", "keys": []}, "give public keys"),
            ({"name": "x", "keys": "pem"}, "keys"),
        ],
    )
    def test_bad_bodies_are_400(
        self, client: TestClient, admin: dict[str, str], body: dict[str, object], words: str
    ) -> None:
        answer = client.post("/v1/authorities", headers=admin, json=body)
        assert answer.status_code == 400, answer.text
        assert words in answer.json()["error"]["message"]

    def test_unsupported_key_type_is_400(self, client: TestClient, admin: dict[str, str]) -> None:
        from cryptography.hazmat.primitives.asymmetric import ec

        from tests.verify.test_trusted_keys import pem_of

        pem = pem_of(ec.generate_private_key(ec.SECP521R1()).public_key())
        answer = client.post("/v1/authorities", headers=admin, json={"name": "x", "keys": [pem]})
        assert answer.status_code == 400
        assert answer.json()["error"]["code"] == "input.key_unsupported"

    def test_needs_a_token(self, client: TestClient) -> None:
        assert client.get("/v1/authorities").status_code == 401

    def test_needs_an_admin_token(self, client: TestClient, services: Services) -> None:
        headers = bearer(services, "signer", "sign:**", "verify:**")
        assert client.get("/v1/authorities", headers=headers).status_code == 403
        answer = client.post(
            "/v1/authorities",
            headers=headers,
            json={"name": "x", "keys": [wire.public_pem(wire.new_key())]},
        )
        assert answer.status_code == 403


class TestScopesAndSignedIdentity:
    @pytest.mark.parametrize("scopes", [None, []])
    def test_an_authority_must_name_its_scopes(
        self, client: TestClient, admin: dict[str, str], scopes: list[str] | None
    ) -> None:
        body: dict[str, object] = {"name": "open", "keys": [wire.public_pem(wire.new_key())]}
        if scopes is not None:
            body["scopes"] = scopes
        answer = client.post("/v1/authorities", headers=admin, json=body)
        assert answer.status_code == 400, answer.text
        error = answer.json()["error"]
        assert error["code"] == "input.authority_scope"
        assert '"scopes": ["**"]' in error["message"]
        assert client.get("/v1/authorities", headers=admin).json() == []

    def test_signed_identity_defaults_to_match_repository(
        self, client: TestClient, admin: dict[str, str]
    ) -> None:
        pem = wire.public_pem(wire.new_key())
        made = client.post(
            "/v1/authorities", headers=admin, json={"name": "a", "keys": [pem], "scopes": ["**"]}
        )
        assert made.json()["signed_identity"] == "match-repository"
        remap = client.post(
            "/v1/authorities",
            headers=admin,
            json={
                "name": "m",
                "keys": [pem],
                "scopes": ["mirror.local/**"],
                "remap_identity": [{"prefix": "mirror.local", "signed_prefix": "ghcr.io"}],
            },
        )
        assert remap.status_code == 201, remap.text
        assert remap.json()["signed_identity"] == "remap"
        assert client.get("/v1/authorities/m", headers=admin).json()["remap_identity"] == [
            {"prefix": "mirror.local", "signed_prefix": "ghcr.io"}
        ]

    @pytest.mark.parametrize(
        "extra",
        [
            {"signed_identity": "exact"},
            {"signed_identity": "remap"},
            {
                "signed_identity": "any",
                "remap_identity": [{"prefix": "a.io", "signed_prefix": "b"}],
            },
            {"remap_identity": [{"prefix": "a.io/*", "signed_prefix": "b.io"}]},
        ],
    )
    def test_bad_signed_identity_is_400(
        self, client: TestClient, admin: dict[str, str], extra: dict[str, object]
    ) -> None:
        body = {"name": "x", "keys": [wire.public_pem(wire.new_key())], "scopes": ["**"], **extra}
        answer = client.post("/v1/authorities", headers=admin, json=body)
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"]["code"] == "input.signed_identity"
