"""``sealgate scan`` against the suite's database and registry."""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable
from pathlib import Path

from tests.conftest import Cli
from tests.fixtures.images import push_random_image_sync
from tests.fixtures.registry import RegistryProcess

Asset = Callable[[str], Path]
UNBOUND_TRIVY = "trivy/dd_trivy_schema2_image_os_and_jar.json"
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def pushed_image(registry: RegistryProcess) -> str:
    repository = f"cli{secrets.token_hex(4)}/app"
    push_random_image_sync(registry, repository, tag="v1")
    return f"{registry.host}/{repository}:v1"


class TestScanCli:
    def test_ingest_then_list(self, sealgate: Cli, registry: RegistryProcess, asset: Asset) -> None:
        image = pushed_image(registry)
        result = sealgate("scan", "ingest", image, str(asset(UNBOUND_TRIVY)), "--format", "trivy")
        assert result.exit_code == 0, result.output
        stored = json.loads(result.stdout)
        assert stored["counts"]["critical"] == 1
        assert stored["uploaded_by"].startswith("cli:")
        listed = sealgate("scan", "list", image)
        assert listed.exit_code == 0, listed.output
        assert [s["source"] for s in json.loads(listed.stdout)] == ["authenticated_upload"]
        (scan,) = json.loads(listed.stdout)
        assert ISO_UTC.match(scan["scanned_at"]), scan["scanned_at"]
        assert ISO_UTC.match(stored["scanned_at"]), stored["scanned_at"]

    def test_wrong_image_is_one_line_and_exit_1(
        self, sealgate: Cli, registry: RegistryProcess, asset: Asset
    ) -> None:
        image = pushed_image(registry)
        report = asset("grype/dd_grype_0.94_busybox_epss_risk.json")
        result = sealgate("scan", "ingest", image, str(report))
        assert result.exit_code == 1
        assert result.stderr.startswith("error: the report is for image sha256:388056c9")
        assert "[scan.wrong_image]" in result.stderr
        assert "Traceback" not in result.output
        assert json.loads(sealgate("scan", "list", image).stdout) == []

    def test_unknown_format_lists_the_supported_ones(
        self, sealgate: Cli, registry: RegistryProcess, asset: Asset
    ) -> None:
        result = sealgate(
            "scan", "ingest", "example.com/a:1", str(asset(UNBOUND_TRIVY)), "--format", "xml"
        )
        assert result.exit_code == 1
        assert "supported: auto, trivy, grype, sarif, cyclonedx" in result.stderr

    def test_missing_file(self, sealgate: Cli, tmp_path: Path) -> None:
        result = sealgate("scan", "ingest", "example.com/a:1", str(tmp_path / "none.json"))
        assert result.exit_code == 1
        assert "cannot read" in result.stderr

    def test_parse_offline(self, sealgate: Cli, asset: Asset) -> None:
        result = sealgate(
            "scan", "parse", str(asset("cyclonedx/trivy_vex_cdx1.5_not_affected.json"))
        )
        assert result.exit_code == 0, result.output
        body = json.loads(result.stdout)
        assert body["suppressed"] == 2
        assert {v["vex_status"] for v in body["vulnerabilities"]} == {"not_affected"}

    def test_attest_key_that_does_not_exist_stores_nothing(
        self, sealgate: Cli, registry: RegistryProcess, asset: Asset
    ) -> None:
        image = pushed_image(registry)
        report = str(asset(UNBOUND_TRIVY))
        result = sealgate("scan", "ingest", image, report, "--attest-key", "missing")
        assert result.exit_code == 1
        assert "no key named 'missing'" in result.stderr
        assert "[not_found.key]" in result.stderr
        assert json.loads(sealgate("scan", "list", image).stdout) == []
