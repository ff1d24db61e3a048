"""Every failure is an outcome with its original code, within the deadline, and recorded.

Against a registry that refuses connections, one that never answers, one that answers one
byte a second (stand-ins on 127.0.0.1), the real registry with auth we hold no
credentials for, and a stored scan that cannot be read. Each decision must finish within
its deadline + 0.5 s (a generous bound, not a timing target), in both failure modes.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from sqlalchemy import select, update

from app.db.models import AuditRecord, Decision, ScanRecord
from app.db.session import session_scope
from app.enforce.deadline import Deadline
from app.enforce.outcome import DecisionRequest, Outcome
from app.enforce.pipeline import decide_and_store
from app.enforce.scans import upload_scan
from app.failure_mode import FailureMode
from app.policy.input import Entrypoint, KubernetesContext
from app.services import Services
from tests.fixtures.faulty import DribblingRegistryStandIn, SilentRegistryStandIn, refused_host
from tests.fixtures.images import push_random_image
from tests.fixtures.registry import RegistryProcess

DEADLINE = 2.0
SLACK = 0.5
REPORT = "trivy/dd_trivy_schema2_image_os_and_jar.json"


async def timed_decision(
    services: Services, image: str, *, mode: FailureMode = FailureMode.closed
) -> tuple[Outcome, float]:
    request = DecisionRequest(
        image=image,
        entrypoint=Entrypoint.admission,
        deadline=Deadline(DEADLINE),
        failure_mode=mode,
    )
    started = time.monotonic()
    outcome, _ = await decide_and_store(request, services.decisions)
    return outcome, time.monotonic() - started


def recorded_failures(services: Services) -> list[str | None]:
    with session_scope(services.sessions) as session:
        return list(session.scalars(select(Decision.failure).order_by(Decision.id)))


def assert_failed(outcome: Outcome, elapsed: float, code: str, *, closed: bool = True) -> None:
    assert elapsed < DEADLINE + SLACK, f"took {elapsed:.2f} s"
    assert outcome.failure == code, outcome
    assert outcome.allowed is (not closed)
    (finding,) = outcome.decision.deny if closed else outcome.decision.warn
    assert finding.code == code
    assert finding.image == outcome.image and finding.fix


@pytest.mark.parametrize("mode", [FailureMode.closed, FailureMode.open])
class TestFailingRegistries:
    async def test_refused_connection(self, services: Services, mode: FailureMode) -> None:
        outcome, elapsed = await timed_decision(services, f"{refused_host()}/team/app:1", mode=mode)
        assert_failed(outcome, elapsed, "registry.unreachable", closed=mode is FailureMode.closed)
        assert recorded_failures(services) == ["registry.unreachable"]

    async def test_registry_that_never_answers(
        self, services: Services, silent_registry: SilentRegistryStandIn, mode: FailureMode
    ) -> None:
        image = f"{silent_registry.host}/team/app:1"
        outcome, elapsed = await timed_decision(services, image, mode=mode)
        assert_failed(outcome, elapsed, "deadline.registry", closed=mode is FailureMode.closed)
        assert silent_registry.host in outcome.decision.model_dump_json()
        assert recorded_failures(services) == ["deadline.registry"]

    async def test_registry_that_dribbles_bytes(
        self, services: Services, dribbling_registry: DribblingRegistryStandIn, mode: FailureMode
    ) -> None:
        image = f"{dribbling_registry.host}/team/app:1"
        outcome, elapsed = await timed_decision(services, image, mode=mode)
        assert_failed(outcome, elapsed, "deadline.registry", closed=mode is FailureMode.closed)
        assert recorded_failures(services) == ["deadline.registry"]


class TestOtherFailures:
    async def test_registry_that_wants_credentials(
        self, services: Services, auth_registry: RegistryProcess
    ) -> None:
        outcome, elapsed = await timed_decision(services, f"{auth_registry.host}/team/app:1")
        assert_failed(outcome, elapsed, "registry.unauthorized")
        assert recorded_failures(services) == ["registry.unauthorized"]

    async def test_unreadable_stored_scan(
        self,
        services: Services,
        unique_repo: Callable[[str], str],
        asset: Callable[[str], object],
    ) -> None:
        image, _ = await push_random_image(services.registry, unique_repo("app"))
        report = asset(REPORT).read_bytes()  # type: ignore[attr-defined]
        await upload_scan(services, image=image, report=report, uploaded_by="t")
        with session_scope(services.sessions) as session:
            session.execute(update(ScanRecord).values(vulnerabilities=[{"id": 1}]))

        outcome, elapsed = await timed_decision(services, str(image))

        assert_failed(outcome, elapsed, "evidence.scan")
        assert recorded_failures(services) == ["evidence.scan"]

    async def test_an_admission_failure_is_audited_with_its_namespace_and_object(
        self, services: Services
    ) -> None:
        """A decision that fails before its input is built still records who asked from
        where: the audit record names the namespace and the object. (A decision asked for
        alone, as ``POST /v1/decisions`` and ``policy decide`` do; a review's record is
        tested in tests/api/test_admission.py.)"""
        context = KubernetesContext(
            namespace="payments", kind="Deployment", name="api", operation="CREATE"
        )
        request = DecisionRequest(
            image=f"{refused_host()}/team/app:1",
            entrypoint=Entrypoint.admission,
            deadline=Deadline(DEADLINE),
            kubernetes=context,
        )

        outcome, _ = await decide_and_store(request, services.decisions)

        assert outcome.failure == "registry.unreachable"
        with session_scope(services.sessions) as session:
            record = session.scalars(
                select(AuditRecord).where(AuditRecord.kind == "admission.decision")
            ).one()
            assert (record.namespace, record.object) == ("payments", "Deployment/api")
            assert record.reasons == ["registry.unreachable"]

    async def test_a_failing_registry_is_not_asked_again_at_once(
        self, services: Services, silent_registry: SilentRegistryStandIn
    ) -> None:
        image = f"{silent_registry.host}/team/app:1"
        await timed_decision(services, image)
        asked = silent_registry.connections

        again, elapsed = await timed_decision(services, image)

        assert again.failure == "deadline.registry"
        assert elapsed < 0.5, "the remembered failure answers at once"
        assert silent_registry.connections == asked
        assert recorded_failures(services) == ["deadline.registry", "deadline.registry"]
