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
    """The real app owning its services: built from ``settings`` and closed by its own
    lifespan (unlike ``client``, which injects the suite's ``services``)."""
    with TestClient(create_app(settings)) as client:
        yield client
