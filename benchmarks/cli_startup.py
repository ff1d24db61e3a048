"""Start-up time of the ``sealgate`` command line, against the bare interpreter.

Times ``sealgate --help``, ``sealgate version`` and ``sealgate policy test`` (the default
library's Rego tests) as fresh processes, and in the same run the baseline
``python -c pass`` with the same interpreter. The four take turns within each of
``--rounds`` rounds, so a change in machine load touches all of them alike; the median of
each is reported, with its overhead over the baseline and the target (``--help`` and
``version`` at most 0.3 s above the interpreter, ``policy test`` at most 1 s). Wall time
is what a person waits; the CPU time (user + system of the process) is reported beside it
because it moves much less when other work shares the machine. Prints one JSON line per
command and the load average at the start.

    .venv/bin/python -m benchmarks.cli_startup [--rounds 15]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# ``sealgate`` is the console script next to the interpreter in the venv.
SEALGATE = str(Path(sys.executable).with_name("sealgate"))
BASELINE = "python -c pass"
COMMANDS: dict[str, tuple[list[str], float | None]] = {
    BASELINE: ([sys.executable, "-c", "pass"], None),
    "sealgate --help": ([SEALGATE, "--help"], 0.3),
    "sealgate version": ([SEALGATE, "version"], 0.3),
    "sealgate policy test": ([SEALGATE, "policy", "test", str(ROOT / "policies")], 1.0),
}


def run_once(argv: list[str]) -> tuple[float, float]:
    """Wall seconds from spawning ``argv`` to its exit, and the CPU seconds it used; it must
    succeed."""
    started = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise subprocess.CalledProcessError(process.returncode, argv)
    return wall, usage.ru_utime + usage.ru_stime


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args(argv)
    load = os.getloadavg()
    for command, _ in COMMANDS.values():
        run_once(command)  # warm the file cache and the bytecode
    walls: dict[str, list[float]] = {name: [] for name in COMMANDS}
    cpus: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.rounds):
        for name, (command, _) in COMMANDS.items():
            wall, cpu = run_once(command)
            walls[name].append(wall)
            cpus[name].append(cpu)
    baseline = statistics.median(walls[BASELINE])
    baseline_cpu = statistics.median(cpus[BASELINE])
    for name, (_, target) in COMMANDS.items():
        median = statistics.median(walls[name])
        cpu = statistics.median(cpus[name])
        line: dict[str, object] = {
            "command": name,
            "median_s": round(median, 4),
            "median_cpu_s": round(cpu, 4),
            "rounds": args.rounds,
            "load_average": [round(x, 2) for x in load],
        }
        if target is not None:
            overhead = median - baseline
            line |= {
                "overhead_s": round(overhead, 4),
                "cpu_overhead_s": round(cpu - baseline_cpu, 4),
                "target_overhead_s": target,
                "met": overhead <= target,
            }
        print(json.dumps(line), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
