"""Registry webhooks into the inbox on PostgreSQL: events accepted per second, and
push-to-verdict latency.

1. **Ingest**: ``sealgate serve`` (real uvicorn, plain HTTP on loopback, worker off, pinned to
   CPU 0 with ``taskset``) takes distribution envelopes of 1 and of 10 events from ``wrk``
   (8 connections = 8 concurrent senders, a Lua script making unique event ids, pinned to
   CPU 1). Every request must be a 200, and the inbox must hold exactly the events reported.
   Baseline in the same run: 8 threads doing the bare multi-row ``INSERT ... ON CONFLICT DO
   NOTHING`` of the same rows into the same table, one transaction per envelope, with psycopg
   and nothing else.
2. **Push to verdict**: a real ``docker-registry`` notifies ``sealgate serve`` (TLS, worker
   on, polling every 50 ms); N images are pushed one after another and each push's latency
   is the verdict's ``decided_at`` minus the time the manifest PUT returned.

Needs PostgreSQL (``SEALGATE_BENCH_DATABASE_URL``, default the tests' 127.0.0.1:5432/test: a
database of its own is created and dropped) and ``wrk``. Prints JSON lines.

    .venv/bin/python -m benchmarks.hooks_ingest [--seconds 10] [--pushes 50]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import psycopg  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from app.config import load_settings  # noqa: E402
from app.db.migrate import upgrade  # noqa: E402
from app.services import Services  # noqa: E402
from tests.fixtures.images import push_random_image  # noqa: E402
from tests.fixtures.registry import free_port, stop_process, stop_registry  # noqa: E402
from tests.fixtures.tls import make_tls_files  # noqa: E402
from tests.hooks.served import SEALGATE, registry_notifying, serve_sealgate  # noqa: E402

SECRET = "bench-hook-secret"
SENDERS = 8

LUA = r"""
local per = tonumber(os.getenv("EVENTS_PER_ENVELOPE"))
local counter = 0
local made = 0
local body_head = '{"events":['
local template = '{"id":"%s-%d-%d","action":"push","target":{"mediaType":'
  .. '"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%064x",'
  .. '"repository":"bench/app","tag":"1.0"},"request":{"host":"127.0.0.1:5000"},'
  .. '"actor":{"name":"bench"}}'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/vnd.docker.distribution.events.v1+json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("HOOK_SECRET")

-- Runs in wrk's main state; "prefix" becomes a global of each thread's own state.
function setup(thread)
  made = made + 1
  thread:set("prefix", os.getenv("RUN_ID") .. "-" .. made)
end

function request()
  counter = counter + 1
  local events = {}
  for i = 1, per do
    events[i] = string.format(template, prefix, counter, i, counter * 100 + i)
  end
  return wrk.format(nil, "/hooks/distribution", nil, body_head .. table.concat(events, ",") .. "]}")
end

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    'WRK {"requests": %d, "seconds": %.3f, "non2xx": %d, "socket_errors": %d, '
    .. '"p50_ms": %.3f, "p99_ms": %.3f}\n',
    summary.requests, summary.duration / 1e6, errors.status,
    errors.connect + errors.read + errors.write + errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
