"""Hostile input over HTTP: every answer is a 4xx in the ``{"error": {"code", "message"}}``
shape, never a 5xx, a framework-shaped ``{"detail": ...}`` body or a traceback.

Each case here was found by fuzzing the real application (schemathesis on ``/openapi.json``
plus hand-made classics) and answered 5xx or a ``detail`` body before its fix.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from app.auth.tokens import create_token
from app.db.session import session_scope
from app.services import Services
from tests.fixtures.images import push_random_image_sync
from tests.fixtures.registry import RegistryProcess

# Every route that reads a JSON body, with its method.
BODY_ROUTES = [
    ("POST", "/v1/keys"),
    ("POST", "/v1/keys/import"),
    ("POST", "/v1/signatures"),
    ("POST", "/v1/authorities"),
    ("POST", "/v1/verify"),
    ("POST", "/v1/decisions"),
    ("PUT", "/v1/policies"),
]


@pytest.fixture
def admin(services: Services) -> dict[str, str]:
    with session_scope(services.sessions) as session:
        issued = create_token(session, name="admin", scopes=["admin"])
    return {"Authorization": f"Bearer {issued.token}"}


def _error(response: httpx.Response, status: int) -> dict[str, Any]:
    """The ``error`` object of a ``status`` answer, checked for the shared shape."""
    assert response.status_code == status, response.text
    assert "Traceback" not in response.text
    error: dict[str, Any] = response.json()["error"]
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]
    return error


def _client_error(response: httpx.Response) -> dict[str, Any]:
    """Like ``_error`` for any 4xx (the exact status may depend on the database backend)."""
    assert 400 <= response.status_code < 500, response.text
    return _error(response, response.status_code)


class TestFrameworkErrorsHaveTheSharedShape:
    def test_unknown_route_is_404_naming_it(self, client: TestClient) -> None:
        error = _error(client.get("/v1/nope"), 404)
        assert error["code"] == "not_found"
        assert "GET /v1/nope" in error["message"]

    def test_wrong_method_is_405_naming_it(self, client: TestClient, admin: dict[str, str]) -> None:
        error = _error(client.patch("/v1/keys", headers=admin), 405)
        assert error == {
            "code": "input.method_not_allowed",
            "message": "method PATCH is not allowed on /v1/keys",
        }

    @pytest.mark.parametrize(("method", "path"), BODY_ROUTES)
    def test_deeply_nested_json_is_400(
        self, client: TestClient, admin: dict[str, str], method: str, path: str
    ) -> None:
        body = b"[" * 10_000 + b"]" * 10_000
        headers = {**admin, "content-type": "application/json"}
        error = _error(client.request(method, path, content=body, headers=headers), 400)
        assert error == {
            "code": "input.invalid",
            "message": "request body is not valid JSON: it is nested too deeply",
        }

    @pytest.mark.parametrize(("method", "path"), BODY_ROUTES)
    def test_body_that_is_not_utf8_is_400(
        self, client: TestClient, admin: dict[str, str], method: str, path: str
    ) -> None:
        headers = {**admin, "content-type": "application/json"}
        response = client.request(method, path, content=b'{"name": "\xff\xfe"}', headers=headers)
        assert _error(response, 400)["message"] == (
            "request body is not valid JSON: it is not UTF-8 text"
        )

    @pytest.mark.parametrize(("method", "path"), BODY_ROUTES)
    @pytest.mark.parametrize("body", [b"", b'{"name": ', b"null", b"[]"])
    def test_empty_malformed_or_non_object_body_is_400(
        self, client: TestClient, admin: dict[str, str], method: str, path: str, body: bytes
    ) -> None:
        headers = {**admin, "content-type": "application/json"}
        response = client.request(method, path, content=body, headers=headers)
        assert _error(response, 400)["code"] == "input.invalid"


class TestPolicyVersionNumbers:
    @pytest.mark.parametrize("version", [2**31, 2**63, 10**30])
    def test_a_number_no_version_can_have_is_404(
        self, client: TestClient, admin: dict[str, str], version: int
    ) -> None:
        # Before: PostgreSQL DataError (503 "store.unavailable"), SQLite OverflowError (500).
        response = client.post(f"/v1/policies/{version}/activate", headers=admin)
        error = _error(response, 404)
        assert error["code"] == "not_found.policy_version"
        assert str(version) in error["message"]

    @pytest.mark.parametrize("version", ["0", "-1", "abc", "1.5"])
    def test_a_version_that_is_not_a_positive_integer_is_400(
        self, client: TestClient, admin: dict[str, str], version: str
    ) -> None:
        response = client.post(f"/v1/policies/{version}/activate", headers=admin)
        assert _error(response, 400)["code"] == "input.invalid"


class TestNulCharacters:
    """PostgreSQL text cannot hold NUL: the caller's value, so a 4xx, not 503 "store"."""

    @pytest.mark.parametrize(
        ("method", "path"),
        [
            ("GET", "/v1/keys/%00"),
            ("GET", "/v1/keys/%00/public"),
            ("POST", "/v1/keys/%00/disable"),
            ("GET", "/v1/authorities/%00"),
            ("DELETE", "/v1/authorities/%00"),
        ],
    )
    def test_in_a_name_in_the_path(
        self, client: TestClient, admin: dict[str, str], method: str, path: str
    ) -> None:
        _client_error(client.request(method, path, headers=admin))

    def test_in_the_key_to_sign_with(
        self, client: TestClient, admin: dict[str, str], registry: RegistryProcess
    ) -> None:
        body = {"image": f"{registry.host}/bad-input/app:1", "key": "a\x00"}
        _client_error(client.post("/v1/signatures", json=body, headers=admin))

    def test_in_the_authority_to_verify_with(
        self, client: TestClient, admin: dict[str, str], registry: RegistryProcess
    ) -> None:
        body = {"image": f"{registry.host}/bad-input/app:1", "authority": "a\x00"}
        _client_error(client.post("/v1/verify", json=body, headers=admin))

    def test_in_a_policy_message(
        self, client: TestClient, admin: dict[str, str], services: Services
    ) -> None:
        upload = {"files": {"bad_input.rego": "package bad_input\n"}, "message": "m\x00"}
        response = client.put("/v1/policies", json=upload, headers=admin)
        if services.settings.database_url.startswith("postgresql"):
            error = _error(response, 400)
            assert error["code"] == "input.unstorable"
            assert "NUL" in error["message"]
        else:  # SQLite stores NUL characters.
            assert response.status_code == 201, response.text


