"""``/docs`` works where no CDN can be reached: a real headless Chromium, allowed to reach
127.0.0.1 only, loads it from a real uvicorn and lists the API's operations."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app
from tests.fixtures.chromium import load_page
from tests.fixtures.registry import free_port

# Swagger UI marks each operation it renders with its path.
OPERATION_PATH = re.compile(r'data-path="([^"]+)"')


@pytest.fixture
def served(settings: Settings, clean_database: Any) -> Iterator[str]:
    """The real app under uvicorn on 127.0.0.1 (it owns and closes its services)."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_config=None)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def test_docs_list_the_operations_with_only_loopback_requests(served: str) -> None:
    page = load_page(f"{served}/docs", ready_js="document.querySelectorAll('.opblock').length > 0")
    paths = set(OPERATION_PATH.findall(page.dom))
    assert {"/v1/verify", "/v1/signatures", "/v1/scans", "/readyz"} <= paths, page.dom[-2000:]
    outside = [u for u in page.requests if not u.startswith(f"{served}/")]
    assert outside == [], outside
    assert f"{served}/openapi.json" in page.requests


def test_docs_assets_come_from_the_package(client: TestClient) -> None:
    html = client.get("/docs").text
    assert "/docs/assets/swagger-ui-bundle.js" in html
    assert "cdn." not in html and "https://" not in html
    script = client.get("/docs/assets/swagger-ui-bundle.js")
    assert script.status_code == 200 and len(script.content) > 100_000


def test_redoc_is_not_served(client: TestClient) -> None:
    # Its bundle fetches a logo from Redocly's CDN: rather none than half offline.
    assert client.get("/redoc").status_code == 404