"""


def taskset(cpu: int) -> list[str]:
    return ["taskset", "-c", str(cpu)] if shutil.which("taskset") and os.cpu_count() else []


def inbox_rows(url: str) -> int:
    engine = create_engine(url)
    with engine.connect() as conn:
        n = int(conn.execute(text("SELECT count(*) FROM inbox_events")).scalar_one())
    engine.dispose()
    return n


def run_wrk(port: int, per: int, seconds: int, workdir: Path) -> dict[str, float]:
    script = workdir / "envelope.lua"
    script.write_text(LUA)
    env = {
        **os.environ,
        "EVENTS_PER_ENVELOPE": str(per),
        "HOOK_SECRET": SECRET,
        "RUN_ID": uuid.uuid4().hex[:8],
    }
    command = [*taskset(1), "wrk", "-t", "2", "-c", str(SENDERS), "-d", f"{seconds}s"]
    command += ["-s", str(script), f"http://127.0.0.1:{port}"]
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("WRK "))
    result: dict[str, float] = json.loads(line[4:])
    return result


def bare_inserts(dsn: str, per: int, seconds: float) -> dict[str, float]:
    """SENDERS threads inserting envelopes of ``per`` rows, one transaction each."""
    stop = time.monotonic() + seconds
    counts = [0] * SENDERS
    run_id = uuid.uuid4().hex[:8]
    sql = (
        "INSERT INTO inbox_events (source, event_id, action, image, event, status, attempts, "
        "next_attempt_at, received_at) VALUES "
        + ", ".join(["(%s, %s, %s, %s, %s, 'pending', 0, now(), now())"] * per)
        + " ON CONFLICT (source, event_id) DO NOTHING"
    )
    event = json.dumps({"source": "distribution", "action": "push", "repository": "bench/app"})

    def sender(k: int) -> None:
        with psycopg.connect(dsn) as conn:
            n = 0
            while time.monotonic() < stop:
                n += 1
                params: list[object] = []
                for i in range(per):
                    image = f"127.0.0.1:5000/bench/app@sha256:{n * 100 + i:064x}"
                    params += ["distribution", f"base-{run_id}-{k}-{n}-{i}", "push", image, event]
                with conn.transaction():
                    conn.execute(sql, params)
                counts[k] += per

    started = time.monotonic()
    threads = [threading.Thread(target=sender, args=(k,)) for k in range(SENDERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"events": sum(counts), "seconds": time.monotonic() - started}


def ingest(url: str, seconds: int, workdir: Path) -> list[dict[str, object]]:
    port = free_port()
    env = {
        **os.environ,
        "SEALGATE_DATABASE_URL": url,
        "SEALGATE_HOOK_SECRET": SECRET,
        "SEALGATE_WORKER_ENABLED": "false",
        "SEALGATE_LOG_LEVEL": "WARNING",
    }
    log = (workdir / "serve.log").open("wb")
    server = subprocess.Popen(
        [*taskset(0), SEALGATE, "serve", "--port", str(port)], env=env, stdout=log, stderr=log
    )
    results: list[dict[str, object]] = []
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        for per in (1, 10):
            before = inbox_rows(url)
            measured = run_wrk(port, per, seconds, workdir)
            stored = inbox_rows(url) - before
            accepted = (measured["requests"] - measured["non2xx"]) * per
            baseline = bare_inserts(dsn, per, seconds)
            results.append(
                {
                    "benchmark": "hooks_ingest",
                    "envelope_events": per,
                    "senders": SENDERS,
                    "events_per_second": round(accepted / measured["seconds"], 1),
                    "request_p50_ms": measured["p50_ms"],
                    "request_p99_ms": measured["p99_ms"],
                    "non2xx": measured["non2xx"],
                    "socket_errors": measured["socket_errors"],
                    "accepted": accepted,
                    # Requests still in flight when wrk stops are stored but not counted.
                    "stored": stored,
                    "baseline_bare_insert_events_per_second": round(
                        baseline["events"] / baseline["seconds"], 1
                    ),
                    "target_events_per_second": 500,
                }
            )
    finally:
        stop_process(server)
    return results


async def push_to_verdict(url: str, pushes: int, workdir: Path) -> dict[str, object]:
    engine = create_engine(url)
    with engine.begin() as conn:  # the ingest phase's events are not for the worker
        conn.execute(text("DELETE FROM inbox_events"))
    tls = make_tls_files(workdir)
    port = free_port()
    registry = registry_notifying(port=port, secret=SECRET, tls=tls, workdir=workdir / "registry")
    env = {
        "SEALGATE_DATABASE_URL": url,
        "SEALGATE_INSECURE_REGISTRIES": registry.host,
        "SEALGATE_HOOK_SECRET": SECRET,
        "SEALGATE_WORKER_POLL_SECONDS": "0.05",
        "SEALGATE_LOG_LEVEL": "WARNING",
    }
    served = serve_sealgate(env=env, tls=tls, workdir=workdir, port=port)
    services = Services.from_settings(
        load_settings(database_url=url, insecure_registries=[registry.host])
    )
    latencies: list[float] = []
    try:
        for i in range(pushes):
            image, _ = await push_random_image(services.registry, f"{registry.host}/lat/app{i}")
            pushed = dt.datetime.now(dt.UTC)
            deadline = time.monotonic() + 30
            decided = None
            while decided is None and time.monotonic() < deadline:
                with engine.connect() as conn:
                    decided = conn.execute(
                        text("SELECT decided_at FROM image_verdicts WHERE digest = :d"),
                        {"d": image.digest},
                    ).scalar()
                if decided is None:
                    await asyncio.sleep(0.005)
            if decided is None:
                raise RuntimeError(f"no verdict for {image} within 30 s")
            if decided.tzinfo is None:
                decided = decided.replace(tzinfo=dt.UTC)
            latencies.append((decided - pushed).total_seconds() * 1000)
    finally:
        await services.aclose()
        engine.dispose()
        stop_registry(registry)
        stop_process(served.process)
    ordered = sorted(latencies)
    return {
        "benchmark": "push_to_verdict",
        "pushes": pushes,
        "worker_poll_seconds": 0.05,
        "p50_ms": round(statistics.median(ordered), 1),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 1),
        "max_ms": round(ordered[-1], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--pushes", type=int, default=50)
    args = parser.parse_args()
    base = os.environ.get(
        "SEALGATE_BENCH_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    )
    name = f"sealgate_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(base).set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(url)
        machine = {"python": platform.python_version(), "load_average": os.getloadavg()}
        with tempfile.TemporaryDirectory() as tmp:
            for result in ingest(url, args.seconds, Path(tmp)):
                print(json.dumps({**result, **machine}), flush=True)
            latency = asyncio.run(push_to_verdict(url, args.pushes, Path(tmp)))
            print(json.dumps({**latency, "load_average": os.getloadavg()}), flush=True)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
