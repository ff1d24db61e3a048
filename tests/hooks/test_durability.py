"""Durability: thousands of events, with duplicates, from concurrent senders into a real
``sealgate serve``, processed by ``sealgate worker`` processes that are SIGKILLed and restarted
several times. Afterwards every event was processed exactly once, the webhook action acted
once per event (counted by idempotency id at a receiver started here) and nothing is claimed.

The worker processes run ``run_worker`` (the code of ``sealgate worker``) with the decision
adapter injected (``tests.hooks.cheap_worker``): a fixed denial, so that thousands of events
fit in the test's time on a loaded machine. Everything else is real: ``sealgate serve``,
PostgreSQL, claims, leases, the actions table and the outbound webhook.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, func, select

from app.db.models import ActionStatus, ImageVerdict, InboxEvent, InboxStatus, VerdictAction
from tests.fixtures.registry import RegistryProcess, free_port, stop_process
from tests.hooks.receiver import VerdictReceiver
from tests.hooks.served import SEALGATE

# Distinct events (each delivered twice); SEALGATE_DURABILITY_EVENTS raises it on a quiet machine.
EVENTS = int(os.environ.get("SEALGATE_DURABILITY_EVENTS", "2000"))
SENDERS = 6
PER_ENVELOPE = 10
KILLS = 4
SECRET = "durability-secret"
WEBHOOK_SECRET = "durability-webhook"
HEADERS = {
    "Authorization": f"Bearer {SECRET}",
    "Content-Type": "application/vnd.docker.distribution.events.v1+json",
}


def _event(index: int, registry: RegistryProcess) -> dict[str, Any]:
    return {
        "id": f"dur-{index}",
        "action": "push",
        "target": {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": "sha256:" + secrets.token_hex(32),
            "repository": f"durable/app{index % 7}",
            "tag": "1.0",
        },
        "request": {"host": registry.host},
    }


@pytest.fixture
def receiver() -> Iterator[VerdictReceiver]:
    with VerdictReceiver(secret=WEBHOOK_SECRET) as started:
        yield started


@pytest.fixture
def environment(
    test_database_url: str,
    registry: RegistryProcess,
    clean_database: Any,
    receiver: VerdictReceiver,
) -> dict[str, str]:
    return {
        "SEALGATE_DATABASE_URL": test_database_url,
        "SEALGATE_INSECURE_REGISTRIES": registry.host,
        "SEALGATE_REGISTRY_RETRIES": "0",
        "SEALGATE_HOOK_SECRET": SECRET,
        "SEALGATE_WORKER_ENABLED": "false",
        "SEALGATE_WORKER_POLL_SECONDS": "0.05",
        "SEALGATE_WORKER_BATCH_SIZE": "16",
        "SEALGATE_INBOX_LEASE_SECONDS": "3",
        "SEALGATE_INBOX_MAX_ATTEMPTS": "50",
        "SEALGATE_INBOX_RETRY_BASE_SECONDS": "0.05",
        "SEALGATE_INBOX_RETRY_MAX_SECONDS": "0.5",
        "SEALGATE_VERDICT_WEBHOOK_URL": receiver.url,
        "SEALGATE_VERDICT_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "SEALGATE_LOG_LEVEL": "WARNING",
    }


def _start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        command, env={**os.environ, **env}, stdout=log.open("ab"), stderr=subprocess.STDOUT
    )


def _counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(select(InboxEvent.status, func.count()).group_by(InboxEvent.status))
        return {str(status): n for status, n in rows}


def test_kill_and_restart_workers_while_senders_deliver(
    environment: dict[str, str],
    receiver: VerdictReceiver,
    registry: RegistryProcess,
    test_engine: Engine,
    tmp_path: Path,
) -> None:
    port = free_port()
    server = _start([SEALGATE, "serve", "--port", str(port)], environment, tmp_path / "serve.log")
    workers: list[subprocess.Popen[bytes]] = []
    try:
        url = f"http://127.0.0.1:{port}/hooks/distribution"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)

        started = time.monotonic()
        events = [_event(i, registry) for i in range(EVENTS)]
        # Every event is sent twice, the copies by different senders, in shuffled envelopes.
        deliveries = events + events
        random.Random(9).shuffle(deliveries)
        envelopes = [
            deliveries[i : i + PER_ENVELOPE] for i in range(0, len(deliveries), PER_ENVELOPE)
        ]
        failures: list[str] = []

        def send(share: list[list[dict[str, Any]]]) -> None:
            with httpx.Client(timeout=30) as client:
                for envelope in share:
                    body = json.dumps({"events": envelope})
                    for _ in range(20):  # a registry retries until it gets a 2xx
                        reply = client.post(
                            url,
                            content=body,
                            headers=HEADERS,
                        )
                        if reply.status_code == 200:
                            break
                        time.sleep(0.1)
                    else:
                        failures.append(reply.text)

        senders = [
            threading.Thread(target=send, args=(envelopes[k::SENDERS],)) for k in range(SENDERS)
        ]
        for thread in senders:
            thread.start()

        worker_command = [sys.executable, "-m", "tests.hooks.cheap_worker"]
        log = tmp_path / "worker.log"
        workers = [_start(worker_command, environment, log) for _ in range(3)]
        rng = random.Random(4)
        for _ in range(KILLS):
            time.sleep(rng.uniform(1.0, 2.0))
            victim = workers.pop(0)
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            workers.append(_start(worker_command, environment, log))
        for thread in senders:
            thread.join()
        assert failures == []
        sent_at = time.monotonic()

        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and _counts(test_engine).get("done", 0) < EVENTS:
            time.sleep(0.25)
        after = time.monotonic() - sent_at
        print(f"sent in {sent_at - started:.1f} s, all processed {after:.1f} s later")
    finally:
        for process in workers:
            stop_process(process)
        stop_process(server)

    counts = _counts(test_engine)
    assert counts == {InboxStatus.done.value: EVENTS}, (
        counts,
        (tmp_path / "worker.log").read_text()[-3000:],
    )
    with test_engine.connect() as conn:
        claimed = conn.execute(
            select(func.count()).select_from(InboxEvent).where(InboxEvent.claim_token.is_not(None))
        ).scalar_one()
        verdicts = conn.execute(
            select(func.count(func.distinct(ImageVerdict.inbox_event_id)))
        ).scalar_one()
        verdict_rows = conn.execute(select(func.count()).select_from(ImageVerdict)).scalar_one()
        actions = dict(
            conn.execute(
                select(VerdictAction.status, func.count()).group_by(VerdictAction.status)
            ).all()
        )
    assert claimed == 0
    assert verdicts == verdict_rows == EVENTS  # exactly one verdict per event
    assert {str(k): v for k, v in actions.items()} == {ActionStatus.done.value: EVENTS}
    keys = receiver.keys()
    assert set(keys) == {f"distribution:dur-{i}:webhook" for i in range(EVENTS)}
    # A call can reach the receiver twice only if its worker was killed between the call and
    # recording it: with the same idempotency id, which the receiver uses to act once.
    repeated = sum(1 for n in keys.values() if n > 1)
    assert repeated <= KILLS * 16
