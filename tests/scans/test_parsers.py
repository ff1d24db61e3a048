"""Every third-party sample report parses, with counts checked against independent counts.

The expected numbers are either literal (verified by hand with ``jq`` against the sample,
noted next to each) or computed here by a few lines of direct JSON traversal, never by
calling the parser a second time.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from app.errors import ScanError
from app.scans.cyclonedx import parse_cyclonedx
from app.scans.detect import detect_format, parse_report
from app.scans.grype import parse_grype
from app.scans.model import ReportFormat, ScanReport, Severity, VexStatus
from app.scans.sarif import parse_sarif
from app.scans.trivy import parse_trivy

Asset = Callable[[str], Path]


def zeroes(**counts: int) -> dict[str, int]:
    """A full counts mapping: every severity, zero unless given."""
    return {s.value: counts.get(s.value, 0) for s in Severity}


def trivy_entries(document: Any) -> list[dict[str, Any]]:
    """Every vulnerability entry of a Trivy document, legacy or v2, by plain traversal."""
    results = document if isinstance(document, list) else (document or {}).get("Results") or []
    return [v for r in results for v in r.get("Vulnerabilities") or []]


# (file, effective counts, suppressed) — counts by `jq '[..Severity] | group_by(.)'`.
TRIVY_SAMPLES = [
    ("dd_trivy_0.69_fs_jar_cvssv4.json", zeroes(medium=1, low=2), 0),
    ("dd_trivy_legacy_list_os_and_lang.json", zeroes(high=6), 0),
    ("dd_trivy_legacy_no_vuln_null.json", zeroes(), 0),
    # 8 LOW entries, one with Status not_affected (suppressed, kept).
    ("dd_trivy_schema2_image_all_statuses.json", zeroes(low=7), 1),
    ("dd_trivy_schema2_image_no_vuln.json", zeroes(), 0),
    ("dd_trivy_schema2_image_os_and_jar.json", zeroes(critical=1, high=1, medium=3), 0),
    ("trivy_alpine-310_image_legacy_list_2021-07.json", zeroes(medium=6, low=2), 0),
    ("trivy_alpine-310_image_schema2_current.json", zeroes(medium=4), 0),
    ("trivy_alpine-39_image_no_Results_key.json", zeroes(), 0),
    ("trivy_spring4shell_image_os_clean_jar_vuln_custom.json", zeroes(critical=1), 0),
]


class TestTrivy:
    @pytest.mark.parametrize(("name", "counts", "suppressed"), TRIVY_SAMPLES)
    def test_samples(
        self, asset: Asset, name: str, counts: dict[str, int], suppressed: int
    ) -> None:
        data = asset(f"trivy/{name}").read_bytes()
        report = parse_trivy(data)
        entries = trivy_entries(json.loads(data))
        identified = {
            (e["VulnerabilityID"], e["PkgName"], e.get("InstalledVersion"))
            for e in entries
            if e.get("VulnerabilityID") and e.get("PkgName")
        }
        assert len(report.vulnerabilities) == len(identified)
        assert report.counts == counts
        assert report.suppressed == suppressed
        assert report.format is ReportFormat.trivy
        assert detect_format(data) is ReportFormat.trivy

    def test_entry_without_id_is_reported_not_silently_dropped(self, asset: Asset) -> None:
        report = parse_trivy(asset("trivy/dd_trivy_legacy_list_os_and_lang.json").read_bytes())
        assert len(report.warnings) == 1
        assert "simplito/elliptic-php" in report.warnings[0]

    def test_schema2_fields(self, asset: Asset) -> None:
        report = parse_trivy(
            asset("trivy/trivy_alpine-310_image_schema2_current.json").read_bytes()
        )
        assert report.scanner == "trivy"
        assert report.scanner_version == "dev"
        assert report.scanned_at is not None and report.scanned_at.isoformat().startswith(
            "2021-08-25T12:20:30"
        )
        assert report.image_id == (
            "sha256:961769676411f082461f9ef46626dd7a2d1e2b2a38e6a44364bcbecf51e66dd4"
        )
        first = report.vulnerabilities[0]
        assert first.id == "CVE-2019-1549"
        assert first.package == "libcrypto1.1"
        assert first.installed_version == "1.1.1c-r0"
        assert first.fixed_versions == ("1.1.1d-r0",)
        assert first.fix_available

    def test_statuses_map_to_vex(self, asset: Asset) -> None:
        report = parse_trivy(asset("trivy/dd_trivy_schema2_image_all_statuses.json").read_bytes())
        by_id = {v.id: v for v in report.vulnerabilities}
        assert by_id["CVE-2019-18276"].vex_status is VexStatus.not_affected  # not_affected
        assert by_id["CVE-2019-18276"].suppressed
        assert by_id["CVE-2018-12697"].vex_status is VexStatus.in_triage  # under_investigation
        assert not by_id["CVE-2018-12697"].suppressed
        assert by_id["CVE-2011-3374"].vex_status is None  # unknown
        assert by_id["CVE-2018-1000876"].fix_available  # "fixed" without a version

    def test_comma_separated_fixed_versions(self, asset: Asset) -> None:
        report = parse_trivy(asset("trivy/dd_trivy_0.69_fs_jar_cvssv4.json").read_bytes())
        assert report.vulnerabilities[0].fixed_versions == ("11.0.14", "10.1.49", "9.0.112")
        assert report.vulnerabilities[0].aliases == ("GHSA-fpj8-gq4v-p354",)
        assert report.vulnerabilities[0].purl == (
            "pkg:maven/org.apache.tomcat/tomcat-catalina@9.0.109"
        )

    def test_vex_modified_findings_are_kept_and_not_counted(self) -> None:
        # Constructed: the shape Trivy writes with --vex ... --show-suppressed.
        finding = {
            "VulnerabilityID": "CVE-2024-0001",
            "PkgName": "openssl",
            "InstalledVersion": "3.0.0",
            "Severity": "CRITICAL",
        }
        document = {
            "SchemaVersion": 2,
            "ArtifactName": "app@sha256:" + "a" * 64,
            "Results": [
                {
                    "Target": "app",
                    "Vulnerabilities": None,
                    "ModifiedFindings": [
                        {"Type": "vulnerability", "Status": "not_affected", "Finding": finding}
                    ],
                }
            ],
        }
        report = parse_trivy(json.dumps(document).encode())
        assert report.counts == zeroes()
        assert report.suppressed == 1
        assert report.artifact_digests == ("sha256:" + "a" * 64,)

    def test_unsupported_schema_version_is_refused(self) -> None:
        with pytest.raises(ScanError, match="schema version 3") as err:
            parse_trivy(b'{"SchemaVersion": 3, "Results": []}')
        assert err.value.code == "scan.malformed"

    def test_wrong_shape_names_the_field(self) -> None:
        with pytest.raises(ScanError, match=r"Results\.0\.Vulnerabilities") as err:
            parse_trivy(b'{"SchemaVersion": 2, "Results": [{"Vulnerabilities": 5}]}')
        assert err.value.code == "scan.malformed"


def grype_keys(document: Any) -> set[tuple[str, str, str]]:
    return {
        (m["vulnerability"]["id"], m["artifact"]["name"], m["artifact"]["version"])
        for m in document["matches"] or []
    }


GRYPE_SAMPLES = [
    # 6 matches, GHSA-v6rh-hp5x-86rv for Django 3.2.9 twice: 5 findings.
    ("dd_grype_0.28_debian_image.json", zeroes(critical=2, high=2, negligible=1)),
    ("dd_grype_0.7_busybox_no_vuln.json", zeroes()),
    ("dd_grype_0.94_busybox_epss_risk.json", zeroes(critical=1, high=10, medium=2, low=2)),
]


class TestGrype:
    @pytest.mark.parametrize(("name", "counts"), GRYPE_SAMPLES)
    def test_samples(self, asset: Asset, name: str, counts: dict[str, int]) -> None:
        data = asset(f"grype/{name}").read_bytes()
        report = parse_grype(data)
        assert len(report.vulnerabilities) == len(grype_keys(json.loads(data)))
        assert report.counts == counts
        assert report.suppressed == 0
        assert detect_format(data) is ReportFormat.grype

    def test_duplicates_are_merged(self, asset: Asset) -> None:
        data = asset("grype/dd_grype_0.28_debian_image.json").read_bytes()
        assert len(json.loads(data)["matches"]) == 6
        report = parse_grype(data)
        django = [v for v in report.vulnerabilities if v.package == "Django"]
        assert len(django) == 1
        assert django[0].aliases == ("CVE-2021-44420",)

    def test_fix_states(self, asset: Asset) -> None:
        report = parse_grype(asset("grype/dd_grype_0.28_debian_image.json").read_bytes())
        by_package = {v.package: v for v in report.vulnerabilities}
        assert by_package["Django"].fix_available  # state fixed, 3.2.10
        assert by_package["Django"].fixed_versions == ("3.2.10",)
        assert not by_package["redis"].fix_available  # versions listed but state wont-fix
        assert not by_package["libc6"].fix_available  # wont-fix, no version

    def test_image_digests(self, asset: Asset) -> None:
        report = parse_grype(asset("grype/dd_grype_0.94_busybox_epss_risk.json").read_bytes())
        assert report.artifact_digests == (
            "sha256:ae39a6f5c07297d7ab64dbd4f82c77c874cc6a94cea29fdec309d0992574b4f7",
            "sha256:123b1fd3a44eaaf7322e08e9175d9ca57d49ebf2955d4fa1f5607e99dc31bcbb",
        )
        assert report.image_id == (
            "sha256:388056c9a6838deea3792e8f00705b35b439cf57b3c9c2634fb4e95cfc896de6"
        )
        assert report.scanner_version == "0.94.0"

    def test_old_fixed_in_version_shape(self) -> None:
        # Constructed: Grype before the fix object wrote vulnerability.fixedInVersion.
        document = {
            "source": {"type": "image", "target": {"userInput": "app:1"}},
            "matches": [
                {
                    "vulnerability": {"id": "CVE-1", "severity": "High", "fixedInVersion": "2.0"},
                    "artifact": {"name": "pkg", "version": "1.0", "type": "deb"},
                },
                {
                    "vulnerability": {"id": "CVE-2", "severity": "Low", "fixedInVersion": None},
                    "artifact": {"name": "pkg", "version": "1.0", "type": "deb"},
                },
            ],
        }
        report = parse_grype(json.dumps(document).encode())
        fixed, unfixed = report.vulnerabilities
        assert fixed.fixed_versions == ("2.0",) and fixed.fix_available
        assert unfixed.fixed_versions == () and not unfixed.fix_available

    def test_vex_ignored_matches_are_kept_and_not_counted(self) -> None:
        # Constructed: Grype puts VEX-suppressed matches in ignoredMatches.
        match = {
            "vulnerability": {"id": "CVE-3", "severity": "Critical"},
            "artifact": {"name": "lib", "version": "1"},
        }
        document = {
            "source": {"type": "image", "target": {"userInput": "app:1"}},
            "matches": [],
            "ignoredMatches": [
                {**match, "appliedIgnoreRules": [{"vex-status": "not_affected"}]},
                {
                    **match,
                    "vulnerability": {"id": "CVE-4", "severity": "High"},
                    "appliedIgnoreRules": [{"vulnerability": "CVE-4"}],
                },
            ],
        }
        report = parse_grype(json.dumps(document).encode())
        assert [v.id for v in report.vulnerabilities] == ["CVE-3"]
        assert report.suppressed == 1
        assert report.counts == zeroes()


SARIF_SAMPLES = [
    ("trivy_alpine-310_sarif_2021-12_template_era.json", "trivy", zeroes(medium=6, low=2)),
    ("trivy_alpine-310_sarif_current.json", "trivy", zeroes(medium=4)),
    # The rule says "Severity: critical" though its security-severity is 8.5: the word wins.
    ("grype_image_sarif_snapshot.json", "grype", zeroes(critical=1, low=1)),
]


class TestSarif:
    @pytest.mark.parametrize(("name", "scanner", "counts"), SARIF_SAMPLES)
    def test_samples(self, asset: Asset, name: str, scanner: str, counts: dict[str, int]) -> None:
        data = asset(f"sarif/{name}").read_bytes()
        report = parse_sarif(data)
        results = [r for run in json.loads(data)["runs"] for r in run.get("results") or []]
        assert len(report.vulnerabilities) == len(results)  # no duplicates in these samples
        assert report.counts == counts
        assert report.scanner == scanner
        assert detect_format(data) is ReportFormat.sarif

    def test_trivy_package_comes_from_each_result(self, asset: Asset) -> None:
        # One rule (CVE-2019-1549) covers two packages; each result names its own.
        report = parse_sarif(asset("sarif/trivy_alpine-310_sarif_current.json").read_bytes())
        packages = Counter(v.package for v in report.vulnerabilities if v.id == "CVE-2019-1549")
        assert packages == Counter({"libcrypto1.1": 1, "libssl1.1": 1})
        assert all(v.installed_version == "1.1.1c-r0" for v in report.vulnerabilities)

    def test_grype_rule_id_and_help(self, asset: Asset) -> None:
        report = parse_sarif(asset("sarif/grype_image_sarif_snapshot.json").read_bytes())
        first, second = report.vulnerabilities
        assert (first.id, first.package, first.installed_version) == (
            "CVE-1999-0001",
            "package-1",
            "1.1.1",
        )
        assert first.fixed_versions == ("1.2.1", "2.1.3", "3.4.0")
        assert first.package_type == "rpm"
        assert second.purl == "pkg:deb/package-2@2.2.2"
        assert not second.fix_available

    def test_security_severity_then_level(self) -> None:
        # Constructed: no severity words, so the CVSS score and then the level decide.
        document = {
            "version": "2.1.0",
            "runs": [
                {
                    "tool": {
                        "driver": {
                            "name": "scanner",
                            "rules": [
                                {"id": "CVE-A", "properties": {"security-severity": "9.8"}},
                                {"id": "CVE-B"},
                            ],
                        }
                    },
                    "results": [
                        {"ruleId": "CVE-A", "message": {"text": "Package: a"}},
                        {"ruleId": "CVE-B", "level": "error", "message": {"text": "Package: b"}},
                        {"ruleId": "CVE-B", "message": {"text": "Package: c"}},
                    ],
                }
            ],
        }
        report = parse_sarif(json.dumps(document).encode())
        assert [v.severity for v in report.vulnerabilities] == [
            Severity.critical,
            Severity.high,
            Severity.medium,  # SARIF's default level is "warning"
        ]

    def test_long_tool_names_are_cut(self) -> None:
        document = {"version": "2.1.0", "runs": [{"tool": {"driver": {"name": "X" * 500}}}]}
        assert parse_sarif(json.dumps(document).encode()).scanner == "x" * 64

    def test_other_versions_are_refused(self) -> None:
        with pytest.raises(ScanError, match="SARIF version"):
            parse_sarif(b'{"version": "2.0.0", "runs": []}')


class TestCycloneDX:
    def test_grype_bom_in_triage_is_not_suppressed(self, asset: Asset) -> None:
        data = asset("cyclonedx/dd_grype_0.41_log4j_cdx1.4_in_triage.json").read_bytes()
        report = parse_cyclonedx(data)
        vulns = json.loads(data)["vulnerabilities"]
        assert len(report.vulnerabilities) == sum(len(v["affects"]) for v in vulns) == 8
        # jq '[.vulnerabilities[].ratings[0].severity] | group_by(.)'
        assert report.counts == zeroes(critical=4, high=1, medium=3)
        assert report.suppressed == 0
        assert {v.vex_status for v in report.vulnerabilities} == {VexStatus.in_triage}
        assert {v.package for v in report.vulnerabilities} == {"log4j-core"}  # via bom-ref
        assert report.scanner == "grype"
        assert detect_format(data) is ReportFormat.cyclonedx

    def test_trivy_bom(self, asset: Asset) -> None:
        report = parse_cyclonedx(
            asset("cyclonedx/trivy_npm_cdx1.7_with_vulnerabilities.json").read_bytes()
        )
        (jquery,) = report.vulnerabilities
        # The ghsa rating (the vulnerability's own source) says medium; ubuntu says low.
        assert jquery.severity is Severity.medium
        assert (jquery.package, jquery.installed_version) == ("jquery", "3.3.9")
        assert jquery.fixed_versions == ("3.4.0",)
        assert report.scanner == "trivy"

    def test_vex_not_affected_suppresses(self, asset: Asset) -> None:
        data = asset("cyclonedx/trivy_vex_cdx1.5_not_affected.json").read_bytes()
        report = parse_cyclonedx(data)
        states = [v["analysis"]["state"] for v in json.loads(data)["vulnerabilities"]]
        assert states.count("not_affected") == report.suppressed == 2
        assert report.counts == zeroes()
        packages = {v.package for v in report.vulnerabilities}
        assert packages == {"spring-boot", "libstdc++6"}  # from BOM-Link purls

    @pytest.mark.parametrize(
        ("state", "suppressed"),
        [
            ("not_affected", True),
            ("resolved", True),
            ("false_positive", True),
            ("in_triage", False),
            ("exploitable", False),
            (None, False),
        ],
    )
    def test_analysis_states(self, state: str | None, suppressed: bool) -> None:
        # Constructed: one component, one vulnerability with the given analysis state.
        vulnerability: dict[str, Any] = {
            "id": "CVE-9",
            "ratings": [{"severity": "high"}],
            "affects": [{"ref": "c1"}],
        }
        if state is not None:
            vulnerability["analysis"] = {"state": state}
        document = {
            "bomFormat": "CycloneDX",
            "specVersion": "1.5",
            "components": [{"bom-ref": "c1", "name": "zlib", "version": "1.2"}],
            "vulnerabilities": [vulnerability],
        }
        report = parse_cyclonedx(json.dumps(document).encode())
        assert report.suppressed == int(suppressed)
        assert report.counts["high"] == int(not suppressed)

    def test_severity_from_scores_when_no_words(self) -> None:
        document = {
            "bomFormat": "CycloneDX",
            "vulnerabilities": [
                {"id": "CVE-1", "ratings": [{"score": 5.0}, {"score": 9.1}], "affects": []}
            ],
        }
        (finding,) = parse_cyclonedx(json.dumps(document).encode()).vulnerabilities
        assert finding.severity is Severity.critical


class TestSeverityScale:
    @pytest.mark.parametrize(
        ("word", "expected"),
        [
            ("CRITICAL", Severity.critical),
            ("Important", Severity.high),
            ("moderate", Severity.medium),
            ("Low", Severity.low),
            ("Negligible", Severity.negligible),
            ("info", Severity.negligible),
            ("UNKNOWN", Severity.unknown),
            ("bogus", Severity.unknown),
            (None, Severity.unknown),
        ],
    )
    def test_words(self, word: str | None, expected: Severity) -> None:
        assert Severity.from_word(word) is expected

    @pytest.mark.parametrize(
        ("score", "expected"),
        [
            (10, Severity.critical),
            ("9.0", Severity.critical),
            (8.9, Severity.high),
            (7.0, Severity.high),
            (4.0, Severity.medium),
            (0.1, Severity.low),
            (0.0, Severity.negligible),
            (11, Severity.unknown),
            ("NaN", Severity.unknown),
            ("high", Severity.unknown),
        ],
    )
    def test_scores(self, score: float | str, expected: Severity) -> None:
        assert Severity.from_score(score) is expected


class TestDetect:
    def test_every_sample_parses_through_auto(self, asset: Asset) -> None:
        root = asset("trivy").parent
        parsed = 0
        for folder in ("trivy", "grype", "sarif", "cyclonedx"):
            for path in sorted((root / folder).glob("*.json")):
                report = parse_report(path.read_bytes())
                assert isinstance(report, ScanReport)
                assert report.format.value == folder
                parsed += 1
        assert parsed == 19

    def test_unknown_format_lists_the_supported_ones(self) -> None:
        with pytest.raises(ScanError) as err:
            parse_report(b'{"kind": "AdmissionReview"}')
        assert err.value.code == "scan.unknown_format"
        assert "trivy, grype, sarif, cyclonedx" in err.value.message

    def test_unknown_format_name_is_refused(self) -> None:
        with pytest.raises(ScanError) as err:
            parse_report(b"{}", "clair")
        assert err.value.code == "scan.unknown_format"
        assert "trivy, grype, sarif, cyclonedx" in err.value.message

    def test_named_format_that_does_not_fit_is_malformed(self, asset: Asset) -> None:
        data = asset("trivy/trivy_alpine-310_image_schema2_current.json").read_bytes()
        with pytest.raises(ScanError, match="not a valid Grype report") as err:
            parse_report(data, "grype")
        assert err.value.code == "scan.malformed"

    @pytest.mark.parametrize("data", [b"", b"   ", b"{not json", b"\xff\xfe", b"[1, 2"])
    def test_malformed_json(self, data: bytes) -> None:
        with pytest.raises(ScanError) as err:
            parse_report(data)
        assert err.value.code == "scan.malformed"
        assert err.value.http_status == 400

    def test_deeply_nested_json_is_malformed_not_a_crash(self) -> None:
        with pytest.raises(ScanError) as err:
            parse_report(b"[" * 100_000 + b"]" * 100_000)
        assert err.value.code == "scan.malformed"

    def test_too_large(self) -> None:
        with pytest.raises(ScanError) as err:
            parse_report(b"null" + b" " * 100, max_bytes=64)
        assert err.value.code == "scan.too_large"
        assert err.value.http_status == 413


class TestMerging:
    def test_duplicates_merge_fail_closed(self) -> None:
        # Constructed: the same finding twice, once VEX-suppressed and once not, with
        # different severities and fixes; the merged finding counts, at the worse severity.
        base = {"PkgName": "zlib", "InstalledVersion": "1.0", "VulnerabilityID": "CVE-7"}
        document = {
            "SchemaVersion": 2,
            "Results": [
                {
                    "Target": "a",
                    "Vulnerabilities": [
                        {**base, "Severity": "LOW", "Status": "not_affected"},
                        {**base, "Severity": "HIGH", "FixedVersion": "1.1"},
                    ],
                }
            ],
        }
        report = parse_trivy(json.dumps(document).encode())
        (merged,) = report.vulnerabilities
        assert merged.severity is Severity.high
        assert merged.fixed_versions == ("1.1",)
        assert not merged.suppressed
        assert report.counts == zeroes(high=1)


_ODD_VALUES: list[Any] = [None, 0, -1, 1.5, "", "x", [], {}, [None], {"a": None}, True, "9.8"]


def _mutate(node: Any, rng: random.Random) -> None:
    """Delete a key, replace a value with one of another type, or recurse (in place)."""
    if isinstance(node, dict) and node:
        key = rng.choice(list(node))
        roll = rng.random()
        if roll < 0.3:
            del node[key]
        elif roll < 0.6:
            node[key] = rng.choice(_ODD_VALUES)
        else:
            _mutate(node[key], rng)
    elif isinstance(node, list) and node:
        index = rng.randrange(len(node))
        if rng.random() < 0.3:
            node[index] = rng.choice(_ODD_VALUES)
        else:
            _mutate(node[index], rng)


class TestDamagedReports:
    def test_damaged_samples_parse_or_raise_scan_error_only(self, asset: Asset) -> None:
        """Bad input must give a ScanError (a 4xx), never another exception (a 500)."""
        rng = random.Random(20261128)
        root = asset("trivy").parent
        outcomes: Counter[str] = Counter()
        for folder in ("trivy", "grype", "sarif", "cyclonedx"):
            for path in sorted((root / folder).glob("*.json")):
                original = path.read_text()
                for _ in range(60):
                    document = json.loads(original)
                    for _ in range(rng.randint(1, 4)):
                        _mutate(document, rng)
                    try:
                        parse_report(json.dumps(document).encode())
                        outcomes["parsed"] += 1
                    except ScanError:
                        outcomes["refused"] += 1
        assert outcomes["parsed"] + outcomes["refused"] == 19 * 60
        assert outcomes["parsed"] > 0 and outcomes["refused"] > 0
