"""Fixtures for scan ingestion: services whose registry client lives in the test's own loop."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app


@pytest.fixture
def scan_client(settings: Settings, clean_database: Any) -> Iterator[TestClient]:
    """The real app owning its services (built and closed by its lifespan, in its loop).

    The suite's ``client`` fixture closes the registry client in a fresh event loop after
    the app's loop has ended, which fails once a request has used the registry.
    """
    with TestClient(create_app(settings)) as client:
        yield client
