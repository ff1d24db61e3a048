"""Admission over HTTPS: warm, cold and burst reviews, next to an echo endpoint's.

Everything real and on this machine: a loopback ``docker-registry`` (the tests'
``start_registry``), a fresh PostgreSQL database (``--database-url``, else one created on
127.0.0.1:5432 and dropped after; ``sqlite`` for a file), ``sealgate serve --tls-cert
--tls-key`` as its own process, one worker, on core 1 (``taskset -c 1``), and beside it the
baseline, ``benchmarks/support/echo_app.py``: a bare FastAPI endpoint that only echoes an
AdmissionReview, served by the same ``app.serving.serve`` with the same uvicorn options and
the same certificate. Clients run on core 0. Every image is signed with a stored ECDSA
P-256 key that an authority trusts and carries a signed vulnerability attestation (a Trivy
report, 4 medium findings), both as OCI referrers in the registry: each review is allowed.

- **warm**: one Pod with 3 containers, its images already decided once (tag, evidence and
  decision caches hold them; the server's tag and decision TTLs are raised to 600 s so none
  expires mid-run). ``wrk`` (Lua script posting the review) with 1 and with 8
  connections, taking turns with the echo over ``--rounds`` rounds; medians reported.
- **cold**: ``--cold-reviews`` Pods of 3 images each, every image pushed, signed and
  attested beforehand and never seen by the server: each review resolves 3 tags, reads the
  store, lists referrers, fetches and verifies signature and attestation, and asks the
  policy. One client, reviews one after another (caches stay on: fresh images make every
  review cold).
- **burst**: 30 Deployments of 3 images each over 30 distinct digests (Deployment i uses
  images i, i+1, i+2 modulo 30, so each digest is in 3 reviews), none seen before, posted
  at once by 30 clients (connections opened first). The registry is reached through a
  counting proxy here, which counts requests per repository (one digest each): the same
  count as a lone review's means concurrent reviews shared one fetch.

Prints one JSON line per scenario.

    .venv/bin/python -m benchmarks.admission [--rounds 3] [--seconds 5] [--cold-reviews 200]
        [--database-url URL | --database-url sqlite]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import json
import os
import platform
import secrets
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from app.auth.scopes import Scope  # noqa: E402
from app.auth.tokens import Principal  # noqa: E402
from app.config import load_settings  # noqa: E402
from app.db.migrate import upgrade  # noqa: E402
from app.db.session import session_scope  # noqa: E402
from app.enforce.sign import sign_image  # noqa: E402
from app.oci.refs import ImageRef  # noqa: E402
from app.scans.attestation import key_scan_attester  # noqa: E402
from app.scans.detect import parse_report  # noqa: E402
from app.services import Services  # noqa: E402
from app.signing.keys import generate_key, get_key  # noqa: E402
from app.signing.signers import Algorithm  # noqa: E402
from app.verify.trust import key_authority, save_authority  # noqa: E402
from benchmarks.support.counting_proxy import CountingProxy  # noqa: E402
from tests.fixtures.images import push_random_image  # noqa: E402
from tests.fixtures.registry import free_port, start_registry, stop_process, stop_registry  # noqa: E402
from tests.fixtures.tls import TlsFiles, make_tls_files  # noqa: E402

KEK = base64.b64encode(b"sealgate-benchmark-kek-32-bytes!").decode()
ADMIN = Principal(name="bench", scopes=(Scope.parse("admin"),))
REPORT = ROOT / "tests" / "assets" / "trivy" / "trivy_alpine-310_image_schema2_current.json"
POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432"
CLIENT_CORE, SERVER_CORE = 0, 1
BURST = 30
SEALGATE = str(Path(sys.executable).with_name("sealgate"))


# ---------------------------------------------------------------- setup


@contextmanager
def database(url: str | None, workdir: Path) -> Iterator[str]:
    """The database URL to use: given, a SQLite file, or a fresh PostgreSQL database."""
    if url and url != "sqlite":
        yield url
        return
    if url == "sqlite":
        yield f"sqlite:///{workdir / 'sealgate.db'}"
        return
    import sqlalchemy

    name = f"sealgate_bench_{secrets.token_hex(4)}"
    admin = sqlalchemy.create_engine(f"{POSTGRES}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{POSTGRES}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def fresh_report() -> bytes:
    """The Trivy report, dated now (an old scan would be denied as stale)."""
    report = json.loads(REPORT.read_bytes())
    report["CreatedAt"] = dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")
    return json.dumps(report).encode()


async def prepare_images(services: Services, host: str, prefix: str, count: int) -> list[str]:
    """Push ``count`` images ``host/bench/<prefix>-<i>:v1``, each signed (bundle) and with a
    signed vulnerability attestation; return their tag references."""
    raw = fresh_report()
    report = parse_report(raw)
    attest = key_scan_attester(
        key_name="bench",
        registry=services.registry,
        sessions=services.sessions,
        settings=services.settings,
    )
    semaphore = asyncio.Semaphore(8)

    async def _one(i: int) -> str:
        async with semaphore:
            pinned, _ = await push_random_image(
                services.registry, f"{host}/bench/{prefix}-{i}", tag="v1"
            )
            image = f"{pinned.name}:v1"
            await sign_image(services, image=image, principal=ADMIN, key_name="bench")
            await attest(ImageRef.parse(image).with_digest(pinned.digest or ""), report, raw)
            return image

    return list(await asyncio.gather(*(_one(i) for i in range(count))))


def review_body(kind: str, *images: str) -> dict[str, Any]:
    """An admission.k8s.io/v1 CREATE review of a Pod or Deployment running ``images``."""
    spec = {"containers": [{"name": f"c{i}", "image": image} for i, image in enumerate(images)]}
    if kind == "Pod":
        obj: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "web", "namespace": "prod"},
            "spec": spec,
        }
        group, resource = "", "pods"
    else:
        obj = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "prod"},
            "spec": {"replicas": 2, "template": {"spec": spec}},
        }
        group, resource = "apps", "deployments"
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": str(uuid.uuid4()),
            "kind": {"group": group, "version": "v1", "kind": kind},
            "resource": {"group": group, "version": "v1", "resource": resource},
            "namespace": "prod",
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": obj,
            "dryRun": False,
        },
    }


class Server:
    """A server process on ``SERVER_CORE`` serving HTTPS with the benchmark's certificate."""

    def __init__(self, command: list[str], *, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                ["taskset", "-c", str(SERVER_CORE), *command, "--port", str(self.port)],
                env=env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.log = log
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{command[0]} exited:\n{log.read_text()[-3000:]}")
            try:
                httpx.get(f"{self.url}/readyz", verify=False, timeout=1)
                return
            except httpx.TransportError:
                time.sleep(0.2)
        stop_process(self.process)
        raise RuntimeError(f"{command[0]} did not answer:\n{log.read_text()[-3000:]}")

    def close(self) -> None:
        stop_process(self.process)


def start_servers(
    *, database_url: str, hosts: list[str], tls: TlsFiles, workdir: Path
) -> tuple[Server, Server]:
    env = {
        **os.environ,
        "SEALGATE_DATABASE_URL": database_url,
        "SEALGATE_INSECURE_REGISTRIES": ",".join(hosts),
        "SEALGATE_KEY_ENCRYPTION_KEY": KEK,
        "SEALGATE_CACHE_TAG_TTL": "600",
        "SEALGATE_CACHE_DECISION_TTL": "600",
        "PYTHONPATH": str(ROOT),
    }
    tls_args = ["--tls-cert", str(tls.server_cert), "--tls-key", str(tls.server_key)]
    sealgate = Server(
        [SEALGATE, "serve", "--host", "127.0.0.1", *tls_args], env=env, log=workdir / "serve.log"
    )
    echo = Server(
        [sys.executable, "-m", "benchmarks.support.echo_app", *tls_args],
        env=env,
        log=workdir / "echo.log",
    )
    return sealgate, echo


# ---------------------------------------------------------------- measuring


WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = assert(io.open("%(body)s", "rb"))
wrk.body = f:read("*a")
f:close()

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %%d, "duration_us": %%d, "non_2xx": %%d, "socket_errors": %%d, ' ..
    '"p50_us": %%d, "p90_us": %%d, "p99_us": %%d, "max_us": %%d}\\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


def cpu_seconds(pid: int, *, thread: int | None = None) -> float:
    """User + system CPU time of process ``pid`` (all its threads, or only ``thread``)."""
    stat = Path(f"/proc/{pid}/stat" if thread is None else f"/proc/{pid}/task/{thread}/stat")
    fields = stat.read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# A cluster's rate, not a saturating one: each connection waits this long after an answer.
PACED_DELAY_MS = 10
PACED_CONNECTIONS = 2


def wrk(server: Server, script: Path, *, connections: int, seconds: int) -> dict[str, float]:
    """One ``wrk`` run on ``CLIENT_CORE``: requests/s, latency percentiles (ms) and the
    server's CPU time per request (ms, all its threads: a figure a busy machine moves
    less than wall-clock ones), and the part of it spent off the event loop's thread (the
    decision recorder's, in a warm run)."""
    pid = server.process.pid
    cpu, loop_cpu = cpu_seconds(pid), cpu_seconds(pid, thread=pid)
    proc = subprocess.run(
        [
            "taskset",
            "-c",
            str(CLIENT_CORE),
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            f"{server.url}/admission/validate",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    used = cpu_seconds(pid) - cpu
    loop_used = cpu_seconds(pid, thread=pid) - loop_cpu
    line = next(x for x in proc.stdout.splitlines() if x.startswith("{"))
    raw = json.loads(line)
    if raw["non_2xx"] or raw["socket_errors"]:
        raise RuntimeError(f"wrk saw errors against {server.url}: {raw}\n{proc.stdout}")
    return {
        "rps": raw["requests"] / (raw["duration_us"] / 1e6),
        "p50_ms": raw["p50_us"] / 1e3,
        "p90_ms": raw["p90_us"] / 1e3,
        "p99_ms": raw["p99_us"] / 1e3,
        "max_ms": raw["max_us"] / 1e3,
        "server_cpu_ms_per_request": used / raw["requests"] * 1e3,
        "server_cpu_ms_per_request_off_loop": (used - loop_used) / raw["requests"] * 1e3,
    }


def problem(answer: httpx.Response, body: dict[str, Any]) -> str | None:
    """What is wrong with ``answer`` to ``body`` (every review here should be allowed,
    with its uid echoed), or None."""
    if answer.status_code != 200:
        return f"HTTP {answer.status_code}: {answer.text[:500]}"
    response = answer.json()["response"]
    if response["uid"] != body["request"]["uid"]:
        return f"uid {response['uid']} answered for {body['request']['uid']}"
    if response["allowed"] is not True:
        return str(response.get("status", {}).get("message", response))[:500]
    return None


def check_allowed(answer: httpx.Response, body: dict[str, Any]) -> None:
    """Fail unless ``answer`` allows ``body``'s request and echoes its uid."""
    wrong = problem(answer, body)
    if wrong is not None:
        raise RuntimeError(f"review not answered as expected: {wrong}")


@contextmanager
def on_core(core: int) -> Iterator[None]:
    """Run the calling thread (and threads it starts) on ``core`` meanwhile."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {core})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: round(statistics.median(r[key] for r in runs), 3) for key in runs[0]}


def warm(
    sealgate: Server, echo: Server, images: list[str], workdir: Path, args: argparse.Namespace
) -> dict[str, object]:
    body = review_body("Pod", *images)
    body_path = workdir / "warm-review.json"
    body_path.write_text(json.dumps(body))
    script = workdir / "post.lua"
    script.write_text(WRK_SCRIPT % {"body": body_path})
    with httpx.Client(verify=False, timeout=30) as client:
        for server in (sealgate, echo):  # pre-warm: one review decides and caches all three
            check_allowed(client.post(f"{server.url}/admission/validate", json=body), body)
        check_allowed(client.post(f"{sealgate.url}/admission/validate", json=body), body)
    for server in (sealgate, echo):  # let each connection path and the allocator settle
        wrk(server, script, connections=8, seconds=1)
    results: dict[str, dict[int, list[dict[str, float]]]] = {
        "sealgate": {1: [], 8: []},
        "echo": {1: [], 8: []},
    }
    for _ in range(args.rounds):
        for connections in (1, 8):
            for name, server in (("echo", echo), ("sealgate", sealgate)):
                run = wrk(server, script, connections=connections, seconds=args.seconds)
                results[name][connections].append(run)
    paced_script = workdir / "post-paced.lua"
    paced_script.write_text(
        script.read_text() + f"\ndelay = function()\n  return {PACED_DELAY_MS}\nend\n"
    )
    paced = {
        name: wrk(server, paced_script, connections=PACED_CONNECTIONS, seconds=args.seconds)
        for name, server in (("echo", echo), ("sealgate", sealgate))
    }
    if args.profile is not None:
        profile(sealgate, script, args)
    one = {name: median_of(r[1]) for name, r in results.items()}
    eight = {name: median_of(r[8]) for name, r in results.items()}
    ratio = eight["sealgate"]["rps"] / eight["echo"]["rps"]
    return {
        "benchmark": "admission",
        "scenario": "warm",
        "containers": len(images),
        "rounds": args.rounds,
        "seconds_per_run": args.seconds,
        "sealgate_1_client": one["sealgate"],
        "echo_1_client": one["echo"],
        "sealgate_8_clients": eight["sealgate"],
        "echo_8_clients": eight["echo"],
        "throughput_ratio_8_clients": round(ratio, 3),
        "sealgate_paced": paced["sealgate"],
        "echo_paced": paced["echo"],
        "paced": f"{PACED_CONNECTIONS} clients, each waiting {PACED_DELAY_MS} ms after an answer",
        "runs": {name: {str(c): r for c, r in v.items()} for name, v in results.items()},
        "targets": "1-client p99 <= 2 ms; 8 clients: >= 50% of the echo's throughput, p99 <= 10 ms",
        "met": {
            "1_client_p99": one["sealgate"]["p99_ms"] <= 2.0,
            "8_client_throughput": ratio >= 0.5,
            "8_client_p99": eight["sealgate"]["p99_ms"] <= 10.0,
        },
    }


def profile(sealgate: Server, script: Path, args: argparse.Namespace) -> None:
    """Sample the server with ``py-spy`` during one more 8-client warm run: collapsed stacks
    in ``args.profile`` (``py-spy`` from PyPI, in the same environment)."""
    spy = Path(sys.executable).with_name("py-spy")
    args.profile.mkdir(parents=True, exist_ok=True)
    out = args.profile / "warm-8-clients.txt"
    pid = str(sealgate.process.pid)  # taskset executes the server in its own process
    recorder = subprocess.Popen(
        [
            str(spy),
            "record",
            "--pid",
            pid,
            "--format",
            "raw",
            "--rate",
            "500",
            "-o",
            str(out),
            "--duration",
            str(args.seconds + 1),
            "--nonblocking",
            "--threads",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)
    wrk(sealgate, script, connections=8, seconds=args.seconds)
    recorder.wait(timeout=60)
    print(f"profile written to {out}", file=sys.stderr)


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    cuts = statistics.quantiles(ordered, n=100, method="inclusive")
    return {
        "p50_ms": round(statistics.median(ordered) * 1e3, 2),
        "p90_ms": round(cuts[89] * 1e3, 2),
        "p99_ms": round(cuts[98] * 1e3, 2),
        "max_ms": round(ordered[-1] * 1e3, 2),
    }


def cold(sealgate: Server, echo: Server, images: list[str]) -> dict[str, object]:
    """Reviews of 3 never-seen images each, one after another; and the echo, the same way."""
    groups = [images[i : i + 3] for i in range(0, len(images) - 2, 3)]
    latencies: list[float] = []
    baseline: list[float] = []
    problems: list[str] = []
    with on_core(CLIENT_CORE), httpx.Client(verify=False, timeout=30) as client:
        client.get(f"{sealgate.url}/readyz")
        client.get(f"{echo.url}/readyz")
        for group in groups:
            body = review_body("Pod", *group)
            encoded = json.dumps(body).encode()
            headers = {"Content-Type": "application/json"}
            started = time.perf_counter()
            answer = client.post(
                f"{sealgate.url}/admission/validate", content=encoded, headers=headers
            )
            latencies.append(time.perf_counter() - started)
            wrong = problem(answer, body)
            if wrong is not None:
                problems.append(wrong)
            started = time.perf_counter()
            answer = client.post(f"{echo.url}/admission/validate", content=encoded, headers=headers)
            baseline.append(time.perf_counter() - started)
            check_allowed(answer, body)
    measured = percentiles(latencies)
    return {
        "benchmark": "admission",
        "scenario": "cold",
        "reviews": len(groups),
        "images_per_review": 3,
        "sealgate": measured,
        "echo_same_client": percentiles(baseline),
        "not_allowed": len(problems),
        "first_problem": problems[0] if problems else None,
        "target": "p99 <= 150 ms per review",
        "met": measured["p99_ms"] <= 150.0 and not problems,
    }


async def _post_all(url: str, bodies: list[dict[str, Any]]) -> tuple[list[float], float, list[str]]:
    """Post every body at once, each from its own connection (opened beforehand)."""
    clients = [httpx.AsyncClient(verify=False, timeout=30) for _ in bodies]
    try:
        await asyncio.gather(*(c.get(f"{url}/readyz") for c in clients))
        encoded = [json.dumps(b).encode() for b in bodies]
        headers = {"Content-Type": "application/json"}
        gate = asyncio.Event()

        async def _one(client: httpx.AsyncClient, content: bytes) -> tuple[httpx.Response, float]:
            await gate.wait()
            started = time.perf_counter()
            answer = await client.post(
                f"{url}/admission/validate", content=content, headers=headers
            )
            return answer, time.perf_counter() - started

        tasks = [asyncio.create_task(_one(c, e)) for c, e in zip(clients, encoded, strict=True)]
        await asyncio.sleep(0.05)
        started = time.perf_counter()
        gate.set()
        done = await asyncio.gather(*tasks)
        wall = time.perf_counter() - started
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))
    problems = [problem(answer, body) for (answer, _), body in zip(done, bodies, strict=True)]
    return [seconds for _, seconds in done], wall, [p for p in problems if p is not None]


def burst(
    sealgate: Server, proxy: CountingProxy, lone: list[str], images: list[str]
) -> dict[str, object]:
    """A lone cold review through the proxy (requests one decision makes per image), then
    the burst of 30 Deployments over 30 fresh digests, 3 reviews per digest."""
    proxy.reset()
    with httpx.Client(verify=False, timeout=30) as client:
        body = review_body("Deployment", *lone)
        check_allowed(client.post(f"{sealgate.url}/admission/validate", json=body), body)
    by_repository, lone_requests = proxy.counts()
    lone_counts = [by_repository.get(ImageRef.parse(i).repository, 0) for i in lone]
    proxy.reset()
    bodies = [
        review_body("Deployment", *(images[(i + k) % len(images)] for k in range(3)))
        for i in range(len(images))
    ]
    with on_core(CLIENT_CORE):
        latencies, wall, problems = asyncio.run(_post_all(sealgate.url, bodies))
    by_repository, _ = proxy.counts()
    counts = [by_repository.get(ImageRef.parse(i).repository, 0) for i in images]
    return {
        "benchmark": "admission",
        "scenario": "burst",
        "reviews": len(bodies),
        "distinct_digests": len(images),
        "reviews_per_digest": 3,
        "all_answered_s": round(wall, 3),
        "review_p50_ms": round(statistics.median(latencies) * 1e3, 1),
        "review_max_ms": round(max(latencies) * 1e3, 1),
        "answered_correctly": len(bodies) - len(problems),
        "first_problem": problems[0] if problems else None,
        "registry_requests_per_digest_lone_review": sorted(set(lone_counts)),
        "registry_requests_per_digest_burst": sorted(set(counts)),
        "registry_requests_burst_total": sum(counts),
        "lone_review_requests_of_one_image": [
            f"{method} {path}"
            for method, path in sorted(lone_requests)
            if f"/{ImageRef.parse(lone[0]).repository}/" in path
        ],
        "target": "all answered correctly within 2 s; one fetch per digest",
        "met": wall <= 2.0 and not problems and max(counts) <= max(lone_counts),
    }


async def prepare(
    database_url: str, registry_host: str, proxy_host: str, cold_images: int
) -> dict[str, list[str]]:
    settings = load_settings(
        database_url=database_url,
        insecure_registries=[registry_host, proxy_host],
        key_encryption_key=KEK,
        log_level="WARNING",
    )
    services = Services.from_settings(settings)
    try:
        with session_scope(services.sessions) as session:
            generate_key(
                session,
                settings=settings,
                name="bench",
                algorithm=Algorithm.ecdsa_p256,
                scopes=["**"],
            )
            public = get_key(session, name="bench").public_key_pem
            save_authority(
                session,
                key_authority(
                    name="ci", keys=[public], scopes=[f"{registry_host}/**", f"{proxy_host}/**"]
                ),
            )
        services.decisions.context.refresh()
        return {
            "warm": await prepare_images(services, registry_host, "warm", 3),
            "cold": await prepare_images(services, registry_host, "cold", cold_images),
            "lone": await prepare_images(services, proxy_host, "lone", 3),
            "burst": await prepare_images(services, proxy_host, "burst", BURST),
        }
    finally:
        await services.aclose()


def run(args: argparse.Namespace, workdir: Path) -> list[dict[str, object]]:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (sudo apt-get install wrk)")
    registry = start_registry(workdir / "registry")
    proxy = CountingProxy(registry.host)
    servers: list[Server] = []
    try:
        with database(args.database_url, workdir) as database_url:
            upgrade(database_url)
            started = time.monotonic()
            images = asyncio.run(
                prepare(database_url, registry.host, proxy.host, 3 * args.cold_reviews)
            )
            print(f"images ready in {time.monotonic() - started:.0f} s", file=sys.stderr)
            (workdir / "tls").mkdir()
            tls = make_tls_files(workdir / "tls")
            sealgate, echo = start_servers(
                database_url=database_url,
                hosts=[registry.host, proxy.host],
                tls=tls,
                workdir=workdir,
            )
            servers += [sealgate, echo]
            load = os.getloadavg()
            results = [
                warm(sealgate, echo, images["warm"], workdir, args),
                cold(sealgate, echo, images["cold"]),
                burst(sealgate, proxy, images["lone"], images["burst"]),
                audit_cost(),
            ]
            after = os.getloadavg()
            for result in results:
                result["load_average_before"] = [round(x, 2) for x in load]
                result["load_average_after"] = [round(x, 2) for x in after]
                result["database"] = database_url.split(":", 1)[0]
                result["python"] = platform.python_version()
            return results
    finally:
        for server in servers:
            server.close()
        proxy.close()
        stop_registry(registry)


def audit_cost() -> dict[str, object]:
    """Where the audit trail's write cost per decision is measured."""
    return {
        "benchmark": "admission",
        "scenario": "audit",
        "measured_by": "benchmarks/audit_write.py (the writer's transaction with and without "
        "the audit append); compare its per-record cost with the warm review above",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--cold-reviews", type=int, default=200)
    parser.add_argument(
        "--database-url",
        default=None,
        help="a database URL, or 'sqlite'; default: a fresh database on 127.0.0.1:5432",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="also sample the server with py-spy during an 8-client warm run, into this folder",
    )
    args = parser.parse_args()
    ssl.create_default_context()  # fail early if TLS is unusable
    with tempfile.TemporaryDirectory(prefix="sealgate-bench-") as tmp:
        for result in run(args, Path(tmp)):
            print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
