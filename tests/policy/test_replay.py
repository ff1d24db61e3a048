"""Decision records and replay of recorded inputs against a candidate bundle."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from app.audit.inputs import load_input
from app.db.models import Decision
from app.db.session import session_scope
from app.errors import InputError
from app.policy.bundle import PolicyBundle
from app.policy.engines import EmbeddedOpaEngine
from app.policy.replay import ReplayReport, parse_since, record_decision, replay_decisions
from app.services import Services
from tests.conftest import Cli
from tests.policy.conftest import POLICIES, BundleWithData, InputFactory, vulnerability


def record_three(
    services: Services, default_bundle: PolicyBundle, make_input: InputFactory
) -> None:
    """A clean image (allowed), one with a fixable high (denied), one with an unfixed high."""
    engine = EmbeddedOpaEngine(default_bundle)
    inputs = [
        make_input(reference="registry.example.com/team/clean:1"),
        make_input(
            reference="registry.example.com/team/fixable:1",
            vulnerabilities=[vulnerability("CVE-1", "high", fixed="2.0")],
        ),
        make_input(
            reference="registry.example.com/team/unfixed:1",
            vulnerabilities=[vulnerability("CVE-2", "high")],
        ),
    ]
    try:
        with session_scope(services.sessions) as session:
            for policy_input in inputs:
                record_decision(
                    session,
                    policy_input=policy_input,
                    decision=engine.decide(policy_input),
                    policy_version=None,
                )
    finally:
        engine.close()


def replay_with(
    services: Services, bundle: PolicyBundle, *, since: dt.timedelta = dt.timedelta(days=7)
) -> ReplayReport:
    engine = EmbeddedOpaEngine(bundle)
    try:
        with session_scope(services.sessions) as session:
            return replay_decisions(session, engine=engine, since=since)
    finally:
        engine.close()


class TestRecordAndReplay:
    def test_record_keeps_input_and_result(
        self, services: Services, default_bundle: PolicyBundle, make_input: InputFactory
    ) -> None:
        record_three(services, default_bundle, make_input)
        with session_scope(services.sessions) as session:
            rows = session.scalars(select(Decision).order_by(Decision.id)).all()
            assert [r.allowed for r in rows] == [True, False, True]
            assert rows[1].result["deny"][0]["code"] == "vulnerability.fixable"
            fixable = load_input(session, rows[1].input_hash)
            assert fixable is not None and fixable["image"]["repository"] == "team/fixable"
            assert rows[1].digest == "sha256:" + "a" * 64

    def test_stricter_candidate_shows_newly_denied(
        self,
        services: Services,
        default_bundle: PolicyBundle,
        bundle_with_data: BundleWithData,
        make_input: InputFactory,
    ) -> None:
        record_three(services, default_bundle, make_input)
        strict = {"defaults": {"vulnerabilities": {"deny_severities": ["critical", "high"]}}}
        report = replay_with(services, bundle_with_data(strict))
        assert report.replayed == 3
        assert [c.image for c in report.newly_denied] == ["registry.example.com/team/unfixed:1"]
        assert report.newly_denied[0].denials == ["vulnerability.severity"]
        assert report.newly_allowed == []
        assert report.unchanged == 2

    def test_lenient_candidate_shows_newly_allowed(
        self,
        services: Services,
        default_bundle: PolicyBundle,
        bundle_with_data: BundleWithData,
        make_input: InputFactory,
    ) -> None:
        record_three(services, default_bundle, make_input)
        lenient: dict[str, Any] = {"defaults": {"vulnerabilities": {"deny_fixable_severities": []}}}
        report = replay_with(services, bundle_with_data(lenient), since=dt.timedelta(hours=1))
        assert [c.image for c in report.newly_allowed] == ["registry.example.com/team/fixable:1"]

    def test_candidate_that_cannot_decide_counts_as_denying(
        self, services: Services, default_bundle: PolicyBundle, make_input: InputFactory
    ) -> None:
        record_three(services, default_bundle, make_input)
        empty = PolicyBundle.from_files({"x.rego": "package x\n\ny := 1\n"})
        report = replay_with(services, empty, since=dt.timedelta(days=1))
        assert len(report.newly_denied) == 2
        assert all(c.error and "policy.undefined" in c.error for c in report.newly_denied)

    @pytest.mark.parametrize("text", ["7", "d", "0d", "3y", "-1h"])
    def test_bad_since(self, text: str) -> None:
        with pytest.raises(InputError):
            parse_since(text)

    def test_since_units(self) -> None:
        assert parse_since("90m") == dt.timedelta(minutes=90)
        assert parse_since("2w") == dt.timedelta(days=14)


class TestReplayCli:
    def test_replay_against_a_candidate_directory(
        self,
        sealgate: Cli,
        services: Services,
        default_bundle: PolicyBundle,
        make_input: InputFactory,
        tmp_path: Path,
    ) -> None:
        record_three(services, default_bundle, make_input)
        candidate = tmp_path / "candidate"
        shutil.copytree(POLICIES, candidate)
        data = json.loads((candidate / "data.json").read_text())
        data["defaults"]["vulnerabilities"]["deny_severities"] = ["critical", "high"]
        (candidate / "data.json").write_text(json.dumps(data))
        result = sealgate("policy", "replay", "--since", "7d", "--bundle", str(candidate))
        assert result.exit_code == 0, result.output
        report = json.loads(result.stdout)
        assert [c["image"] for c in report["newly_denied"]] == [
            "registry.example.com/team/unfixed:1"
        ]
        assert "3 replayed: 1 newly denied, 0 newly allowed, 2 unchanged" in result.stderr

    def test_bad_since_is_one_line(self, sealgate: Cli) -> None:
        result = sealgate("policy", "replay", "--since", "forever")
        assert result.exit_code == 1
        assert "--since 'forever'" in result.stderr
