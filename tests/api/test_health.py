"""The service skeleton: health, readiness, metrics, docs, errors, limits."""

from __future__ import annotations

import pytest
from fastapi import APIRouter
from fastapi.testclient import TestClient

from app.db.session import make_engine
from app.error_codes import CODES
from app.errors import Error, ForbiddenError, InputError, RegistryError, ScanError, StoreError
from app.main import create_app
from app.services import Services


class TestHealth:
    def test_healthz(self, client: TestClient) -> None:
        assert client.get("/healthz").json() == {"status": "ok"}

    def test_readyz_checks_database_and_policy_engine(self, client: TestClient) -> None:
        body = client.get("/readyz").json()
        assert body == {
            "status": "ready",
            "checks": {"database": "ok", "policy_engine": "ok"},
        }

    def test_readyz_is_503_when_the_database_is_gone(self, services: Services) -> None:
        with TestClient(create_app(services=services)) as client:
            services.engine = make_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")
            response = client.get("/readyz")
        assert response.status_code == 503
        assert response.json()["checks"]["database"].startswith("store.unavailable")

    def test_metrics_count_requests_with_latency_buckets_to_10s(self, client: TestClient) -> None:
        client.get("/healthz")
        text = client.get("/metrics").text
        assert 'sealgate_http_requests_total{method="GET",route="/healthz",status="200"}' in text
        assert 'sealgate_http_request_duration_seconds_bucket{le="10.0"' in text

    def test_metrics_label_docs_and_openapi_by_route(self, client: TestClient) -> None:
        client.get("/docs")
        client.get("/openapi.json")
        client.get("/docs/assets/swagger-ui.css")
        client.get("/no-such-route")
        text = client.get("/metrics").text
        assert 'sealgate_http_requests_total{method="GET",route="/docs",status="200"}' in text
        assert (
            'sealgate_http_requests_total{method="GET",route="/openapi.json",status="200"}' in text
        )
        assert (
            'sealgate_http_requests_total{method="GET",route="/docs/assets",status="200"}' in text
        )
        assert 'sealgate_http_requests_total{method="GET",route="unmatched",status="404"}' in text

    def test_openapi_docs(self, client: TestClient) -> None:
        assert client.get("/docs").status_code == 200
        assert client.get("/openapi.json").json()["info"]["title"] == "Sealgate"

    def test_request_id_is_echoed_or_generated(self, client: TestClient) -> None:
        assert (
            client.get("/healthz", headers={"X-Request-ID": "abc123"}).headers["x-request-id"]
            == "abc123"
        )
        assert len(client.get("/healthz").headers["x-request-id"]) == 32


class TestErrors:
    def _app_with(self, services: Services, exc: Exception) -> TestClient:
        app = create_app(services=services)
        router = APIRouter()

        @router.get("/boom")
        async def boom() -> None:
            raise exc

        app.include_router(router)
        return TestClient(app, raise_server_exceptions=False)

    def test_sealgate_error_becomes_json_with_its_status(self, services: Services) -> None:
        with self._app_with(services, InputError("image reference 'x::y' is not valid")) as c:
            response = c.get("/boom")
        assert response.status_code == 400
        assert response.json() == {
            "error": {"code": "input.invalid", "message": "image reference 'x::y' is not valid"}
        }

    @pytest.mark.parametrize(
        ("error", "status"),
        [
            (RegistryError("registry r: no such tag", code="registry.not_found"), 404),
            (RegistryError("registry r: no answer", code="registry.timeout"), 504),
            (ScanError("the report is too large", code="scan.too_large"), 413),
            (ForbiddenError("not from here", code="hook.address_refused"), 403),
        ],
        ids=lambda v: getattr(v, "code", v),
    )
    def test_the_status_is_the_catalogues_for_the_code(
        self, services: Services, error: Error, status: int
    ) -> None:
        # Not the class's: a registry error answers 404, 504 or 502 by its code.
        assert CODES[error.code].http_status == status
        with self._app_with(services, error) as c:
            response = c.get("/boom")
        assert response.status_code == status
        assert response.json()["error"]["code"] == error.code

    def test_store_error_is_503(self, services: Services) -> None:
        with self._app_with(services, StoreError("database unreachable")) as c:
            assert c.get("/boom").status_code == 503

    def test_unexpected_error_is_a_bare_500_without_traceback(self, services: Services) -> None:
        with self._app_with(services, RuntimeError("secret internals")) as c:
            response = c.get("/boom")
        assert response.status_code == 500
        assert "secret internals" not in response.text
        assert response.json()["error"]["code"] == "internal"

    def test_oversized_body_is_413_before_the_route(self, client: TestClient) -> None:
        response = client.post("/healthz", content=b"x" * (17 * 1024 * 1024))
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "input.too_large"

    def test_oversized_chunked_body_is_413(self, client: TestClient) -> None:
        def chunks():
            for _ in range(20):
                yield b"x" * (1024 * 1024)

        response = client.post("/healthz", content=chunks())
        assert response.status_code in (405, 413)
