"""Fixtures for the push gate: services with hook secrets, a client, the inbox's rows."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import func, select

from app.config import Settings
from app.db.models import ImageVerdict, InboxEvent
from app.main import create_app
from app.services import Services

HOOK_SECRET = "hook-secret-for-tests"


def with_settings(settings: Settings, **changes: Any) -> Settings:
    """A copy of ``settings`` with ``changes`` (secrets given as plain strings)."""
    secret_fields = {
        "hook_secret",
        "hook_secret_distribution",
        "hook_secret_harbor",
        "harbor_password",
        "verdict_webhook_secret",
    }
    update = {
        k: SecretStr(v) if k in secret_fields and isinstance(v, str) else v
        for k, v in changes.items()
    }
    return settings.model_copy(update=update)


@pytest.fixture
def hook_settings(settings: Settings) -> Settings:
    """Settings with a hook secret and no in-process worker (tests drive the worker)."""
    return with_settings(settings, hook_secret=HOOK_SECRET, worker_enabled=False)


@pytest.fixture
async def hook_services(hook_settings: Settings, clean_database: Any) -> AsyncIterator[Services]:
    svc = Services.from_settings(hook_settings)
    yield svc
    await svc.aclose()


@pytest.fixture
def make_client(
    hook_settings: Settings, clean_database: Any
) -> Iterator[Callable[..., TestClient]]:
    """``make_client(**setting_changes)``: the real app in process on changed settings."""
    opened: list[tuple[TestClient, Services]] = []

    def _make(**changes: Any) -> TestClient:
        services = Services.from_settings(with_settings(hook_settings, **changes))
        client = TestClient(create_app(services=services))
        client.__enter__()
        opened.append((client, services))
        return client

    yield _make
    for client, services in opened:
        if client.portal is not None:
            client.portal.call(services.close_registry)
        client.__exit__(None, None, None)
        services.close()


@pytest.fixture
def inbox_count(test_engine: Any) -> Callable[[], int]:
    def _count() -> int:
        with test_engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(InboxEvent)).scalar_one())

    return _count


@pytest.fixture
def verdict_count(test_engine: Any) -> Callable[[], int]:
    def _count() -> int:
        with test_engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(ImageVerdict)).scalar_one())

    return _count
