"""The project's own scripts and metadata: safe on a developer's machine, quiet to install."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

ROOT = Path(__file__).parent.parent
# Commands that touch what the scripts did not start: processes by name, system services.
MACHINE_WIDE = re.compile(r"(?<![-\w])(pkill|killall|systemctl)\b")


class TestScripts:
    def test_ci_run_and_makefile_touch_nothing_they_did_not_start(self) -> None:
        for name in (".ci/run", "Makefile"):
            for number, line in enumerate((ROOT / name).read_text().splitlines(), start=1):
                code = line.split("#", 1)[0]
                assert not MACHINE_WIDE.search(code), f"{name}:{number}: {line.strip()}"

    def test_ci_run_installs_what_the_tests_and_benchmarks_use(self) -> None:
        text = (ROOT / ".ci/run").read_text()
        for package in ("docker-registry", "skopeo", "wrk", "chromium", "nodejs", "npm"):
            assert f"={package}" in text, package
        assert "pg_isready" in text and "make test" in text

    def test_install_prints_no_comment(self) -> None:
        # -n prints the recipe without running it; -B as if nothing were installed yet.
        recipe = subprocess.run(
            ["make", "-n", "-B", "install"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout
        assert recipe.strip()
        assert not [line for line in recipe.splitlines() if line.lstrip().startswith("#")]


class TestPyproject:
    def test_license_is_an_spdx_string_and_setuptools_reads_it(self) -> None:
        project = tomllib.loads((ROOT / "pyproject.toml").read_text())
        assert project["project"]["license"] == "Apache-2.0"
        # The SPDX string form is setuptools >= 77's; older ones warn or refuse.
        assert "setuptools>=77" in project["build-system"]["requires"]
