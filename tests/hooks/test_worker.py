"""The inbox worker: claims with leases, retries, dead events, verdicts, deletes, scans.

Decisions run through the real pipeline (``decide_push``) on images pushed to the real
registry, except where a test injects a decision to count calls or to fail on purpose.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from app.audit.chain import append_audit
from app.audit.inputs import load_input
from app.audit.retention import RETENTION_LOCK
from app.db.base import utcnow
from app.db.migrate import upgrade
from app.db.models import AuditRecord, Decision, ImageVerdict, InboxEvent, InboxStatus, ScanRecord
from app.db.session import make_engine, make_session_factory, session_scope
from app.errors import LostClaim, RegistryError
from app.hooks.events import EventAction, EventSource, RegistryEvent, ScanOverview
from app.hooks.harbor_api import report_path
from app.hooks.inbox import claim, fail, finish, store_events
from app.hooks.verdicts import PushDecision, Reason
from app.hooks.worker import Worker
from app.oci.refs import ImageRef
from app.services import Services
from tests.audit.samples import decision as audit_decision
from tests.conftest import Cli
from tests.fixtures.images import push_random_image
from tests.fixtures.registry import RegistryProcess
from tests.hooks.conftest import with_settings
from tests.hooks.harbor_standin import HarborApiStandIn


def push_event(
    image: ImageRef, *, event_id: str = "e1", action: EventAction = EventAction.push, **extra: Any
) -> RegistryEvent:
    return RegistryEvent(
        source=EventSource.distribution,
        event_id=event_id,
        action=action,
        registry=image.registry,
        repository=image.repository,
        tag=image.tag,
        digest=image.digest,
        actor="ci",
        **extra,
    )


def store(services: Services, *events: RegistryEvent) -> None:
    with session_scope(services.sessions) as session:
        store_events(session, list(events))


def rows(services: Services, model: Any) -> list[Any]:
    with session_scope(services.sessions) as session:
        return list(session.scalars(select(model).order_by(model.id)))


class CountingDecide:
    """An injected decision: allowed, counted per image."""

    def __init__(self, *, allowed: bool = True, error: Exception | None = None) -> None:
        self.calls: list[str] = []
        self.allowed = allowed
        self.error = error

    async def __call__(
        self,
        services: Services,
        *,
        image: str,
        event_id: str,
        actor: str | None,
        deadline_seconds: float,
    ) -> PushDecision:
        self.calls.append(image)
        if self.error is not None:
            raise self.error
        reasons = () if self.allowed else (Reason(code="test.denied", message="denied"),)
        return PushDecision(
            allowed=self.allowed, digest=ImageRef.parse(image).digest, reasons=reasons
        )


FAKE = ImageRef.parse("127.0.0.1:1/team/app@sha256:" + "a" * 64)


class TestClaims:
    def test_two_claims_take_disjoint_rows(self, hook_services: Services) -> None:
        store(hook_services, *(push_event(FAKE, event_id=f"e{i}") for i in range(10)))
        with (
            session_scope(hook_services.sessions) as a_session,
            session_scope(hook_services.sessions) as b_session,
        ):
            a = claim(a_session, limit=6, lease_seconds=60)
            a_session.flush()
            if hook_services.engine.dialect.name != "postgresql":
                a_session.commit()
            b = claim(b_session, limit=6, lease_seconds=60)
        assert len(a) == 6 and len(b) == 4
        assert not {c.id for c in a} & {c.id for c in b}

    def test_an_expired_lease_is_claimed_again_and_fences_the_first_worker(
        self, hook_services: Services
    ) -> None:
        store(hook_services, push_event(FAKE))
        now = utcnow()
        with session_scope(hook_services.sessions) as session:
            (first,) = claim(session, limit=1, lease_seconds=5, now=now)
        with session_scope(hook_services.sessions) as session:
            assert claim(session, limit=1, lease_seconds=5, now=now + dt.timedelta(seconds=1)) == []
        with session_scope(hook_services.sessions) as session:
            (second,) = claim(session, limit=1, lease_seconds=5, now=now + dt.timedelta(seconds=6))
        assert second.id == first.id and second.attempts == 2 and second.token != first.token
        with pytest.raises(LostClaim), session_scope(hook_services.sessions) as session:
            finish(session, first, status=InboxStatus.done, outcome={})
        with session_scope(hook_services.sessions) as session:
            finish(session, second, status=InboxStatus.done, outcome={})
        (row,) = rows(hook_services, InboxEvent)
        assert row.status is InboxStatus.done and row.claim_token is None

    def test_failures_back_off_then_die(self, hook_services: Services) -> None:
        store(hook_services, push_event(FAKE))
        now = utcnow()
        waits = []
        for attempt in range(1, 4):
            with session_scope(hook_services.sessions) as session:
                (claimed,) = claim(session, limit=1, lease_seconds=5, now=now)
            assert claimed.attempts == attempt
            with session_scope(hook_services.sessions) as session:
                status = fail(
                    session, claimed, error="boom", max_attempts=3, base=10, cap=1000, now=now
                )
            (row,) = rows(hook_services, InboxEvent)
            waits.append((row.next_attempt_at - now).total_seconds())
            with session_scope(hook_services.sessions) as session:  # not due before its time
                assert claim(session, limit=1, lease_seconds=5, now=now) == []
            now = row.next_attempt_at
        assert status is InboxStatus.dead
        assert 5 <= waits[0] <= 10 and 10 <= waits[1] <= 20  # exponential, with jitter
        assert row.status is InboxStatus.dead and row.last_error == "boom"

    def test_sqlite_claims_are_safe_too(self, tmp_path: Any) -> None:
        url = f"sqlite:///{tmp_path / 'inbox.db'}"
        upgrade(url)
        engine = make_engine(url)
        sessions = make_session_factory(engine)
        with session_scope(sessions) as session:
            store_events(session, [push_event(FAKE, event_id=f"e{i}") for i in range(5)])
            store_events(session, [push_event(FAKE, event_id="e1")])
        taken: list[int] = []
        for _ in range(3):
            with session_scope(sessions) as session:
                taken += [c.id for c in claim(session, limit=2, lease_seconds=60)]
        engine.dispose()
        assert sorted(taken) == sorted(set(taken)) and len(taken) == 5


class TestPushVerdicts:
    async def test_a_pushed_image_gets_a_recorded_denial_naming_why(
        self, hook_services: Services, registry: RegistryProcess, unique_repo: Callable[[str], str]
    ) -> None:
        image, _ = await push_random_image(hook_services.registry, unique_repo("gate"), tag="1.0")
        store(hook_services, push_event(image))
        assert await Worker(services=hook_services).run_once() == 1
        (verdict,) = rows(hook_services, ImageVerdict)
        assert verdict.name == image.name and verdict.digest == image.digest
        assert verdict.allowed is False
        assert "signature.missing" in {
            r["code"] for r in verdict.reasons
        } or "signature.no_authority" in {r["code"] for r in verdict.reasons}
        assert verdict.decision_id is not None and verdict.trigger == "push"
        (event,) = rows(hook_services, InboxEvent)
        assert event.status is InboxStatus.done and event.outcome == {
            "verdict": verdict.id,
            "allowed": False,
        }
        assert await Worker(services=hook_services).run_once() == 0  # nothing left

    async def test_a_referrer_push_gets_no_verdict(
        self, hook_services: Services, unique_repo: Callable[[str], str]
    ) -> None:
        image, _ = await push_random_image(hook_services.registry, unique_repo("gate"))
        referrer = await hook_services.registry.push_referrer(
            image,
            artifact_type="application/vnd.dev.sigstore.bundle.v0.3+json",
            layers=[(b"{}", "application/vnd.dev.sigstore.bundle.v0.3+json", {})],
            annotations={},
        )
        store(hook_services, push_event(image.with_digest(referrer.digest), event_id="sig"))
        decide = CountingDecide()
        await Worker(services=hook_services, decide=decide).run_once()
        assert decide.calls == [] and rows(hook_services, ImageVerdict) == []
        (event,) = rows(hook_services, InboxEvent)
        assert event.status is InboxStatus.ignored

    async def test_each_event_is_decided_once_and_a_rescan_wins(
        self, hook_services: Services
    ) -> None:
        decide = CountingDecide()
        store(hook_services, push_event(FAKE, event_id="p1"))
        worker = Worker(services=hook_services, decide=decide)
        await worker.run_once()
        store(hook_services, push_event(FAKE, event_id="p1"))  # redelivered: dropped
        await worker.run_once()
        assert len(decide.calls) == 1
        decide.allowed = False
        store(hook_services, push_event(FAKE, event_id="p2"))
        await worker.run_once()
        with session_scope(hook_services.sessions) as session:
            from app.hooks.verdicts import verdicts_for

            found = verdicts_for(session, FAKE, by_tag=False)
        assert [(v.allowed, v.current) for v in found] == [(False, True), (True, False)]

    async def test_a_failing_decision_is_retried_then_dead(self, hook_services: Services) -> None:
        services = hook_services
        services.settings = with_settings(
            services.settings,
            inbox_max_attempts=2,
            inbox_retry_base_seconds=0.001,
            inbox_retry_max_seconds=0.002,
        )
        decide = CountingDecide(error=RegistryError("registry down"))
        store(services, push_event(FAKE))
        worker = Worker(services=services, decide=decide)
        await worker.run_once()
        (event,) = rows(services, InboxEvent)
        assert event.status is InboxStatus.pending and "registry down" in (event.last_error or "")
        import asyncio

        await asyncio.sleep(0.01)
        await worker.run_once()
        (event,) = rows(services, InboxEvent)
        assert event.status is InboxStatus.dead and len(decide.calls) == 2
        assert rows(services, ImageVerdict) == []

    async def test_delete_marks_the_verdicts_deleted(self, hook_services: Services) -> None:
        store(hook_services, push_event(FAKE, event_id="p1"))
        await Worker(services=hook_services, decide=CountingDecide()).run_once()
        store(hook_services, push_event(FAKE, event_id="d1", action=EventAction.delete))
        await Worker(services=hook_services).run_once()
        (verdict,) = rows(hook_services, ImageVerdict)
        assert verdict.deleted_at is not None
        assert rows(hook_services, InboxEvent)[1].outcome == {"verdicts_marked_deleted": 1}


def harbor_event(
    image: ImageRef, *, event_id: str, counts: dict[str, int], fixable: int
) -> RegistryEvent:
    return RegistryEvent(
        source=EventSource.harbor,
        event_id=event_id,
        action=EventAction.scan_completed,
        registry=image.registry,
        repository=image.repository,
        digest=image.digest,
        scan=ScanOverview(
            report_media_type="application/vnd.security.vulnerability.report; version=1.1",
            status="Success",
            scanner="Trivy",
            counts=counts,
            total=sum(counts.values()),
            fixable=fixable,
        ),
    )


class TestHarborScans:
    async def test_a_summary_is_stored_as_registry_webhook_and_redecides(
        self, hook_services: Services, unique_repo: Callable[[str], str]
    ) -> None:
        image, _ = await push_random_image(hook_services.registry, unique_repo("harbor"))
        store(hook_services, harbor_event(image, event_id="s1", counts={"critical": 2}, fixable=0))
        await Worker(services=hook_services).run_once()
        (scan,) = rows(hook_services, ScanRecord)
        assert scan.source == "registry_webhook" and scan.summary["summary_only"] is True
        (verdict,) = rows(hook_services, ImageVerdict)
        assert verdict.trigger == "scan_completed" and verdict.allowed is False
        messages = [r["message"] for r in verdict.reasons if r["code"] == "vulnerability.severity"]
        assert messages and "2 critical vulnerabilities (registry scan summary)" in messages[0]

    async def test_a_summary_reaches_the_policy_with_its_counts_and_fixable(
        self, hook_services: Services, unique_repo: Callable[[str], str]
    ) -> None:
        image, _ = await push_random_image(hook_services.registry, unique_repo("harbor"))
        store(hook_services, harbor_event(image, event_id="s1", counts={"high": 3}, fixable=1))
        await Worker(services=hook_services).run_once()
        (verdict,) = rows(hook_services, ImageVerdict)
        fixable = [r["message"] for r in verdict.reasons if r["code"] == "vulnerability.fixable"]
        assert fixable and "the registry's summary says 1 findings have a fix" in fixable[0]
        (decision,) = rows(hook_services, Decision)
        with session_scope(hook_services.sessions) as session:
            decided_on = load_input(session, decision.input_hash)
        assert decided_on is not None
        scan = decided_on["scan"]
        assert scan["summary_only"] is True and scan["source"] == "registry_webhook"
        assert scan["counts"]["high"] == 3 and scan["fixable"] == 1
        assert scan["vulnerabilities"] == []

    async def test_the_full_report_is_read_from_harbor_when_configured(
        self, hook_services: Services, unique_repo: Callable[[str], str]
    ) -> None:
        image, _ = await push_random_image(hook_services.registry, unique_repo("proj/nested/app"))
        with HarborApiStandIn(username="robot", password="pw") as harbor:
            path = report_path(image.repository, image.digest or "")
            assert "/repositories/nested%252Fapp/" in path or "%252F" in path
            harbor.add_report(
                path,
                [
                    {
                        "id": "CVE-2026-0001",
                        "package": "openssl",
                        "version": "3.0.1",
                        "fix_version": "3.0.9",
                        "severity": "Critical",
                        "links": [],
                    }
                ],
            )
            hook_services.settings = with_settings(
                hook_services.settings,
                harbor_url=harbor.url,
                harbor_username="robot",
                harbor_password="pw",
            )
            store(
                hook_services, harbor_event(image, event_id="s1", counts={"critical": 1}, fixable=1)
            )
            await Worker(services=hook_services).run_once()
        (scan,) = rows(hook_services, ScanRecord)
        assert scan.format == "harbor" and "summary_only" not in scan.summary
        assert [v["id"] for v in scan.vulnerabilities] == ["CVE-2026-0001"]
        (verdict,) = rows(hook_services, ImageVerdict)
        assert any("CVE-2026-0001" in r["message"] for r in verdict.reasons)

    async def test_harbor_refusing_the_report_retries_the_event(
        self, hook_services: Services, unique_repo: Callable[[str], str]
    ) -> None:
        image, _ = await push_random_image(hook_services.registry, unique_repo("proj/app"))
        with HarborApiStandIn(username="robot", password="right") as harbor:
            hook_services.settings = with_settings(
                hook_services.settings,
                harbor_url=harbor.url,
                harbor_username="robot",
                harbor_password="wrong",
            )
            store(hook_services, harbor_event(image, event_id="s1", counts={}, fixable=0))
            await Worker(services=hook_services).run_once()
        (event,) = rows(hook_services, InboxEvent)
        assert event.status is InboxStatus.pending and "Harbor answered 401" in (
            event.last_error or ""
        )
        assert rows(hook_services, ScanRecord) == [] and rows(hook_services, ImageVerdict) == []

    async def test_scan_failed_is_recorded(self, hook_services: Services) -> None:
        event = harbor_event(FAKE, event_id="f1", counts={}, fixable=0).model_copy(
            update={"action": EventAction.scan_failed}
        )
        store(hook_services, event)
        await Worker(services=hook_services).run_once()
        (row,) = rows(hook_services, InboxEvent)
        assert row.status is InboxStatus.done and row.outcome["recorded"] == "scan_failed"
        assert rows(hook_services, ImageVerdict) == []


def _append_decisions(services: Services, *ages_in_days: int) -> None:
    """Audit records of decisions made that many days ago."""
    now = utcnow()
    entries = [
        audit_decision(n, time=now - dt.timedelta(days=days))
        for n, days in enumerate(ages_in_days, start=1)
    ]
    with session_scope(services.sessions) as session:
        append_audit(session, entries)


def _record_times(services: Services) -> list[tuple[str, dt.datetime]]:
    with session_scope(services.sessions) as session:
        rows = session.execute(select(AuditRecord.kind, AuditRecord.time).order_by(AuditRecord.seq))
        return [(kind, time) for kind, time in rows]


async def _run_until_retention_ran(worker: Worker) -> None:
    """Run the worker as ``sealgate serve`` and ``sealgate worker`` do, until its first
    retention run ended; then stop it."""
    task = asyncio.create_task(worker.run())
    try:
        async with asyncio.timeout(30):
            while not any(worker.retention.runs.values()):
                await asyncio.sleep(0.05)
    finally:
        worker.stop()
        await task


class TestAuditRetention:
    async def test_a_running_worker_purges_what_is_past_retention_and_the_chain_verifies(
        self, hook_services: Services, sealgate: Cli
    ) -> None:
        hook_services.settings = with_settings(
            hook_services.settings, audit_retention_days=30, audit_retention_interval_seconds=3600
        )
        _append_decisions(hook_services, 45, 40, 31, 20, 1)
        worker = Worker(services=hook_services)

        await _run_until_retention_ran(worker)

        assert worker.retention.runs == {"done": 1, "skipped": 0, "failed": 0}
        assert worker.retention.records_purged == 3
        left = _record_times(hook_services)
        assert [kind for kind, _ in left] == ["admission.decision"] * 2 + ["audit.purge"]
        cutoff = utcnow() - dt.timedelta(days=30)
        assert all(time > cutoff for _, time in left)
        verified = sealgate("audit", "verify")
        assert verified.exit_code == 0, verified.output
        assert "3 records" in verified.stdout

    async def test_one_replica_at_a_time_the_others_skip_their_turn(
        self, hook_services: Services, test_engine: Engine
    ) -> None:
        if test_engine.dialect.name != "postgresql":
            pytest.skip("replicas share a PostgreSQL database")
        hook_services.settings = with_settings(hook_services.settings, audit_retention_days=30)
        _append_decisions(hook_services, 45, 1)
        worker = Worker(services=hook_services)
        with test_engine.connect() as other_replica, other_replica.begin():
            other_replica.execute(select(func.pg_advisory_xact_lock(RETENTION_LOCK)))
            assert await worker.run_retention() is None
            assert len(_record_times(hook_services)) == 2
        result = await worker.run_retention()  # the other replica's turn is over
        assert result is not None and result.purged == 1
        assert worker.retention.runs == {"done": 1, "skipped": 1, "failed": 0}

    async def test_without_the_kek_a_run_fails_is_counted_and_deletes_nothing(
        self, hook_services: Services
    ) -> None:
        hook_services.settings = with_settings(
            hook_services.settings, audit_retention_days=30, key_encryption_key=None
        )
        _append_decisions(hook_services, 45)
        worker = Worker(services=hook_services)
        assert await worker.run_retention() is None
        assert worker.retention.runs == {"done": 0, "skipped": 0, "failed": 1}
        assert len(_record_times(hook_services)) == 1

    async def test_without_the_kek_and_nothing_to_purge_runs_are_done_and_said_once(
        self, hook_services: Services, caplog: pytest.LogCaptureFixture
    ) -> None:
        hook_services.settings = with_settings(
            hook_services.settings, audit_retention_days=30, key_encryption_key=None
        )
        _append_decisions(hook_services, 1)
        worker = Worker(services=hook_services)
        with caplog.at_level(logging.WARNING, logger="sealgate.worker"):
            first = await worker.run_retention()
            second = await worker.run_retention()
        assert first is not None and second is not None
        assert (first.purged, first.head_signed) == (0, False)
        assert worker.retention.runs == {"done": 2, "skipped": 0, "failed": 0}
        said = [r for r in caplog.records if "checkpoints are not signed" in r.getMessage()]
        assert len(said) == 1
        assert not [r for r in caplog.records if "retention failed" in r.getMessage()]

    def test_the_service_counts_its_runs_in_metrics(
        self, hook_services: Services, make_client: Callable[..., TestClient]
    ) -> None:
        _append_decisions(hook_services, 400, 1)
        client = make_client(worker_enabled=True, audit_retention_interval_seconds=3600)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            metrics = client.get("/metrics").text
            if 'sealgate_audit_retention_runs_total{outcome="done"} 1.0' in metrics:
                break
            time.sleep(0.1)
        assert 'sealgate_audit_retention_runs_total{outcome="done"} 1.0' in metrics
        assert 'sealgate_audit_retention_purged_total{kind="records"} 1.0' in metrics
