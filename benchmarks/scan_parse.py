"""Parse throughput of the largest sample vulnerability report, in MB/s.

Measures ``app.scans.detect.parse_report`` (decode, detect, validate, normalise, merge and
count) on the largest report under ``tests/assets/{trivy,grype,sarif,cyclonedx}``, and in
the same run a baseline: plain ``json.loads`` of the same bytes. Each is timed over
``--rounds`` rounds of ``--iterations`` parses, the two taking turns within each round;
the median round is reported. Prints one JSON line.

    .venv/bin/python benchmarks/scan_parse.py [--iterations 200] [--rounds 7]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.scans.detect import parse_report  # noqa: E402

ASSETS = ROOT / "tests" / "assets"
FORMATS = ("trivy", "grype", "sarif", "cyclonedx")


def largest_report() -> Path:
    reports = [p for f in FORMATS for p in (ASSETS / f).glob("*.json")]
    return max(reports, key=lambda p: p.stat().st_size)


def median_seconds(
    subjects: dict[str, Callable[[bytes], Any]], data: bytes, *, iterations: int, rounds: int
) -> dict[str, float]:
    """Per subject, the median over ``rounds`` of one call's time (averaged over a round).

    The subjects take turns within each round, so a busy machine slows both alike.
    """
    for func in subjects.values():
        func(data)  # warm caches (pydantic validators, regexes) before timing
    per_call: dict[str, list[float]] = {name: [] for name in subjects}
    for _ in range(rounds):
        for name, func in subjects.items():
            started = time.perf_counter()
            for _ in range(iterations):
                func(data)
            per_call[name].append((time.perf_counter() - started) / iterations)
    return {name: statistics.median(times) for name, times in per_call.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    path = largest_report()
    data = path.read_bytes()
    megabytes = len(data) / 1_000_000
    timings = median_seconds(
        {"json_loads": json.loads, "parse": parse_report},
        data,
        iterations=args.iterations,
        rounds=args.rounds,
    )
    baseline, parse = timings["json_loads"], timings["parse"]
    report = parse_report(data)
    print(
        json.dumps(
            {
                "benchmark": "scan_parse",
                "report": str(path.relative_to(ROOT)),
                "format": report.format.value,
                "bytes": len(data),
                "findings": len(report.vulnerabilities),
                "iterations": args.iterations,
                "rounds": args.rounds,
                "parse_ms": round(parse * 1000, 3),
                "parse_mb_per_s": round(megabytes / parse, 1),
                "json_loads_ms": round(baseline * 1000, 3),
                "json_loads_mb_per_s": round(megabytes / baseline, 1),
                "parse_vs_json_loads": round(parse / baseline, 2),
                "python": platform.python_version(),
            }
        )
    )


if __name__ == "__main__":
    main()
