"""Admission end to end: a real ``sealgate serve`` over TLS, the real registry, the suite's
database (PostgreSQL when available), reviews posted as the API server posts them.

Dead and slow registries (a port nothing listens on, one that accepts and never answers,
one that answers a byte a second) must get an answer within the budget + 0.5 s in both
failure modes, recorded with the cause's code.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonpatch
import pytest
from sqlalchemy import select

from app.config import Settings
from app.db.models import Decision
from app.db.session import session_scope
from app.enforce.scans import upload_scan
from app.services import Services
from tests.api.test_admission import (
    CRITICAL_REPORT,
    cronjob,
    deployment,
    review,
    signed,
    tagged,
    trusted_key,  # noqa: F401  (a fixture)
)
from tests.fixtures.faulty import DribblingRegistryStandIn, SilentRegistryStandIn, refused_host
from tests.fixtures.images import push_random_image
from tests.fixtures.registry import free_port, stop_process
from tests.fixtures.serve import SEALGATE, wait_until_answering
from tests.fixtures.tls import TlsFiles

BUDGET = 2.0
SLACK = 0.5


class Webhook:
    """A ``sealgate serve --tls-cert --tls-key`` process and a client trusting its CA."""

    def __init__(self, *, settings: Settings, tls: TlsFiles, mode: str, log: Path) -> None:
        kek = settings.key_encryption_key
        self.port = free_port()
        self.mode = mode
        env = {
            **os.environ,
            "SEALGATE_DATABASE_URL": settings.database_url,
            "SEALGATE_INSECURE_REGISTRIES": ",".join(settings.insecure_registries),
            "SEALGATE_KEY_ENCRYPTION_KEY": kek.get_secret_value() if kek else "",
            "SEALGATE_ADMISSION_BUDGET": str(BUDGET),
            "SEALGATE_FAILURE_MODE": mode,
            "SEALGATE_WORKER_ENABLED": "false",
        }
        args = [
            "--port",
            str(self.port),
            "--tls-cert",
            str(tls.server_cert),
            "--tls-key",
            str(tls.server_key),
        ]
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [SEALGATE, "serve", *args], env=env, stdout=out, stderr=out
            )
        self.verify = ssl.create_default_context(cafile=str(tls.ca_cert))
        self.url = f"https://127.0.0.1:{self.port}"
        wait_until_answering(f"{self.url}/readyz", verify=self.verify, proc=self.proc)
        self.http = httpx.Client(base_url=self.url, verify=self.verify, timeout=30)

    def post(self, body: dict[str, Any], *, mutate: bool = False) -> tuple[dict[str, Any], float]:
        started = time.monotonic()
        response = self.http.post(
            "/admission/mutate" if mutate else "/admission/validate", json=body
        )
        elapsed = time.monotonic() - started
        assert response.status_code == 200, response.text
        return response.json()["response"], elapsed

    def close(self) -> None:
        self.http.close()
        stop_process(self.proc)


@pytest.fixture(params=["closed", "open"])
def webhook(
    request: pytest.FixtureRequest,
    settings: Settings,
    tls_files: TlsFiles,
    clean_database: Any,
    tmp_path: Path,
) -> Iterator[Webhook]:
    hook = Webhook(settings=settings, tls=tls_files, mode=request.param, log=tmp_path / "s.log")
    yield hook
    hook.close()


@pytest.fixture
def closed_webhook(
    settings: Settings, tls_files: TlsFiles, clean_database: Any, tmp_path: Path
) -> Iterator[Webhook]:
    hook = Webhook(settings=settings, tls=tls_files, mode="closed", log=tmp_path / "s.log")
    yield hook
    hook.close()


def failures(services: Services) -> list[str | None]:
    with session_scope(services.sessions) as session:
        return list(session.scalars(select(Decision.failure).order_by(Decision.id)))


def wait_for_records(services: Services, count: int) -> list[str | None]:
    deadline = time.monotonic() + 5  # the webhook's recorder writes in batches
    while time.monotonic() < deadline:
        found = failures(services)
        if len(found) >= count:
            return found
        time.sleep(0.05)
    return failures(services)


@pytest.mark.usefixtures("trusted_key")
class TestOverHttps:
    async def test_signed_admitted_unsigned_init_denied_cve_denied_and_pinned(
        self,
        services: Services,
        closed_webhook: Webhook,
        unique_repo: Callable[[str], str],
        asset: Callable[[str], Path],
    ) -> None:
        good = await signed(services, unique_repo("web"))
        vulnerable = await signed(services, unique_repo("api"))
        await upload_scan(
            services, image=vulnerable, report=asset(CRITICAL_REPORT).read_bytes(), uploaded_by="t"
        )
        bad, _ = await push_random_image(services.registry, unique_repo("setup"))

        admitted, _ = closed_webhook.post(review("Deployment", deployment(tagged(good))))
        init_denied, _ = closed_webhook.post(
            review("CronJob", cronjob(tagged(good), init=(tagged(bad),)), group="batch")
        )
        cve_denied, _ = closed_webhook.post(review("Deployment", deployment(tagged(vulnerable))))
        obj = deployment(tagged(good))
        mutated, _ = closed_webhook.post(review("Deployment", obj), mutate=True)

        assert admitted["allowed"] is True, admitted
        assert init_denied["allowed"] is False
        assert tagged(bad) in init_denied["status"]["message"]
        assert cve_denied["allowed"] is False and "CVE-" in cve_denied["status"]["message"]
        patch = jsonpatch.JsonPatch(json.loads(base64.b64decode(mutated["patch"])))
        pinned = patch.apply(copy.deepcopy(obj))
        image = pinned["spec"]["template"]["spec"]["containers"][0]["image"]
        assert image == f"{tagged(good)}@{good.digest}"


class TestDeadAndSlowRegistries:
    """Each answered within the budget + 0.5 s, as the failure mode says, and recorded."""

    def _check(self, webhook: Webhook, services: Services, image: str, code: str) -> None:
        answer, elapsed = webhook.post(review("Deployment", deployment(image)))
        assert elapsed < BUDGET + SLACK, f"answered after {elapsed:.2f} s"
        if webhook.mode == "open":
            assert answer["allowed"] is True
            assert any(code in w and image in w for w in answer.get("warnings", [])), answer
        else:
            assert answer["allowed"] is False
            assert answer["status"]["code"] == 403
            assert image in answer["status"]["message"] and code in answer["status"]["message"]
        assert wait_for_records(services, 1) == [code]

    def test_stopped_registry(self, webhook: Webhook, services: Services) -> None:
        self._check(webhook, services, f"{refused_host()}/team/app:1", "registry.unreachable")

    def test_registry_that_never_answers(
        self, webhook: Webhook, services: Services, silent_registry: SilentRegistryStandIn
    ) -> None:
        self._check(webhook, services, f"{silent_registry.host}/team/app:1", "deadline.registry")

    def test_registry_that_dribbles(
        self, webhook: Webhook, services: Services, dribbling_registry: DribblingRegistryStandIn
    ) -> None:
        self._check(webhook, services, f"{dribbling_registry.host}/team/app:1", "deadline.registry")
