"""Shared fixtures: third-party assets, databases, the registry process, the service."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.config import Settings, load_settings
from app.main import create_app
from app.services import Services

pytest_plugins = ["tests.fixtures.database", "tests.fixtures.registry"]

ASSETS = Path(__file__).parent / "assets"


@pytest.fixture(scope="session")
def asset() -> Callable[[str], Path]:
    """Path of a third-party sample under tests/assets (see tests/assets/PROVENANCE.md)."""

    def _asset(name: str) -> Path:
        path = ASSETS / name
        if not path.exists():
            raise FileNotFoundError(f"no test asset {name} under {ASSETS}")
        return path

    return _asset


@pytest.fixture(scope="session")
def asset_json(asset: Callable[[str], Path]) -> Callable[[str], Any]:
    def _load(name: str) -> Any:
        return json.loads(asset(name).read_text())

    return _load


@pytest.fixture
def settings(test_database_url: str, registry: Any) -> Settings:
    """Settings for a service on the suite's database that trusts the test registry."""
    return load_settings(
        database_url=test_database_url,
        insecure_registries=[registry.host],
        registry_total_timeout=10.0,
    )


@pytest.fixture
def services(settings: Settings, clean_database: Any) -> Iterator[Services]:
    svc = Services.from_settings(settings)
    yield svc
    import asyncio

    asyncio.run(svc.aclose())


@pytest.fixture
def client(services: Services) -> Iterator[TestClient]:
    """The real application (its lifespan, middleware and error handlers) in process."""
    with TestClient(create_app(services=services)) as test_client:
        yield test_client
