"""``sealgate policy test | check | eval | schema | input``: the authoring commands."""

from __future__ import annotations

import json
import secrets
import shutil
from pathlib import Path

from app.db.session import session_scope
from app.policy.bundle import PolicyBundle
from app.policy.runner import discover_tests, run_tests
from app.services import Services
from app.verify.trust import key_authority, save_authority
from tests.conftest import Cli
from tests.fixtures.registry import RegistryProcess
from tests.policy.conftest import POLICIES, InputFactory, vulnerability
from tests.verify import cosign_wire as wire

FAILING_TEST = """package extra_test

import data.sealgate.rules.images

test_broken_expectation if {
\tvs := images.violations with input as {"image": {"tag": "1", "pinned": false}}
\tcount(vs) == 1
}

test_passing if {
\ttrue
}
"""


def library_copy(tmp_path: Path) -> Path:
    target = tmp_path / "policies"
    shutil.copytree(POLICIES, target)
    return target


class TestRunner:
    def test_discovers_tests_with_file_and_line(self) -> None:
        bundle = PolicyBundle.from_files({"t_test.rego": FAILING_TEST})
        tests = discover_tests(bundle)
        assert [(t.file, t.line, t.document) for t in tests] == [
            ("t_test.rego", 5, "extra_test.test_broken_expectation"),
            ("t_test.rego", 10, "extra_test.test_passing"),
        ]

    def test_a_test_that_errors_fails_with_the_engine_message(self) -> None:
        source = 'package e_test\n\ntest_errors if {\n\ttime.parse_rfc3339_ns("x") > 0\n}\n'
        report = run_tests(PolicyBundle.from_files({"e_test.rego": source}))
        assert report.summary() == "0 passed, 1 failed"
        assert "parse_rfc3339_ns" in report.failures[0].message


class TestPolicyTestCommand:
    def test_default_library_passes(self, sealgate: Cli) -> None:
        result = sealgate("policy", "test", str(POLICIES))
        assert result.exit_code == 0, result.output
        last = result.stdout.strip().splitlines()[-1]
        passed, failed = last.split(", ")
        assert passed.endswith(" passed") and int(passed.split()[0]) >= 40
        assert failed == "0 failed"

    def test_failure_names_file_and_rule_and_exits_non_zero(
        self, sealgate: Cli, tmp_path: Path
    ) -> None:
        directory = library_copy(tmp_path)
        (directory / "extra_test.rego").write_text(FAILING_TEST)
        result = sealgate("policy", "test", str(directory))
        assert result.exit_code == 1
        lines = result.stdout.strip().splitlines()
        assert (
            "FAIL extra_test.rego:5: extra_test.test_broken_expectation: "
            "undefined (a condition failed)"
        ) in lines
        assert lines[-1].endswith(" passed, 1 failed")

    def test_bundle_that_does_not_compile(self, sealgate: Cli, tmp_path: Path) -> None:
        (tmp_path / "a.rego").write_text("package a\n\np if {\n  q r\n}\n")
        result = sealgate("policy", "test", str(tmp_path))
        assert result.exit_code == 1
        assert "a.rego:4:" in result.stderr
        assert result.stdout.strip().splitlines()[-1] == "0 passed, 0 failed"


class TestPolicyCheckCommand:
    def test_errors_with_file_line_and_column(self, sealgate: Cli, tmp_path: Path) -> None:
        (tmp_path / "rules").mkdir()
        (tmp_path / "rules" / "bad.rego").write_text("package bad\n\np if {\n    foo bar\n}\n")
        result = sealgate("policy", "check", str(tmp_path))
        assert result.exit_code == 1
        assert result.stderr.startswith("rules/bad.rego:4:9: rego_parse_error")

    def test_good_bundle(self, sealgate: Cli) -> None:
        result = sealgate("policy", "check", str(POLICIES))
        assert result.exit_code == 0
        assert result.stdout.startswith("ok: ")

    def test_missing_directory(self, sealgate: Cli, tmp_path: Path) -> None:
        result = sealgate("policy", "check", str(tmp_path / "nope"))
        assert result.exit_code == 1
        assert "does not exist" in result.stderr


