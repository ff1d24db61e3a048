"""Fixtures of the enforcement tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from app.audit.inputs import load_input
from app.config import load_settings
from app.db.models import Decision
from app.db.session import session_scope
from app.services import Services
from app.signing.keys import generate_key, get_key
from app.signing.signers import Algorithm
from app.verify.trust import key_authority, save_authority
from tests.conftest import TEST_KEK

ServicesFactory = Callable[..., Services]


@pytest.fixture
async def make_services(
    test_database_url: str, clean_database: Any
) -> AsyncIterator[ServicesFactory]:
    """``make_services(**settings)``: services on the suite's database, closed at the end."""
    built: list[Services] = []

    def _make(**values: Any) -> Services:
        settings = load_settings(
            database_url=test_database_url,
            key_encryption_key=TEST_KEK,
            docker_config=None,
            registry_total_timeout=10.0,
            registry_retries=0,
            cache_evidence_ttl=0,
            cache_decision_ttl=0,
            cache_tag_ttl=0,
            cache_failure_ttl=0,
            **values,
        )
        services = Services.from_settings(settings)
        built.append(services)
        return services

    yield _make
    for services in built:
        await services.aclose()


def trust_new_key(services: Services, *, scope: str, name: str = "ci") -> str:
    """A stored key ``name`` and an authority of the same name trusting it for ``scope``;
    returns the public key (PEM)."""
    with session_scope(services.sessions) as session:
        generate_key(
            session,
            settings=services.settings,
            name=name,
            algorithm=Algorithm.ecdsa_p256,
            scopes=["**"],
        )
        public = get_key(session, name=name).public_key_pem
        save_authority(session, key_authority(name=name, keys=[public], scopes=[scope]))
    return public


def recorded_input(services: Services, row: Decision) -> dict[str, Any]:
    """The input a decision record names, read back whole from the stored inputs."""
    with session_scope(services.sessions) as session:
        document = load_input(session, row.input_hash)
    assert document is not None, f"decision {row.id} names no stored input"
    return document
