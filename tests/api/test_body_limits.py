"""Request bodies over the limit are 413 on every route, over real HTTP (uvicorn), whether
they declare a Content-Length or arrive chunked; the JSON parser never sees them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest

from app.config import Settings
from app.limits import MAX_BODY_BYTES
from tests.fixtures.server import ServerProcess, bearer_for

MIB = 1024 * 1024


def chunked(total: int) -> Iterator[bytes]:
    """A JSON-looking body sent with Transfer-Encoding: chunked (no Content-Length)."""
    yield b'{"image": "'
    sent = 0
    while sent < total:
        yield b"x" * MIB
        sent += MIB
    yield b'"}'


@pytest.fixture
def server(serve: Callable[..., ServerProcess]) -> ServerProcess:
    return serve()


ROUTES = [
    ("POST", "/v1/verify"),
    ("POST", "/v1/decisions"),
    ("POST", "/v1/authorities"),
    ("PUT", "/v1/policies"),
    ("POST", "/v1/scans?image=127.0.0.1:1/a/b@sha256:" + "0" * 64),
]


def test_an_oversized_chunked_body_is_413_on_every_route(
    server: ServerProcess, settings: Settings
) -> None:
    headers = {"Content-Type": "application/json", **bearer_for(settings, "admin")}
    with httpx.Client(base_url=server.url, timeout=60) as client:
        for method, path in ROUTES:
            answer = client.request(
                method, path, content=chunked(MAX_BODY_BYTES + MIB), headers=headers
            )
            assert answer.status_code == 413, (path, answer.text)
            assert answer.json()["error"]["code"] == "input.too_large"
            assert answer.request.headers["transfer-encoding"] == "chunked"


def test_a_chunked_body_under_the_limit_still_reaches_the_route(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        answer = client.post(
            "/v1/verify", content=iter([b"{not json"]), headers={"Content-Type": "application/json"}
        )
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "input.invalid"
