"""End to end: a real registry notifies a Sealgate served by uvicorn over TLS on the suite's
database (PostgreSQL when available); a pushed image gets its verdict with no call from the
test, and Sealgate's own signature pushes get none."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from app.auth.tokens import create_token
from app.config import load_settings
from app.db.models import ImageVerdict, InboxEvent
from app.db.session import session_scope
from app.services import Services
from app.signing.keys import generate_key
from app.signing.signers import Algorithm
from tests.conftest import TEST_KEK
from tests.fixtures.images import push_random_image
from tests.fixtures.registry import RegistryProcess, free_port, stop_process, stop_registry
from tests.fixtures.tls import TlsFiles
from tests.hooks.served import Served, registry_notifying, serve_sealgate

SECRET = "e2e-hook-secret"


@pytest.fixture
def gate(
    test_database_url: str, tls_files: TlsFiles, tmp_path: Path, clean_database: Any
) -> Iterator[tuple[Served, RegistryProcess]]:
    port = free_port()
    registry = registry_notifying(
        port=port, secret=SECRET, tls=tls_files, workdir=tmp_path / "registry"
    )
    env = {
        "SEALGATE_DATABASE_URL": test_database_url,
        "SEALGATE_INSECURE_REGISTRIES": registry.host,
        "SEALGATE_HOOK_SECRET": SECRET,
        "SEALGATE_HOOK_ALLOWED_CIDRS": "127.0.0.1/32",
        "SEALGATE_WORKER_POLL_SECONDS": "0.1",
        "SEALGATE_KEY_ENCRYPTION_KEY": TEST_KEK,
    }
    try:
        served = serve_sealgate(env=env, tls=tls_files, workdir=tmp_path, port=port)
    except BaseException:
        stop_registry(registry)
        raise
    yield served, registry
    stop_registry(registry)
    stop_process(served.process)


def _verdicts(services: Services, name: str) -> list[ImageVerdict]:
    with session_scope(services.sessions) as session:
        return list(session.scalars(select(ImageVerdict).where(ImageVerdict.name == name)))


async def _wait_for_verdict(
    services: Services, name: str, digest: str, served: Served, registry: RegistryProcess
) -> ImageVerdict:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = [
            v for v in await asyncio.to_thread(_verdicts, services, name) if v.digest == digest
        ]
        if found:
            return found[0]
        await asyncio.sleep(0.1)
    logs = f"sealgate:\n{served.log()[-3000:]}\nregistry:\n{registry.log()[-3000:]}"
    raise AssertionError(f"no verdict for {name}@{digest}\n{logs}")


async def test_push_gets_a_verdict_and_signature_pushes_get_none(
    gate: tuple[Served, RegistryProcess], test_database_url: str, tls_files: TlsFiles
) -> None:
    served, registry = gate
    settings = load_settings(
        database_url=test_database_url,
        insecure_registries=[registry.host],
        key_encryption_key=TEST_KEK,
    )
    services = Services.from_settings(settings)
    try:
        image, _ = await push_random_image(
            services.registry, f"{registry.host}/team/app", tag="1.0"
        )
        verdict = await _wait_for_verdict(
            services, image.name, image.digest or "", served, registry
        )
        assert verdict.allowed is False and verdict.tag == "1.0" and verdict.decision_id is not None
        codes = {r["code"] for r in verdict.reasons}
        assert codes & {"signature.missing", "signature.no_authority"}, verdict.reasons

        # Sign it through the served API (bundle referrer and legacy .sig tag).
        with session_scope(services.sessions) as session:
            generate_key(
                session,
                settings=settings,
                name="release",
                algorithm=Algorithm.ecdsa_p256,
                scopes=["**"],
            )
            token = create_token(session, name="signer", scopes=["admin"]).token
        import ssl

        import httpx

        context = ssl.create_default_context(cafile=str(tls_files.ca_cert))
        async with httpx.AsyncClient(verify=context, timeout=30) as client:
            reply = await client.post(
                f"{served.url}/v1/signatures",
                json={"image": str(image), "key": "release", "format": "both"},
                headers={"Authorization": f"Bearer {token}"},
            )
        assert reply.status_code == 201, reply.text

        # The registry delivers in order: once a later push has its verdict, the signature
        # pushes before it have been delivered too.
        sentinel, _ = await push_random_image(
            services.registry, f"{registry.host}/team/sentinel", tag="1.0"
        )
        await _wait_for_verdict(services, sentinel.name, sentinel.digest or "", served, registry)
        assert [v.digest for v in await asyncio.to_thread(_verdicts, services, image.name)] == [
            image.digest
        ]
        with session_scope(services.sessions) as session:
            statuses = {e.image: e.status.value for e in session.scalars(select(InboxEvent))}
        assert all(status in ("done", "ignored") for status in statuses.values()), statuses
    finally:
        await services.aclose()
