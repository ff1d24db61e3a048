"""Shared fixtures: third-party assets, databases, the registry process, the service."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner, Result

from app.config import Settings, get_settings, load_settings
from app.main import create_app
from app.services import Services

pytest_plugins = [
    "tests.fixtures.database",
    "tests.fixtures.registry",
    "tests.fixtures.tls",
    "tests.fixtures.serve",
    "tests.fixtures.sigstore",
    "tests.fixtures.images",
    "tests.fixtures.standins",
    "tests.fixtures.faulty",
    "tests.fixtures.server",
    "tests.fixtures.transfer",
]

ASSETS = Path(__file__).parent / "assets"
# A fixed key-encryption key for tests (base64 of 32 bytes); never used outside tests.
TEST_KEK = "c2VhbGdhdGUtdGVzdC1rZWstMzItYnl0ZXMtbG9uZyE="


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
    """Settings for a service on the suite's database that trusts the test registry.

    The in-process worker runs no audit retention unless a test asks for it: a run at the
    app's start signs head checkpoints while the test writes and counts records."""
    return load_settings(
        database_url=test_database_url,
        insecure_registries=[registry.host],
        registry_total_timeout=10.0,
        key_encryption_key=TEST_KEK,
        audit_retention_interval_seconds=0,
    )


@pytest.fixture
async def services(settings: Settings, clean_database: Any) -> AsyncIterator[Services]:
    """Services on the suite's database and registry, closed in the test's event loop
    (the loop their registry client's connections belong to)."""
    svc = Services.from_settings(settings)
    yield svc
    await svc.aclose()


@dataclass
class Cli:
    """Runs ``sealgate`` commands in process with the test settings in the environment."""

    runner: CliRunner
    env: dict[str, str]

    def __call__(self, *args: str, input: str | None = None) -> Result:
        from app.cli.main import cli

        get_settings.cache_clear()
        try:
            return self.runner.invoke(cli, list(args), env=self.env, input=input)
        finally:
            get_settings.cache_clear()


@pytest.fixture
def sealgate(settings: Settings, clean_database: Any) -> Cli:
    """``sealgate(...)`` runs the CLI against the suite's database and registry."""
    env = {
        "SEALGATE_DATABASE_URL": settings.database_url,
        "SEALGATE_INSECURE_REGISTRIES": ",".join(settings.insecure_registries),
        "SEALGATE_REGISTRY_TOTAL_TIMEOUT": str(settings.registry_total_timeout),
    }
    if settings.key_encryption_key is not None:
        env["SEALGATE_KEY_ENCRYPTION_KEY"] = settings.key_encryption_key.get_secret_value()
    return Cli(runner=CliRunner(), env=env)


@pytest.fixture
def client(services: Services) -> Iterator[TestClient]:
    """The real application (its lifespan, middleware and error handlers) in process."""
    with TestClient(create_app(services=services)) as test_client:
        yield test_client
        # The registry client's connections belong to the app's event loop: close them
        # there, before ``services`` is torn down in the test's own loop.
        if test_client.portal is not None:
            test_client.portal.call(services.close_registry)