class TestPolicyEvalCommand:
    def test_decision_and_explanation(
        self, sealgate: Cli, make_input: InputFactory, tmp_path: Path
    ) -> None:
        input_file = tmp_path / "input.json"
        policy_input = make_input(vulnerabilities=[vulnerability("CVE-9", "critical")])
        input_file.write_text(json.dumps(policy_input.to_rego()))
        plain = sealgate("policy", "eval", "--input", str(input_file), "--bundle", str(POLICIES))
        assert plain.exit_code == 0, plain.output
        decision = json.loads(plain.stdout)
        assert decision["allow"] is False
        assert [d["code"] for d in decision["deny"]] == ["vulnerability.severity"]

        explained = sealgate(
            "policy", "eval", "--input", str(input_file), "--bundle", str(POLICIES), "--explain"
        )
        assert explained.exit_code == 0, explained.output
        body = json.loads(explained.stdout)
        fired = [(f["location"], f["produced"]["code"]) for f in body["fired"] if f["produced"]]
        assert ("rules/vulnerabilities.rego", "vulnerability.severity") in [
            (location.split(":")[0], code) for location, code in fired
        ]
        assert "vuln.severity in deny_severities" in explained.stderr

    def test_entrypoint_override(
        self, sealgate: Cli, make_input: InputFactory, tmp_path: Path
    ) -> None:
        input_file = tmp_path / "input.json"
        input_file.write_text(json.dumps(make_input(signatures=[]).to_rego()))
        args = ["policy", "eval", "--input", str(input_file), "--bundle", str(POLICIES)]
        assert json.loads(sealgate(*args).stdout)["allow"] is False
        assert json.loads(sealgate(*args, "--entrypoint", "sign").stdout)["allow"] is True

    def test_bad_input_file_is_one_clear_line(self, sealgate: Cli, tmp_path: Path) -> None:
        input_file = tmp_path / "input.json"
        input_file.write_text('{"version": 1')
        result = sealgate("policy", "eval", "--input", str(input_file))
        assert result.exit_code == 1
        assert "not valid JSON" in result.stderr
        input_file.write_text('{"version": 1}')
        result = sealgate("policy", "eval", "--input", str(input_file))
        assert result.exit_code == 1
        assert "policy input is not valid" in result.stderr
        assert "Traceback" not in result.output


class TestPolicyInputCommand:
    def test_input_with_verified_signatures_from_the_registry(
        self, sealgate: Cli, services: Services, registry: RegistryProcess
    ) -> None:
        key = wire.new_key()
        image = wire.push_signed_image_sync(
            registry, f"{registry.host}/v{secrets.token_hex(4)}/app", key
        )
        with session_scope(services.sessions) as session:
            save_authority(
                session, key_authority(name="team", keys=[wire.public_pem(key)], scopes=["**"])
            )
            save_authority(
                session,
                key_authority(name="elsewhere", keys=[wire.public_pem(key)], scopes=["ghcr.io/*"]),
            )
        result = sealgate("policy", "input", f"{image.name}:{image.tag}", "-e", "push")
        assert result.exit_code == 0, result.output
        document = json.loads(result.stdout)
        assert document["entrypoint"] == "push"
        assert document["image"]["digest"] == image.digest
        assert document["authorities"] == ["team"]
        assert [s["authority"] for s in document["signatures"]] == ["team"]
        assert "kubernetes" not in document

    def test_input_from_store_facts_offline(self, sealgate: Cli) -> None:
        keyless = sealgate(
            "policy",
            "input",
            "registry.example.com/team/app:2",
            "--namespace",
            "shop",
            "--offline",
        )
        assert keyless.exit_code == 0, keyless.output
        document = json.loads(keyless.stdout)
        assert document["version"] == 1
        assert document["entrypoint"] == "admission"
        assert document["image"]["repository"] == "team/app"
        assert document["authorities"] == []
        assert "scan" not in document
        assert document["kubernetes"]["namespace"] == "shop"

    def test_bad_reference(self, sealgate: Cli) -> None:
        result = sealgate("policy", "input", "foo::bar", "--offline")
        assert result.exit_code == 1
        assert "not valid" in result.stderr

    def test_schema(self, sealgate: Cli) -> None:
        result = sealgate("policy", "schema")
        assert json.loads(result.stdout)["properties"]["version"]["const"] == 1
