"""Fixtures for scan ingestion: services whose registry client lives in the test's own loop."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app
from app.services import Services


@pytest.fixture
async def scan_services(settings: Settings, clean_database: Any) -> AsyncIterator[Services]:
    """Services on the suite's database and registry, closed in the test's event loop."""
    services = Services.from_settings(settings)
    yield services
    await services.aclose()


@pytest.fixture
def scan_client(settings: Settings, clean_database: Any) -> Iterator[TestClient]:
    """The real app owning its services (built and closed by its lifespan, in its loop).

    The suite's ``client`` fixture closes the registry client in a fresh event loop after
    the app's loop has ended, which fails once a request has used the registry.
    """
    with TestClient(create_app(settings)) as client:
        yield client
