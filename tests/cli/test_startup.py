"""The CLI starts without loading what a command does not use (measured in benchmarks/)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent.parent
# Not pydantic: Typer itself coerces every invoked command's parameters with it.
HEAVY = (
    "sigstore",
    "sqlalchemy",
    "fastapi",
    "httpx",
    "cryptography",
    "rich",
    "opa_bindings",
    "yaml",
    "pydantic_settings",  # app.config: only commands that read the settings load it
)
# Runs a command in a fresh interpreter and prints which heavy packages it loaded.
PROBE = """
import json, sys
from app.cli.main import cli
try:
    cli(sys.argv[1:])
except SystemExit:
    pass
heavy = sorted({{m.split(".")[0] for m in sys.modules}} & set({heavy!r}))
print("\\nLOADED " + json.dumps(heavy))
"""


def loaded_by(*args: str) -> tuple[list[str], str]:
    """The heavy packages ``sealgate ARGS`` loaded, and what it printed."""
    result = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=HEAVY), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "80", "SEALGATE_POLICY_DIR": "policies"},
    )
    line = result.stdout.rstrip().rpartition("\n")[2]
    assert line.startswith("LOADED "), result.stdout + result.stderr
    loaded: list[str] = json.loads(line.removeprefix("LOADED "))
    return loaded, result.stdout


@pytest.mark.parametrize(
    "args",
    [(), ("--help",), ("version",), ("policy", "--help"), ("sign", "--help"), ("errors",)],
)
def test_help_and_version_load_no_heavy_package(args: tuple[str, ...]) -> None:
    loaded, printed = loaded_by(*args)
    assert printed.strip()
    assert loaded == []


def test_policy_test_loads_no_database_registry_or_sigstore() -> None:
    loaded, printed = loaded_by("policy", "test")
    assert " passed, 0 failed" in printed
    assert "opa_bindings" in loaded  # the embedded engine ran the tests
    assert not {"sigstore", "sqlalchemy", "fastapi", "httpx"} & set(loaded), loaded


def test_copy_loads_no_database_or_web_framework() -> None:
    """Fails if the registry client imports SQLAlchemy or FastAPI at module level again
    (``app.oci.locks`` did, for the PostgreSQL lock: a third of ``sealgate copy``'s start-up,
    though the command never touches a database)."""
    loaded, _ = loaded_by(
        "copy", "--no-progress", "127.0.0.1:9/none/app:v1", "127.0.0.1:9/copies/app:v1"
    )
    assert "httpx" in loaded  # the command got as far as the registry
    assert not {"sqlalchemy", "fastapi", "sigstore"} & set(loaded), loaded
