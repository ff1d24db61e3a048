"""Compiling and testing a bundle in a worker process that can be stopped.

The embedded OPA engine cannot be interrupted, and compiling a hostile bundle (tens of
thousands of rules) can take minutes and gigabytes while it holds a core. So a bundle
about to be published is compiled and tested by ``python -m app.policy.worker`` in its own
process: the bundle goes in on stdin as JSON, the test results (or the compile error)
come back on stdout as JSON. The parent watches it and kills it when it runs longer than
``BundleLimits.seconds`` or its resident memory passes ``BundleLimits.memory_bytes``
(``policy.compile_limit``). The worker also caps its own CPU time (RLIMIT_CPU) in case its
parent is gone, and gets Go's soft memory limit (GOMEMLIMIT). RLIMIT_AS is not used: the
Go runtime reserves far more address space than it ever touches (about 1.7 GB for the
default bundle), so resident memory is what is measured. The worker's environment holds
no ``SEALGATE_*`` variable.
"""

from __future__ import annotations

import json
import math
import os
import resource
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from typing import IO, Any

from app.config import Settings
from app.errors import PolicyError
from app.limits import POLICY_COMPILE_MEMORY_BYTES
from app.policy.bundle import PolicyBundle
from app.policy.runner import RegoTest, RegoTestReport, RegoTestResult, run_tests

POLL_SECONDS = 0.05
_PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class BundleLimits:
    """What a bundle being published may do and use (from ``SEALGATE_POLICY_*``)."""

    allow_network: bool = False
    seconds: float = 30.0
    memory_bytes: int = POLICY_COMPILE_MEMORY_BYTES

    @classmethod
    def from_settings(cls, settings: Settings) -> BundleLimits:
        return cls(
            allow_network=settings.policy_allow_network,
            seconds=settings.policy_compile_timeout,
            memory_bytes=settings.policy_compile_memory,
        )


def run_tests_in_worker(bundle: PolicyBundle, *, limits: BundleLimits) -> RegoTestReport:
    """``run_tests(bundle)`` in a worker process within ``limits``.

    Raises PolicyError: what ``run_tests`` raises (``policy.compile`` naming file and
    line), ``policy.compile_limit`` when the worker ran out of time or memory, and
    ``policy.engine`` when it failed otherwise.
    """
    request = json.dumps({"modules": bundle.modules, "data": bundle.data}).encode()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEALGATE_")}
    env["GOMEMLIMIT"] = str(limits.memory_bytes)
    cpu_seconds = math.ceil(limits.seconds) + 1
    process = subprocess.Popen(
        [sys.executable, "-m", "app.policy.worker", str(cpu_seconds)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert process.stdin is not None and process.stdout is not None
    assert process.stderr is not None
    output: list[bytes] = []
    errors: list[bytes] = []
    readers = [
        threading.Thread(target=_drain, args=(process.stdout, output), daemon=True),
        threading.Thread(target=_drain, args=(process.stderr, errors), daemon=True),
    ]
    for reader in readers:
        reader.start()
    try:
        try:
            process.stdin.write(request)
            process.stdin.close()
        except BrokenPipeError:
            pass  # the worker died at once; its exit status says why
        exceeded = _watch(process, limits=limits)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        for reader in readers:
            reader.join(timeout=5)
    if exceeded is not None:
        raise PolicyError(exceeded, code="policy.compile_limit")
    return _report(process.returncode, b"".join(output), b"".join(errors), limits=limits)


def _drain(stream: IO[bytes], into: list[bytes]) -> None:
    with stream:
        while chunk := stream.read(65536):
            into.append(chunk)


def _watch(process: subprocess.Popen[bytes], *, limits: BundleLimits) -> str | None:
    """Wait for the worker; the reason to stop it when it passes a limit, else None."""
    deadline = time.monotonic() + limits.seconds
    while process.poll() is None:
        if time.monotonic() > deadline:
            return (
                f"compiling and testing the bundle took longer than {limits.seconds:g} s "
                "(SEALGATE_POLICY_COMPILE_TIMEOUT); it was stopped"
            )
        if _resident_bytes(process.pid) > limits.memory_bytes:
            return (
                f"compiling and testing the bundle used more than "
                f"{limits.memory_bytes // (1024 * 1024)} MiB (SEALGATE_POLICY_COMPILE_MEMORY); "
                "it was stopped"
            )
        time.sleep(POLL_SECONDS)
    return None


def _resident_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as statm:
            return int(statm.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return 0  # gone already: its exit status is read next


def _report(code: int, output: bytes, errors: bytes, *, limits: BundleLimits) -> RegoTestReport:
    try:
        answer: dict[str, Any] = json.loads(output)
    except ValueError:
        answer = {}
    if "results" in answer:
        return RegoTestReport(
            results=[
                RegoTestResult(test=RegoTest(**r["test"]), passed=r["passed"], message=r["message"])
                for r in answer["results"]
            ]
        )
    if "error" in answer:
        error = answer["error"]
        raise PolicyError(error["message"], code=error["code"], details=error["details"])
    tail = errors.decode(errors="replace").strip()[-500:]
    if code < 0 or b"out of memory" in errors:
        raise PolicyError(
            f"compiling and testing the bundle passed the worker's limits "
            f"({limits.seconds:g} s, {limits.memory_bytes // (1024 * 1024)} MiB) and it "
            f"was stopped (exit {code})",
            code="policy.compile_limit",
        )
    raise PolicyError(f"the policy worker failed (exit {code}): {tail}", code="policy.engine")


def _serve_one(cpu_seconds: int) -> None:
    """The worker's side: read one bundle on stdin, answer on stdout, exit."""
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
    request = json.load(sys.stdin)
    bundle = PolicyBundle(modules=request["modules"], data=request["data"])
    try:
        report = run_tests(bundle)
    except PolicyError as e:
        answer: dict[str, Any] = {
            "error": {"code": e.code, "message": e.message, "details": e.details}
        }
    else:
        answer = {"results": [asdict(r) for r in report.results]}
    json.dump(answer, sys.stdout)
    sys.stdout.flush()


if __name__ == "__main__":
    _serve_one(int(sys.argv[1]))
