"""The decision pipeline: policy miss against the binding's floor, cache hits, warm and cold
decisions end to end, and registry requests per uncached decision, in one run.

Measured, taking turns where two things are compared:

- **miss**: ``EmbeddedOpaEngine.answer`` (the default library, admission) over the input of
  ``benchmarks.policy_decision`` (200 findings; 22 denials), already encoded as bytes,
  against the binding's **floor**: the same bytes handed to the same adapter
  (``eval_document_encoded``) for a document that is just ``true``. The library as it was
  before the rewrite (``tests/policy/assets/library_before``) is measured alongside.
  Targets: miss p50 <= 2.0x the floor; miss p95 <= 2x its own p50.
- **hit**: the pipeline's decision-cache path (``pipeline._answer``) for the same encoded
  input once cached. Target: p50 <= 1 % of the miss.
- **warm**: ``decide()`` end to end for one image whose digest, evidence and decision are
  cached, against a bare ``await asyncio.sleep(0)``. Reported.
- **cold**: ``decide()`` with every cache emptied, against a loopback ``docker-registry``
  (the tests' ``start_registry``) and SQLite: the time of each step
  (``Outcome.timings_ms``). Reported.
- **requests**: registry requests of one uncached decision, counted by a proxy in front of
  the registry (``CountingProxyStandIn`` in process; ``benchmarks/old_flow/count_requests.py``
  in a subprocess, with a stored scan and with a scan found only in the registry). With
  ``--old-tree DIR`` (the tree of the commit before the pipeline, e.g. ``mkdir /tmp/oldsg
  && git archive f2dacfa | tar -x -C /tmp/oldsg``) the same script counts that tree's
  ``evaluate_image``. Target: at least halved.

Prints one JSON line, with the load average (other work on the machine moves every figure).

    taskset -c 1 .venv/bin/python -m benchmarks.decision_pipeline [--samples 2000]
        [--cold 30] [--old-tree /tmp/oldsg]   # or SEALGATE_BENCH_OLD_TREE=/tmp/oldsg
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.auth.scopes import Scope  # noqa: E402
from app.auth.tokens import Principal  # noqa: E402
from app.config import load_settings  # noqa: E402
from app.db.migrate import upgrade  # noqa: E402
from app.db.session import session_scope  # noqa: E402
from app.enforce import pipeline  # noqa: E402
from app.enforce.deadline import Deadline  # noqa: E402
from app.enforce.outcome import DecisionRequest  # noqa: E402
from app.enforce.scans import upload_scan  # noqa: E402
from app.enforce.sign import sign_image  # noqa: E402
from app.policy.bundle import PolicyBundle  # noqa: E402
from app.policy.engines import EmbeddedOpaEngine  # noqa: E402
from app.policy.findings import ScanSnapshot, encode_input  # noqa: E402
from app.policy.go_gc import restart_with_go_gc_defaults  # noqa: E402
from app.policy.input import Entrypoint  # noqa: E402
from app.policy.opa_native import eval_document_encoded  # noqa: E402
from app.services import Services  # noqa: E402
from app.signing.keys import generate_key, get_key  # noqa: E402
from app.signing.signers import Algorithm  # noqa: E402
from app.verify.trust import key_authority, save_authority  # noqa: E402
from benchmarks.policy_decision import benchmark_input  # noqa: E402
from tests.fixtures.images import push_random_image  # noqa: E402
from tests.fixtures.registry import start_registry, stop_registry  # noqa: E402
from tests.fixtures.standins import CountingProxyStandIn  # noqa: E402

KEK = base64.b64encode(b"sealgate-benchmark-kek-32-bytes!").decode()
PRINCIPAL = Principal(name="bench", scopes=(Scope.parse("admin"),))
REPORT = ROOT / "tests/assets/trivy/dd_trivy_schema2_image_os_and_jar.json"
BEFORE = ROOT / "tests/policy/assets/library_before"
FLOOR_DOCUMENT = "sealgate.bench.floor"
FLOOR_MODULE = "package sealgate.bench\n\nimport rego.v1\n\nfloor := true\n"
OLD_FLOW = Path(__file__).parent / "old_flow" / "count_requests.py"


def percentiles(values: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(values, n=100)
    return {"p50_us": round(cuts[49] * 1e6, 1), "p95_us": round(cuts[94] * 1e6, 1)}


def take_turns(subjects: dict[str, Callable[[], object]], samples: int) -> dict[str, Any]:
    """Wall-clock percentiles per subject (the subjects taking turns), and the p50 of the
    process CPU time of each call (Go's collector runs in other threads of this process)."""
    for func in subjects.values():
        for _ in range(30):
            func()
    wall: dict[str, list[float]] = {name: [] for name in subjects}
    cpu: dict[str, list[float]] = {name: [] for name in subjects}
    for _ in range(samples):
        for name, func in subjects.items():
            started, used = time.perf_counter(), time.process_time()
            func()
            cpu[name].append(time.process_time() - used)
            wall[name].append(time.perf_counter() - started)
    return {
        name: {
            **percentiles(wall[name]),
            "cpu_p50_us": round(statistics.median(cpu[name]) * 1e6, 1),
        }
        for name in subjects
    }


async def take_turns_async(
    subjects: dict[str, Callable[[], Awaitable[object]]], samples: int
) -> dict[str, dict[str, float]]:
    for func in subjects.values():
        for _ in range(30):
            await func()
    wall: dict[str, list[float]] = {name: [] for name in subjects}
    for _ in range(samples):
        for name, func in subjects.items():
            started = time.perf_counter()
            await func()
            wall[name].append(time.perf_counter() - started)
    return {name: percentiles(values) for name, values in wall.items()}


def engines(bundle: PolicyBundle) -> tuple[EmbeddedOpaEngine, EmbeddedOpaEngine]:
    """The default library and the one before the rewrite, each with the floor document."""
    modules = {**bundle.modules, "bench/floor.rego": FLOOR_MODULE}
    before = {
        **modules,
        "rules/vulnerabilities.rego": (BEFORE / "vulnerabilities.rego").read_text(),
        "lib/outcome.rego": (BEFORE / "outcome.rego").read_text(),
    }
    return (
        EmbeddedOpaEngine(PolicyBundle(modules=modules, data=bundle.data)),
        EmbeddedOpaEngine(PolicyBundle(modules=before, data=bundle.data)),
    )


def encoded_benchmark_input() -> tuple[bytes, Any, ScanSnapshot]:
    """The 200-finding input as the pipeline encodes it (findings once, spliced in),
    evaluated now: a decision about a scan older than the policy allows is not cached."""
    policy_input = benchmark_input(dt.datetime.now(dt.UTC))
    scan = policy_input.scan
    assert scan is not None
    snapshot = ScanSnapshot.build(
        scanner=scan.scanner,
        format=scan.format,
        scanned_at=scan.scanned_at,
        source=scan.source,
        vulnerabilities=scan.vulnerabilities,
    )
    bare = policy_input.model_copy(update={"scan": scan.model_copy(update={"vulnerabilities": []})})
    encoded = encode_input(bare, snapshot)
    return encoded.encoded, encoded, snapshot


def measure_policy(samples: int) -> dict[str, Any]:
    bundle = PolicyBundle.from_directory(ROOT / "policies")
    new, old = engines(bundle)
    raw, _, _ = encoded_benchmark_input()
    try:
        after = new.answer(Entrypoint.admission, raw).decision
        before = old.answer(Entrypoint.admission, raw).decision
        assert after == before, "the rewritten library decides differently"
        assert eval_document_encoded(new._loaded.opa, FLOOR_DOCUMENT, raw) is True
        times = take_turns(
            {
                "floor": lambda: eval_document_encoded(new._loaded.opa, FLOOR_DOCUMENT, raw),
                "miss": lambda: new.answer(Entrypoint.admission, raw),
                "miss_library_before": lambda: old.answer(Entrypoint.admission, raw),
                "floor_library_before": lambda: eval_document_encoded(
                    old._loaded.opa, FLOOR_DOCUMENT, raw
                ),
            },
            samples,
        )
    finally:
        new.close()
        old.close()
    floor, miss = times["floor"], times["miss"]
    return {
        "input_bytes": len(raw),
        "denials": len(after.deny),
        **times,
        "miss_over_floor_p50": round(miss["p50_us"] / floor["p50_us"], 2),
        "miss_over_floor_cpu_p50": round(miss["cpu_p50_us"] / floor["cpu_p50_us"], 2),
        "miss_p95_over_p50": round(miss["p95_us"] / miss["p50_us"], 2),
        "library_before_over_floor_p50": round(
            times["miss_library_before"]["p50_us"] / times["floor_library_before"]["p50_us"], 2
        ),
    }


async def prepare(services: Services, hosts: list[str]) -> list[str]:
    """A key and an authority for ``hosts``; one signed, scanned image per host."""
    scopes = [f"{host}/**" for host in hosts]
    with session_scope(services.sessions) as session:
        generate_key(
            session,
            settings=services.settings,
            name="bench",
            algorithm=Algorithm.ecdsa_p256,
            scopes=scopes,
        )
        public = get_key(session, name="bench").public_key_pem
        save_authority(session, key_authority(name="bench", keys=[public], scopes=scopes))
    images = []
    for i, host in enumerate(hosts):
        # Distinct repositories: the proxy's host reaches the same registry.
        repository = f"{host}/bench/app-{i}"
        image, _ = await push_random_image(services.registry, repository, tag="v1")
        await sign_image(services, image=str(image), principal=PRINCIPAL, key_name="bench")
        await upload_scan(services, image=image, report=REPORT.read_bytes(), uploaded_by="bench")
        images.append(f"{image.name}:v1")
    # Signing ran the sign gate, which cached what it saw before the signature and scan.
    empty_caches(services.decisions)
    services.decisions.context.refresh()
    return images


def request_for(image: str) -> DecisionRequest:
    return DecisionRequest(image=image, entrypoint=Entrypoint.admission, deadline=Deadline(10))


def empty_caches(parts: pipeline.DecisionParts) -> None:
    for cache in parts.caches.all():
        cache.clear()


async def measure_pipeline(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    registry = start_registry(workdir / "registry")
    proxy = CountingProxyStandIn(registry).start()
    database_url = f"sqlite:///{workdir / 'sealgate.db'}"
    upgrade(database_url)
    settings = load_settings(
        database_url=database_url,
        insecure_registries=[registry.host, proxy.host],
        key_encryption_key=KEK,
        log_level="WARNING",
    )
    services = Services.from_settings(settings)
    try:
        direct, proxied = await prepare(services, [registry.host, proxy.host])
        parts = services.decisions

        # The decision cache path, for the 200-finding input.
        _, encoded, _ = encoded_benchmark_input()
        hit_request = request_for("registry.example.com/shop/checkout:2.3")
        trace = pipeline._Trace()
        await pipeline._answer(encoded, hit_request, parts, trace)
        assert trace.cache is None
        await pipeline._answer(encoded, hit_request, parts, trace)
        assert trace.cache == "decision", "the decision was not cached"

        async def hit() -> object:
            return await pipeline._answer(encoded, hit_request, parts, pipeline._Trace())

        # One image, everything cached.
        warm_request = request_for(direct)
        first = await pipeline.decide(warm_request, parts)
        assert first.failure is None and first.input.get("signatures"), first.decision
        again = await pipeline.decide(warm_request, parts)
        assert again.cache == "decision", again.cache

        async def warm() -> object:
            return await pipeline.decide(warm_request, parts)

        async def bare_round() -> None:
            await asyncio.sleep(0)

        cached = await take_turns_async(
            {"hit": hit, "warm_decide": warm, "sleep0": bare_round}, args.samples
        )

        # One image, nothing cached: time per step, against the registry directly.
        steps: dict[str, list[float]] = {}
        for _ in range(args.cold):
            empty_caches(parts)
            outcome = await pipeline.decide(request_for(direct), parts)
            assert outcome.failure is None and outcome.cache is None, outcome
            for step, ms in outcome.timings_ms.items():
                steps.setdefault(step, []).append(ms)

        # Registry requests of one uncached decision, through the counting proxy.
        counts = []
        for _ in range(3):
            empty_caches(parts)
            proxy.requests.clear()
            outcome = await pipeline.decide(request_for(proxied), parts)
            assert outcome.failure is None and outcome.cache is None, outcome
            counts.append(len(proxy.requests))
            listed = [f"{method} {_shape(path)}" for method, path in proxy.requests]
    finally:
        await services.aclose()
        proxy.stop()
        stop_registry(registry)
    return {
        **cached,
        "hit_over_miss_p50": None,  # filled in by main, next to the miss
        "warm_over_sleep0_p50": round(
            cached["warm_decide"]["p50_us"] / cached["sleep0"]["p50_us"], 1
        ),
        "cold_samples": args.cold,
        "cold_steps_p50_ms": {
            step: round(statistics.median(values), 2) for step, values in steps.items()
        },
        "registry_requests": max(counts),
        "registry_requests_made": listed,
    }


def _shape(path: str) -> str:
    """A request path with the repository and digests elided, for the report."""
    parts = path.split("?")[0].split("/")
    if len(parts) > 4 and parts[1] == "v2":
        kind = next((p for p in ("manifests", "referrers", "blobs", "tags") if p in parts), "")
        tail = parts[-1]
        tail = "<digest>" if tail.startswith("sha256") else tail
        return f"/v2/<repo>/{kind}/{tail}"
    return path


def count_requests(tree: Path, *, registry_scan: bool) -> dict[str, Any]:
    """Run ``old_flow/count_requests.py`` against the Sealgate tree at ``tree``."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    proc = subprocess.run(
        [sys.executable, str(OLD_FLOW), *(["--registry-scan"] if registry_scan else [])],
        capture_output=True,
        text=True,
        cwd=tree,
        env=env,
        timeout=600,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"counting requests in {tree} failed:\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def request_counts(old_tree: Path | None) -> dict[str, Any]:
    """Requests per uncached decision, today and (given its tree) before the pipeline, for
    a stored scan and for a scan found only in the registry."""
    counts: dict[str, Any] = {}
    for registry_scan in (False, True):
        scenario = "registry_scan" if registry_scan else "stored_scan"
        today = count_requests(ROOT, registry_scan=registry_scan)
        counts[scenario] = {"today": today["registry_requests"], "today_made": today}
        if old_tree is not None:
            old = count_requests(old_tree, registry_scan=registry_scan)
            counts[scenario].update(before=old["registry_requests"], before_made=old)
            counts[scenario]["halved"] = today["registry_requests"] * 2 <= old["registry_requests"]
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--cold", type=int, default=30, help="uncached decisions to time")
    parser.add_argument(
        "--old-tree",
        type=Path,
        default=os.environ.get("SEALGATE_BENCH_OLD_TREE") or None,
        help="the tree before the pipeline (default: $SEALGATE_BENCH_OLD_TREE)",
    )
    args = parser.parse_args()
    # The engine's Go collector as ``sealgate serve`` runs it (app.policy.go_gc).
    restart_with_go_gc_defaults()

    load_before = [round(x, 2) for x in os.getloadavg()]
    policy = measure_policy(args.samples)
    with tempfile.TemporaryDirectory(prefix="sealgate-bench-") as tmp:
        flow = asyncio.run(measure_pipeline(args, Path(tmp)))
    flow["hit_over_miss_p50"] = round(flow["hit"]["p50_us"] / policy["miss"]["p50_us"], 4)
    requests = request_counts(args.old_tree)
    result: dict[str, Any] = {
        "benchmark": "decision_pipeline",
        "samples": args.samples,
        "policy": policy,
        "pipeline": flow,
        "requests_per_uncached_decision": requests,
        "targets": {
            "miss_over_floor_p50_max": 2.0,
            "miss_over_floor_met": policy["miss_over_floor_p50"] <= 2.0,
            "miss_p95_over_p50_max": 2.0,
            "miss_p95_met": policy["miss_p95_over_p50"] <= 2.0,
            "hit_over_miss_p50_max": 0.01,
            "hit_met": flow["hit_over_miss_p50"] <= 0.01,
            "requests_halved": [c.get("halved") for c in requests.values()],
        },
        "load_average_before": load_before,
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
        "affinity": sorted(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
