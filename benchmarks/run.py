"""Run every benchmark in this folder and print their results.

Each benchmark is a module ``benchmarks/<name>.py`` runnable as
``python -m benchmarks.<name>``; it measures its subject *and a baseline in the same
run* and prints one JSON object per line on stdout. This runner executes each in its own
process (so one cannot warm another's caches), shows progress on stderr, and writes all
results to ``benchmarks/results.json`` for ``benchmarks/README.md`` (a run of named
benchmarks replaces only their entries).

    make bench                      # every benchmark
    python -m benchmarks.run NAME   # only the named ones
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent
SKIP = {"__init__", "run"}


def discover() -> list[str]:
    return sorted(p.stem for p in HERE.glob("*.py") if p.stem not in SKIP)


def main(argv: list[str]) -> int:
    names = argv or discover()
    results: dict[str, list[object]] = {}
    if argv and (HERE / "results.json").exists():
        results = json.loads((HERE / "results.json").read_text())
    failed = []
    for i, name in enumerate(names, 1):
        print(f"[{i}/{len(names)}] {name} ...", file=sys.stderr, flush=True)
        started = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", f"benchmarks.{name}"],
            capture_output=True,
            text=True,
            cwd=HERE.parent,
            timeout=1800,
        )
        elapsed = time.monotonic() - started
        if proc.returncode != 0:
            failed.append(name)
            print(f"    FAILED after {elapsed:.0f}s:\n{proc.stderr[-2000:]}", file=sys.stderr)
            continue
        lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
        results[name] = lines
        for line in lines:
            print(f"    {json.dumps(line)}", file=sys.stderr)
        print(f"    done in {elapsed:.0f}s", file=sys.stderr)
    (HERE / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({name: results[name] for name in names if name in results}, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
