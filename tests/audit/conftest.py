"""Fixtures for the audit trail's tests: a migrated empty database of each backend."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest
from sqlalchemy.orm import Session, sessionmaker

from app.audit.checkpoints import CheckpointKey
from app.db.migrate import upgrade
from app.db.session import make_engine, make_session_factory
from tests.conftest import TEST_KEK


@pytest.fixture
def audit_sessions(database_url: str) -> Iterator[sessionmaker[Session]]:
    """Sessions on an empty, migrated database (SQLite, then PostgreSQL)."""
    upgrade(database_url)
    engine = make_engine(database_url)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture
def kek() -> bytes:
    return base64.b64decode(TEST_KEK)


@pytest.fixture
def checkpoint_key(kek: bytes) -> CheckpointKey:
    return CheckpointKey.from_kek(kek)
