"""The default policy library, decided through both engines over realistic inputs."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml

from app.policy.bundle import PolicyBundle
from app.policy.decision import PolicyDecision
from app.policy.input import Entrypoint, PolicyVulnerability
from app.policy.runner import run_tests
from app.scans.detect import parse_report
from app.scans.model import VexStatus
from tests.policy.conftest import (
    BundleWithData,
    EngineFactory,
    InputFactory,
    signature,
    vulnerability,
)


def codes(findings: list[Any]) -> set[str]:
    return {f.code for f in findings}


class TestRegoSuite:
    def test_every_library_test_passes(self, default_bundle: PolicyBundle) -> None:
        report = run_tests(default_bundle)
        assert report.failures == []
        assert report.passed >= 40

    def test_every_rule_file_has_a_test_file(self, default_bundle: PolicyBundle) -> None:
        rule_files = [
            name
            for name in default_bundle.modules
            if not name.endswith("_test.rego") and name.startswith("rules/")
        ]
        for name in rule_files:
            assert name.removesuffix(".rego") + "_test.rego" in default_bundle.modules


class TestDecisions:
    def test_signed_scanned_clean_image_is_admitted(
        self, engine_factory: EngineFactory, default_bundle: PolicyBundle, make_input: InputFactory
    ) -> None:
        decision = engine_factory(default_bundle).decide(make_input())
        assert decision.allow is True
        assert decision.deny == []
        assert decision.mode == "enforce"

    def test_critical_vulnerability_is_denied_with_rule_image_and_fix(
        self, engine_factory: EngineFactory, default_bundle: PolicyBundle, make_input: InputFactory
    ) -> None:
        policy_input = make_input(vulnerabilities=[vulnerability("CVE-2026-1", "critical")])
        decision = engine_factory(default_bundle).decide(policy_input)
        assert decision.allow is False
        [denial] = decision.deny
        assert denial.code == "vulnerability.severity"
        assert denial.image == "registry.example.com/team/app:1.0"
        assert "CVE-2026-1" in denial.message
        assert denial.fix and "allowlist" in denial.fix

    def test_high_with_fix_denied_without_fix_allowed(
        self, engine_factory: EngineFactory, default_bundle: PolicyBundle, make_input: InputFactory
    ) -> None:
        engine = engine_factory(default_bundle)
        fixable = engine.decide(
            make_input(vulnerabilities=[vulnerability("CVE-2", "high", fixed="3.0.9")])
        )
        assert codes(fixable.deny) == {"vulnerability.fixable"}
        assert fixable.deny[0].fix and "3.0.9" in fixable.deny[0].fix
        unfixed = engine.decide(make_input(vulnerabilities=[vulnerability("CVE-3", "high")]))
        assert unfixed.allow is True

    def test_vex_not_affected_suppresses_in_triage_does_not(
        self, engine_factory: EngineFactory, default_bundle: PolicyBundle, make_input: InputFactory
    ) -> None:
        engine = engine_factory(default_bundle)
        suppressed = vulnerability("CVE-4", "critical", vex="not_affected")
        assert engine.decide(make_input(vulnerabilities=[suppressed])).allow is True
        triage = vulnerability("CVE-4", "critical", vex="in_triage")
        assert engine.decide(make_input(vulnerabilities=[triage])).allow is False

    def test_allowlist_entry_allows_until_it_expires(
        self,
        engine_factory: EngineFactory,
        bundle_with_data: BundleWithData,
        make_input: InputFactory,
    ) -> None:
        entry = {"id": "CVE-5", "expires": "2026-06-01", "reason": "not reachable"}
        bundle = bundle_with_data({"defaults": {"vulnerabilities": {"allowlist": [entry]}}})
        engine = engine_factory(bundle)
        findings = [vulnerability("CVE-5", "critical")]
        assert engine.decide(make_input(vulnerabilities=findings)).allow is True
        later = make_input(vulnerabilities=findings).model_copy(
            update={"evaluated_at": dt.datetime(2026, 6, 2, tzinfo=dt.UTC)}
        )
        expired = engine.decide(later)
        assert expired.allow is False
        assert "vulnerability.allowlist_inactive" in codes(expired.warn)

    def test_no_scan_warns_by_default_and_denies_when_required(
        self,
        engine_factory: EngineFactory,
        bundle_with_data: BundleWithData,
        make_input: InputFactory,
    ) -> None:
        lenient = engine_factory(bundle_with_data({})).decide(make_input(scan=None))
        assert lenient.allow is True
        assert codes(lenient.warn) == {"scan.missing"}
        strict_bundle = bundle_with_data(
            {"repositories": {"registry.example.com/team/*": {"scans": {"required": True}}}}
        )
        strict = engine_factory(strict_bundle).decide(make_input(scan=None))
        assert codes(strict.deny) == {"scan.missing"}

    def test_stale_scan_is_denied(
        self, engine_factory: EngineFactory, default_bundle: PolicyBundle, make_input: InputFactory
    ) -> None:
        old = make_input(scanned_at=dt.datetime(2026, 5, 1, tzinfo=dt.UTC))
        decision = engine_factory(default_bundle).decide(old)
        assert codes(decision.deny) == {"scan.stale"}

    def test_no_matching_authority_is_a_denial_that_says_so(
        self, engine_factory: EngineFactory, default_bundle: PolicyBundle, make_input: InputFactory
    ) -> None:
        decision = engine_factory(default_bundle).decide(make_input(authorities=[]))
        [denial] = decision.deny
        assert denial.code == "signature.no_authority"
        assert "no configured authority" in denial.message

    def test_unsigned_image_denied_at_push_but_may_be_signed(
        self, engine_factory: EngineFactory, default_bundle: PolicyBundle, make_input: InputFactory
    ) -> None:
        engine = engine_factory(default_bundle)
        push = engine.decide(make_input(entrypoint=Entrypoint.push, signatures=[]))
        assert codes(push.deny) == {"signature.missing"}
        sign = engine.decide(make_input(entrypoint=Entrypoint.sign, signatures=[]))
        assert sign.allow is True

    def test_required_authorities_two_of_three(
        self,
        engine_factory: EngineFactory,
        bundle_with_data: BundleWithData,
        make_input: InputFactory,
    ) -> None:
        bundle = bundle_with_data(
            {"defaults": {"signatures": {"authorities": ["a", "b", "c"], "min_authorities": 2}}}
        )
        engine = engine_factory(bundle)
        one = engine.decide(make_input(signatures=[signature("a")]))
        assert codes(one.deny) == {"signature.required_authorities"}
        two = engine.decide(make_input(signatures=[signature("a"), signature("c")]))
        assert two.allow is True

    def test_latest_and_unpinned_and_registry(
        self,
        engine_factory: EngineFactory,
        bundle_with_data: BundleWithData,
        make_input: InputFactory,
    ) -> None:
        bundle = bundle_with_data(
            {
                "defaults": {
                    "tags": {"require_digest": True},
                    "registries": {"allowed": ["registry.example.com"]},
                }
            }
        )
        engine = engine_factory(bundle)
        decision = engine.decide(make_input(reference="docker.io/library/nginx:latest"))
        assert codes(decision.deny) == {"image.latest", "image.not_pinned", "registry.not_allowed"}
        pinned = engine.decide(
            make_input(reference="registry.example.com/team/app@sha256:" + "b" * 64)
        )
        assert pinned.allow is True

    def test_warn_mode_namespace_allows_and_says_so(
        self,
        engine_factory: EngineFactory,
        bundle_with_data: BundleWithData,
        make_input: InputFactory,
    ) -> None:
        bundle = bundle_with_data({"namespaces": {"dev": {"mode": "warn"}}})
        engine = engine_factory(bundle)
        bad = [vulnerability("CVE-6", "critical")]
        dev = engine.decide(make_input(namespace="dev", vulnerabilities=bad))
        assert dev.allow is True and dev.mode == "warn"
        assert "vulnerability.severity" in codes(dev.warn)
        assert dev.notes and "not enforced" in dev.notes[0]
        prod = engine.decide(make_input(namespace="prod", vulnerabilities=bad))
        assert prod.allow is False

    def test_audit_mode_records_without_warning(
        self,
        engine_factory: EngineFactory,
        bundle_with_data: BundleWithData,
        make_input: InputFactory,
    ) -> None:
        bundle = bundle_with_data({"namespaces": {"dev": {"mode": "audit"}}})
        decision = engine_factory(bundle).decide(
            make_input(namespace="dev", vulnerabilities=[vulnerability("CVE-7", "critical")])
        )
        assert decision.allow is True
        assert codes(decision.audit) == {"vulnerability.severity"}
        assert "vulnerability.severity" not in codes(decision.warn)

    def test_exemption_by_namespace_and_image_is_named(
        self,
        engine_factory: EngineFactory,
        bundle_with_data: BundleWithData,
        make_input: InputFactory,
    ) -> None:
        exemption = {
            "name": "legacy-batch",
            "reason": "migrating by Q3",
            "namespaces": ["batch"],
            "images": ["registry.example.com/team/*"],
        }
        engine = engine_factory(bundle_with_data({"exemptions": [exemption]}))
        unsigned: dict[str, list[str]] = {"signatures": [], "authorities": []}
        exempt = engine.decide(make_input(namespace="batch", **unsigned))
        assert exempt.allow is True
        assert exempt.exemptions == ["legacy-batch"]
        assert codes(exempt.exempted) == {"signature.no_authority"}
        elsewhere = engine.decide(make_input(namespace="prod", **unsigned))
        assert elsewhere.allow is False and elsewhere.exemptions == []


LOG4J_CDX = "cyclonedx/dd_grype_0.41_log4j_cdx1.4_in_triage.json"


class TestVexAndAllowlistEdges:
    """VEX states and allowlist entries that must not suppress a finding, and the VEX
    state that must, on the fixable rule too (both engines, the shipped library)."""

    @pytest.mark.parametrize("state", ["exploitable", "in_triage"])
    def test_cyclonedx_exploitable_or_in_triage_critical_is_denied(
        self,
        state: str,
        asset: Callable[[str], Path],
        engine_factory: EngineFactory,
        default_bundle: PolicyBundle,
        make_input: InputFactory,
    ) -> None:
        """Fails if ``"affected"`` is added to ``vex_suppressing`` in
        policies/rules/vulnerabilities.rego: CycloneDX ``exploitable`` is read as VEX
        ``affected`` (app/scans/cyclonedx.py), and an affected critical finding is denied.
        """
        document = json.loads(asset(LOG4J_CDX).read_text())
        for finding in document["vulnerabilities"]:
            finding["analysis"]["state"] = state
        report = parse_report(json.dumps(document).encode(), "cyclonedx")
        findings = [PolicyVulnerability.from_finding(f) for f in report.vulnerabilities]
        log4j = [f for f in findings if f.id == "CVE-2021-44228"]
        assert [f.severity.value for f in log4j] == ["critical"]
        read_as = VexStatus.affected if state == "exploitable" else VexStatus.in_triage
        assert {f.vex_status for f in log4j} == {read_as}

        decision = engine_factory(default_bundle).decide(make_input(vulnerabilities=findings))

        assert decision.allow is False
        assert "CVE-2021-44228" in {d.vulnerability for d in decision.deny}

    def test_vex_affected_critical_is_denied_not_affected_is_allowed(
        self, engine_factory: EngineFactory, default_bundle: PolicyBundle, make_input: InputFactory
    ) -> None:
        """Fails if ``"affected"`` is added to ``vex_suppressing`` in
        policies/rules/vulnerabilities.rego."""
        engine = engine_factory(default_bundle)
        affected = vulnerability("CVE-7", "critical", vex="affected")
        assert codes(engine.decide(make_input(vulnerabilities=[affected])).deny) == {
            "vulnerability.severity"
        }
        suppressed = vulnerability("CVE-7", "critical", vex="not_affected")
        assert engine.decide(make_input(vulnerabilities=[suppressed])).allow is True

    def test_high_with_fix_and_vex_not_affected_is_allowed(
        self, engine_factory: EngineFactory, default_bundle: PolicyBundle, make_input: InputFactory
    ) -> None:
        """Fails if the fixable-severity rule in policies/rules/vulnerabilities.rego stops
        checking ``vex_status`` (``not ... in vex_suppressing``)."""
        engine = engine_factory(default_bundle)
        for vex in ("not_affected", "resolved", "false_positive"):
            finding = vulnerability("CVE-8", "high", fixed="3.0.9", vex=vex)
            decision = engine.decide(make_input(vulnerabilities=[finding]))
            assert decision.allow is True, vex
            assert decision.deny == []
        unsuppressed = vulnerability("CVE-8", "high", fixed="3.0.9", vex="affected")
        assert codes(engine.decide(make_input(vulnerabilities=[unsuppressed])).deny) == {
            "vulnerability.fixable"
        }

    def test_allowlist_entry_with_empty_reason_allows_nothing_and_warns(
        self,
        engine_factory: EngineFactory,
        bundle_with_data: BundleWithData,
        make_input: InputFactory,
    ) -> None:
        """Fails if the ``entry.reason != ""`` condition on allowlist entries in
        policies/rules/vulnerabilities.rego (``usable_entry``) is dropped."""
        entry = {"id": "CVE-9", "expires": "2099-01-01", "reason": ""}
        bundle = bundle_with_data({"defaults": {"vulnerabilities": {"allowlist": [entry]}}})
        decision = engine_factory(bundle).decide(
            make_input(vulnerabilities=[vulnerability("CVE-9", "critical")])
        )
        assert codes(decision.deny) == {"vulnerability.severity"}
        assert "vulnerability.allowlist_inactive" in codes(decision.warn)


class TestDataOverrides:
    def test_policy_data_file_is_merged_over_data_json(
        self,
        engine_factory: EngineFactory,
        default_bundle: PolicyBundle,
        make_input: InputFactory,
        tmp_path: Path,
    ) -> None:
        override = tmp_path / "site.json"
        override.write_text(json.dumps({"defaults": {"scans": {"required": True}}}))
        bundle = default_bundle.with_data_overrides(override)
        assert bundle.data["defaults"]["scans"] == {"required": True, "max_age_seconds": 604800}
        assert bundle.data["defaults"]["mode"] == "enforce"
        decision = engine_factory(bundle).decide(make_input(scan=None))
        assert codes(decision.deny) == {"scan.missing"}


GATEKEEPER = "rego/gatekeeper-disallowedtags-samples"


class TestGatekeeperDisallowedTagsAgreement:
    """Our tag rule agrees with Gatekeeper's disallowedtags sample cases (tags: [latest])."""

    CASES: ClassVar[dict[str, bool]] = {
        "example_allowed.yaml": False,
        "example_disallowed_tag.yaml": True,
        "example_no_tag_w_port.yaml": True,
        "disallowed_tag_ephemeral.yaml": True,
    }

    @pytest.mark.parametrize(("sample", "violates"), sorted(CASES.items()))
    def test_sample(
        self,
        sample: str,
        violates: bool,
        asset: Callable[[str], Path],
        engine_factory: EngineFactory,
        default_bundle: PolicyBundle,
        make_input: InputFactory,
    ) -> None:
        pod = yaml.safe_load(asset(f"{GATEKEEPER}/{sample}").read_text())
        suite = yaml.safe_load(asset(f"{GATEKEEPER}/suite.yaml").read_text())
        expected = {
            Path(case["object"]).name: case["assertions"][0]["violations"] in (True, "yes")
            for case in suite["tests"][0]["cases"]
        }
        assert expected[sample] is violates
        spec = pod["spec"]
        images = [
            c["image"]
            for key in ("containers", "initContainers", "ephemeralContainers")
            for c in spec.get(key, [])
        ]
        engine = engine_factory(default_bundle)
        decisions: list[PolicyDecision] = [
            engine.decide(make_input(reference=image)) for image in images
        ]
        flagged = any("image.latest" in codes(d.deny) for d in decisions)
        assert flagged is violates