class TestLoneSurrogates:
    """``"\\ud800"`` is valid JSON but not valid Unicode: before, a 500 wherever pydantic
    let it through (containers, ``SecretStr``) and, stored in a scan, on every later list."""

    @pytest.mark.parametrize(
        ("method", "path", "body", "where"),
        [
            (
                "PUT",
                "/v1/policies",
                '{"files": {"a.rego": "package a\\n# \\ud800"}}',
                "files.a.rego",
            ),
            ("POST", "/v1/authorities", '{"name": "a", "scopes": ["\\ud800"]}', "scopes.0"),
            (
                "POST",
                "/v1/signatures",
                '{"image": "x/y", "annotations": {"\\udfff": "b"}}',
                "a key in annotations",
            ),
            ("POST", "/v1/decisions", '{"image": "x/y", "namespace": "\\uD800"}', "namespace"),
        ],
    )
    def test_in_a_request_body_is_400_naming_where(
        self,
        client: TestClient,
        admin: dict[str, str],
        method: str,
        path: str,
        body: str,
        where: str,
    ) -> None:
        headers = {**admin, "content-type": "application/json"}
        response = client.request(method, path, content=body.encode(), headers=headers)
        error = _error(response, 400)
        assert error["code"] == "input.invalid"
        assert f"'{where}' is not valid Unicode text" in error["message"]

    def test_in_a_secret_is_refused_without_echoing_it(
        self, client: TestClient, admin: dict[str, str]
    ) -> None:
        body = b'{"name": "k", "pem": "pem-text", "password": "hunter2\\ud800"}'
        headers = {**admin, "content-type": "application/json"}
        error = _error(client.post("/v1/keys/import", content=body, headers=headers), 400)
        assert "'password' is not valid Unicode text" in error["message"]
        assert "hunter2" not in error["message"] and "pem-text" not in error["message"]

    def test_in_a_scan_report_is_400_and_stores_nothing(
        self,
        client: TestClient,
        admin: dict[str, str],
        registry: RegistryProcess,
        asset: Callable[[str], Path],
    ) -> None:
        repository = f"bad-input{id(object()):x}/app"
        push_random_image_sync(registry, repository, tag="v1")
        image = f"{registry.host}/{repository}:v1"
        report = json.loads(asset("trivy/dd_trivy_schema2_image_os_and_jar.json").read_text())
        report["ArtifactName"] = "\ud800"
        headers = {**admin, "content-type": "application/json"}
        response = client.post(
            "/v1/scans", params={"image": image}, content=json.dumps(report), headers=headers
        )
        error = _error(response, 400)
        assert error["code"] == "scan.malformed"
        assert "'ArtifactName'" in error["message"]
        listed = client.get("/v1/scans", params={"image": image}, headers=admin)
        assert listed.status_code == 200, listed.text
        assert listed.json() == []


class TestRequestIdHeader:
    @pytest.mark.parametrize("incoming", [b"\xc3\xa9t\xc3\xa9", b"\xff\xfe", b"a\x7fb"])
    def test_one_that_is_not_printable_ascii_is_replaced(
        self, client: TestClient, incoming: bytes
    ) -> None:
        # Before: echoed re-encoded ("é" sent as UTF-8 came back as four bytes of mojibake).
        echoed = client.get("/healthz", headers={"X-Request-ID": incoming}).headers
        assert echoed["x-request-id"] != incoming.decode("latin-1")
        assert len(echoed["x-request-id"]) == 32 and echoed["x-request-id"].isalnum()
