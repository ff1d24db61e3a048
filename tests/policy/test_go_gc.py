"""The embedded engine's Go collector settings reach the serving process at its start.

Go reads GOGC and GOMEMLIMIT from the environment a process started with, so
``sealgate serve`` and ``sealgate worker`` start themselves again with them
(``app.policy.go_gc``), keeping a user's own setting.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from app.db.migrate import upgrade
from app.policy.go_gc import GO_GC_DEFAULTS
from tests.fixtures.registry import free_port, stop_process
from tests.fixtures.serve import SEALGATE, wait_until_answering

_PRINT_SETTINGS = (
    "import os\n"
    "from app.policy.go_gc import restart_with_go_gc_defaults\n"
    "restart_with_go_gc_defaults()\n"
    "print(os.environ.get('GOGC'), os.environ.get('GOMEMLIMIT'))\n"
)


def _environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in GO_GC_DEFAULTS}
    return {**env, **extra}


def _run(env: dict[str, str]) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", _PRINT_SETTINGS],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout.split()


def test_a_process_without_settings_starts_again_with_the_defaults() -> None:
    gogc, limit = _run(_environment())
    assert (gogc, limit) == (GO_GC_DEFAULTS["GOGC"], GO_GC_DEFAULTS["GOMEMLIMIT"])


def test_a_users_own_setting_is_kept_and_nothing_is_added() -> None:
    assert _run(_environment(GOGC="50")) == ["50", "None"]
    assert _run(_environment(GOMEMLIMIT="1GiB")) == ["None", "1GiB"]


def test_serve_runs_with_the_settings_under_its_own_process_id(tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'sealgate.db'}"
    upgrade(database_url)
    port = free_port()
    env = _environment(SEALGATE_DATABASE_URL=database_url)
    with (tmp_path / "serve.log").open("wb") as log:
        proc = subprocess.Popen(
            [SEALGATE, "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=log,
        )
    try:
        answer = wait_until_answering(f"http://127.0.0.1:{port}/healthz", verify=False, proc=proc)
        assert answer.status_code == 200
        # The process the caller started is the one serving, with the settings.
        environ = Path(f"/proc/{proc.pid}/environ").read_bytes().split(b"\0")
        assert b"GOGC=1000" in environ and b"GOMEMLIMIT=256MiB" in environ
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0")
        assert b"serve" in cmdline and str(port).encode() in cmdline
    finally:
        stop_process(proc)
