"""One decision of the default policy library over an input with 200 vulnerabilities.

Measures, in the same run and taking turns, ``EmbeddedOpaEngine.decide`` (OPA's Go engine
in process: input serialisation, evaluation, parsing the decision) and
``OpaServerEngine.decide`` against the OPA REST stand-in on 127.0.0.1 (the same engine
behind HTTP, so the difference is the REST path: ``opa-python-client``, JSON over
loopback, the server's handling). Three in-process references explain the figure: the raw
evaluation (no pydantic on either side), the same decision with no vulnerabilities, and
the cheapest document (``sealgate.lib.params.mode``) over the full input, which is the
cost of handing a 200-finding input to the engine at all. Targets: in-process p50 <=
200 us; in-process >= 5x faster than REST. Prints one JSON line (with the load average,
since other work on the machine moves these figures).

    .venv/bin/python -m benchmarks.policy_decision [--samples 2000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.policy.bundle import PolicyBundle  # noqa: E402
from app.policy.engines import EmbeddedOpaEngine, OpaServerEngine, decision_document  # noqa: E402
from app.policy.input import (  # noqa: E402
    Entrypoint,
    ImageFacts,
    KubernetesContext,
    PolicyInput,
    PolicyVulnerability,
    SignatureFacts,
    build_input,
    scan_facts,
)
from app.scans.model import ScanSource, Severity  # noqa: E402
from tests.fixtures.opa_standin import OpaRestStandIn  # noqa: E402

VULNERABILITIES = 200
# A realistic spread: a few critical findings, some fixable highs, mostly medium and low.
SPREAD = [(Severity.critical, 4), (Severity.high, 36), (Severity.medium, 80), (Severity.low, 80)]


def benchmark_input(now: dt.datetime | None = None) -> PolicyInput:
    """The input over 200 findings, evaluated at ``now`` (a fixed time by default)."""
    now = now or dt.datetime(2026, 6, 1, 12, tzinfo=dt.UTC)
    findings: list[PolicyVulnerability] = []
    for severity, count in SPREAD:
        for i in range(count):
            fixed = f"1.{i}.1" if i % 2 == 0 else None
            findings.append(
                PolicyVulnerability(
                    id=f"CVE-2026-{len(findings):05d}",
                    severity=severity,
                    package=f"pkg-{i % 37}",
                    installed=f"1.{i}.0",
                    fixed=fixed,
                    fix_available=fixed is not None,
                )
            )
    assert len(findings) == VULNERABILITIES
    return build_input(
        entrypoint=Entrypoint.admission,
        image=ImageFacts.from_reference(
            "registry.example.com/shop/checkout:2.3", digest="sha256:" + "ab" * 32
        ),
        authorities=["ci"],
        signatures=[SignatureFacts(authority="ci", kind="key", key_id="k1", format="bundle")],
        scan=scan_facts(
            scanner="trivy",
            format="trivy",
            scanned_at=now - dt.timedelta(hours=2),
            evaluated_at=now,
            vulnerabilities=findings,
            source=ScanSource.authenticated_upload,
        ),
        kubernetes=KubernetesContext(namespace="shop", kind="Pod", operation="CREATE"),
        evaluated_at=now,
    )


def sample(subjects: dict[str, Callable[[], Any]], *, samples: int) -> dict[str, list[float]]:
    """Per subject, ``samples`` single-call times in seconds, the subjects taking turns."""
    for func in subjects.values():
        for _ in range(20):
            func()  # warm: prepared queries, HTTP keep-alive, allocator
    times: dict[str, list[float]] = {name: [] for name in subjects}
    for _ in range(samples):
        for name, func in subjects.items():
            started = time.perf_counter()
            func()
            times[name].append(time.perf_counter() - started)
    return times


def percentiles(values: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(values, n=100)
    return {"p50_us": round(cuts[49] * 1e6, 1), "p95_us": round(cuts[94] * 1e6, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--samples", type=int, default=2000)
    args = parser.parse_args()

    bundle = PolicyBundle.from_directory(ROOT / "policies")
    policy_input = benchmark_input()
    document = decision_document(policy_input.entrypoint)
    raw_input = policy_input.to_rego()
    assert policy_input.scan is not None
    no_vulns = policy_input.model_copy(
        update={"scan": policy_input.scan.model_copy(update={"vulnerabilities": []})}
    )

    embedded = EmbeddedOpaEngine(bundle)
    standin = OpaRestStandIn().start()
    server = OpaServerEngine(standin.url)
    server.load(bundle)
    try:
        in_process = embedded.decide(policy_input)
        assert in_process == server.decide(policy_input), "engines disagree"
        times = sample(
            {
                "in_process": lambda: embedded.decide(policy_input),
                "in_process_raw_eval": lambda: embedded.evaluate(document, raw_input),
                "in_process_no_vulnerabilities": lambda: embedded.decide(no_vulns),
                "input_handover_floor": lambda: embedded.evaluate(
                    "sealgate.lib.params.mode", raw_input
                ),
                "opa_rest": lambda: server.decide(policy_input),
            },
            samples=args.samples,
        )
    finally:
        server.close()
        standin.stop()
        embedded.close()

    stats = {name: percentiles(values) for name, values in times.items()}
    speedup = stats["opa_rest"]["p50_us"] / stats["in_process"]["p50_us"]
    result = {
        "benchmark": "policy_decision",
        "vulnerabilities": VULNERABILITIES,
        "denials": len(in_process.deny),
        "samples": args.samples,
        **{name: value for name, value in stats.items()},
        "rest_over_in_process_p50": round(speedup, 1),
        "targets": {
            "in_process_p50_us_max": 200,
            "in_process_p50_met": stats["in_process"]["p50_us"] <= 200,
            "speedup_min": 5,
            "speedup_met": speedup >= 5,
        },
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
