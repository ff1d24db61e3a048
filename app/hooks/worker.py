"""The inbox worker: claim due events, process them, retry failures, give up after N attempts.

It runs as a task of ``sealgate serve`` (unless ``SEALGATE_WORKER_ENABLED=false``) and as
``sealgate worker`` for processes of its own; any number may run against one database.
Each round claims up to ``SEALGATE_WORKER_BATCH_SIZE`` events with a lease of
``SEALGATE_INBOX_LEASE_SECONDS`` and processes them concurrently. A failure releases the
event with exponential back-off and jitter (``SEALGATE_INBOX_RETRY_BASE_SECONDS``, capped at
``SEALGATE_INBOX_RETRY_MAX_SECONDS``); once an event has used
``SEALGATE_INBOX_MAX_ATTEMPTS`` attempts it is ``dead`` (``sealgate inbox retry`` revives it).
A worker killed mid-event leaves its lease to run out; that attempt counts.

A running worker (not ``--once``) also runs the audit trail's retention
(``app.audit.retention``): at its start, then every ``SEALGATE_AUDIT_RETENTION_INTERVAL_SECONDS``
(0 turns it off), one replica at a time (the others skip their turn). Each run is logged and
counted in ``retention`` (exported as metrics by ``sealgate serve``); a failed run (the
database away, or records past retention with no key-encryption key to sign their purge)
is retried at the next interval. Without a key-encryption key (the embedded defaults) a
run signs no checkpoint: the worker says so once, at its first run, rather than failing
every interval while there is nothing to purge.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from app.audit.retention import PurgeResult, run_audit_retention, take_retention_turn
from app.db.session import session_scope
from app.errors import Error, LostClaim
from app.hooks.actions import WebhookSender
from app.hooks.inbox import Claimed, claim, fail
from app.hooks.process import Decide, process_event
from app.hooks.verdicts import decide_push
from app.services import Services

log = logging.getLogger("sealgate.worker")


RETENTION_OUTCOMES = ("done", "skipped", "failed")


@dataclass
class RetentionStats:
    """What the worker's retention runs did: runs by outcome (``done``, ``skipped`` while
    another replica had the turn, ``failed``) and what the runs deleted."""

    runs: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RETENTION_OUTCOMES, 0))
    records_purged: int = 0
    inputs_purged: int = 0
    decisions_purged: int = 0


@dataclass
class Worker:
    services: Services
    decide: Decide = decide_push
    processed: int = 0
    failed: int = 0
    retention: RetentionStats = field(default_factory=RetentionStats)
    _unsigned_noted: bool = False
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)
    _webhook: WebhookSender | None = None

    def stop(self) -> None:
        self._stopping.set()

    async def close(self) -> None:
        """Close the worker's HTTP client (``run`` does it when it ends)."""
        if self._webhook is not None:
            await self._webhook.aclose()
            self._webhook = None

    async def run(self) -> None:
        """Work until ``stop()``; a round that found nothing waits the poll interval.
        Retention runs beside it (see the module doc)."""
        settings = self.services.settings
        log.info("worker started")
        interval = settings.audit_retention_interval_seconds
        retention = (
            asyncio.create_task(self._retention_loop(interval), name="sealgate-audit-retention")
            if interval > 0
            else None
        )
        try:
            await self._loop(settings.worker_poll_seconds)
        finally:
            self.stop()
            try:
                if retention is not None:
                    await retention  # ends after the run under way, if any
            finally:
                await self.close()
        log.info("worker stopped")

    async def _pause(self, seconds: float) -> None:
        """Wait ``seconds``, or less when the worker is stopped meanwhile."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)

    async def _loop(self, poll_seconds: float) -> None:
        while not self._stopping.is_set():
            try:
                busy = await self.run_once()
            except Error as e:  # the database is away: wait and try again
                log.warning("worker round failed", extra={"code": e.code, "error": e.message})
                busy = 0
            if not busy:
                await self._pause(poll_seconds)

    async def _retention_loop(self, interval: float) -> None:
        while not self._stopping.is_set():
            await self.run_retention()
            await self._pause(interval)

    async def run_retention(self) -> PurgeResult | None:
        """One retention run: purge what is past ``SEALGATE_AUDIT_RETENTION_DAYS`` behind a
        signed checkpoint, then sign the head. Returns what it did, or None when another
        replica had the turn or the run failed (logged and counted; never raises)."""
        settings = self.services.settings

        def _run() -> PurgeResult | None:
            with session_scope(self.services.sessions) as session:
                if not take_retention_turn(session):
                    return None
                return run_audit_retention(
                    session, kek=settings.kek(), retention_days=settings.audit_retention_days
                )

        try:
            result = await asyncio.to_thread(_run)
        except Error as e:  # no key-encryption key, the database away: next interval
            self.retention.runs["failed"] += 1
            log.warning("audit retention failed", extra={"code": e.code, "error": e.message})
            return None
        except Exception as e:  # a bug must not stop the worker
            self.retention.runs["failed"] += 1
            log.error("audit retention failed unexpectedly", exc_info=e)
            return None
        if result is None:
            self.retention.runs["skipped"] += 1
            log.info("audit retention skipped: another replica is running it")
            return None
        self.retention.runs["done"] += 1
        if not result.head_signed and not self._unsigned_noted:
            self._unsigned_noted = True
            log.warning(
                "audit checkpoints are not signed: no key-encryption key is configured "
                "(SEALGATE_KEY_ENCRYPTION_KEY or SEALGATE_KEY_ENCRYPTION_KEY_FILE). The chain "
                "still verifies record by record, but a cut of its newest records goes "
                "unnoticed, and records past retention are kept rather than purged",
                extra={"code": "config.no_kek"},
            )
        self.retention.records_purged += result.purged
        self.retention.inputs_purged += result.inputs_purged
        self.retention.decisions_purged += result.decisions_purged
        log.info(
            "audit retention",
            extra={
                "purged": result.purged,
                "through_seq": result.through_seq,
                "inputs_purged": result.inputs_purged,
                "decisions_purged": result.decisions_purged,
                "cutoff": result.cutoff.isoformat(),
                "head_seq": result.head_seq,
                "retention_days": settings.audit_retention_days,
            },
        )
        return result

    async def run_once(self) -> int:
        """Claim one batch and process it; return how many events it claimed."""
        settings = self.services.settings

        def _claim() -> list[Claimed]:
            with session_scope(self.services.sessions) as session:
                return claim(
                    session,
                    limit=settings.worker_batch_size,
                    lease_seconds=settings.inbox_lease_seconds,
                )

        batch = await asyncio.to_thread(_claim)
        await asyncio.gather(*(self._one(c) for c in batch))
        return len(batch)

    async def _one(self, claimed: Claimed) -> None:
        settings = self.services.settings
        try:
            if self._webhook is None:
                self._webhook = WebhookSender(settings)
            await process_event(self.services, claimed, decide=self.decide, webhook=self._webhook)
            self.processed += 1
            return
        except LostClaim:
            log.warning("inbox event taken by another worker", extra={"inbox_id": claimed.id})
            return
        except Error as e:
            problem = f"{e.code}: {e.message}"
        except Exception as e:  # a bug must not stop the worker; the event is retried
            log.error("inbox event failed unexpectedly", exc_info=e)
            problem = f"unexpected {type(e).__name__}: {e}"
        self.failed += 1

        def _release() -> None:
            with session_scope(self.services.sessions) as session:
                status = fail(
                    session,
                    claimed,
                    error=problem,
                    max_attempts=settings.inbox_max_attempts,
                    base=settings.inbox_retry_base_seconds,
                    cap=settings.inbox_retry_max_seconds,
                )
            log.warning(
                "inbox event failed",
                extra={"inbox_id": claimed.id, "status": status.value, "error": problem[:300]},
            )

        try:
            await asyncio.to_thread(_release)
        except LostClaim:
            pass
        except Error as e:
            log.warning("could not release an inbox event", extra={"error": e.message})


def start_worker(services: Services) -> tuple[Worker, asyncio.Task[None]]:
    """Start a worker as a task of the running loop (the service's lifespan)."""
    worker = Worker(services=services)
    return worker, asyncio.create_task(worker.run(), name="sealgate-inbox-worker")


async def stop_worker(worker: Worker, task: asyncio.Task[None], *, grace: float = 10.0) -> None:
    """Ask the worker to stop after its current batch; cancel it after ``grace`` seconds (a
    cancelled event keeps its lease and is retried once the lease runs out)."""
    worker.stop()
    with contextlib.suppress(TimeoutError, asyncio.CancelledError):
        await asyncio.wait_for(task, timeout=grace)


async def run_worker(
    services: Services, *, once: bool = False, decide: Decide = decide_push
) -> None:
    """``sealgate worker``: work until SIGINT/SIGTERM (or, with ``once``, until nothing is due)."""
    import signal

    worker = Worker(services=services, decide=decide)
    if once:
        try:
            while await worker.run_once():
                pass
        finally:
            await worker.close()
        return
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, worker.stop)
    await worker.run()
