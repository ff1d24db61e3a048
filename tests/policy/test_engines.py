"""Both engines: identical decisions, compile errors located, every failure fails closed."""

from __future__ import annotations

import socket

import pytest

from app.config import load_settings
from app.errors import ConfigError, DeadlineError, PolicyError
from app.policy.bundle import PolicyBundle
from app.policy.engines import EmbeddedOpaEngine, OpaServerEngine, build_engine, decide_within
from app.policy.input import Entrypoint
from tests.fixtures.opa_standin import OpaRestStandIn
from tests.policy.conftest import POLICIES, EngineFactory, InputFactory, vulnerability


def bundle_of(**modules: str) -> PolicyBundle:
    return PolicyBundle.from_files({f"{name}.rego": text for name, text in modules.items()})


class TestIdenticalResults:
    def test_embedded_and_server_decide_alike(
        self,
        default_bundle: PolicyBundle,
        make_input: InputFactory,
        opa_standin: OpaRestStandIn,
    ) -> None:
        embedded = EmbeddedOpaEngine(default_bundle)
        server = OpaServerEngine(opa_standin.url)
        server.load(default_bundle)
        inputs = [
            make_input(),
            make_input(vulnerabilities=[vulnerability("CVE-1", "critical")]),
            make_input(entrypoint=Entrypoint.push, signatures=[], scan=None),
            make_input(reference="nginx", authorities=[]),
        ]
        try:
            for policy_input in inputs:
                assert embedded.decide(policy_input) == server.decide(policy_input)
            assert embedded.revision == server.revision == default_bundle.content_hash
        finally:
            embedded.close()
            server.close()

    def test_server_path_uses_the_rest_api(
        self, default_bundle: PolicyBundle, make_input: InputFactory, opa_standin: OpaRestStandIn
    ) -> None:
        server = OpaServerEngine(opa_standin.url)
        server.load(default_bundle)
        server.decide(make_input())
        server.check_health()
        assert ("PUT", "/v1/policies/sealgate/lib/params.rego") in opa_standin.requests
        assert ("PUT", "/v1/data/parameters") in opa_standin.requests
        assert ("POST", "/v1/data/sealgate/admission/decision") in opa_standin.requests
        assert ("GET", "/health") in opa_standin.requests

    def test_server_load_removes_modules_of_the_previous_bundle(
        self, opa_standin: OpaRestStandIn
    ) -> None:
        server = OpaServerEngine(opa_standin.url)
        server.load(bundle_of(a="package a\n\nx := 1\n", b="package b\n\ny := 2\n"))
        server.load(bundle_of(a="package a\n\nx := 3\n"))
        assert set(opa_standin.modules) == {"sealgate/a.rego"}

    def test_first_load_removes_modules_an_earlier_run_left(
        self, opa_standin: OpaRestStandIn
    ) -> None:
        OpaServerEngine(opa_standin.url).load(bundle_of(old="package old\n\nx := 1\n"))
        opa_standin.put_policy("someone-else", "package theirs\n\ny := 1\n")
        restarted = OpaServerEngine(opa_standin.url)
        restarted.load(bundle_of(new="package new\n\nx := 2\n"))
        assert set(opa_standin.modules) == {"sealgate/new.rego", "someone-else"}


class TestCompileErrors:
    def test_parse_error_names_file_line_and_column_and_keeps_old_bundle(
        self, engine_factory: EngineFactory, default_bundle: PolicyBundle, make_input: InputFactory
    ) -> None:
        engine = engine_factory(default_bundle)
        broken = PolicyBundle.from_files(
            {
                **default_bundle.files(),
                "rules/extra.rego": "package x\n\nallow if {\n  foo bar\n}\n",
            }
        )
        with pytest.raises(PolicyError) as caught:
            engine.load(broken)
        assert caught.value.code == "policy.compile"
        assert "rules/extra.rego:4:" in caught.value.message
        problem = caught.value.details["problems"][0]
        assert (problem["file"], problem["line"]) == ("rules/extra.rego", 4)
        assert problem["column"] > 1
        assert engine.revision == default_bundle.content_hash
        assert engine.decide(make_input()).allow is True

    def test_type_error_is_located(self, engine_factory: EngineFactory) -> None:
        source = "package q\n\nallow if {\n\tmissing_fn(1)\n}\n"
        bad = bundle_of(q=source)
        with pytest.raises(PolicyError) as caught:
            engine_factory(bad)
        problem = caught.value.details["problems"][0]
        assert (problem["file"], problem["line"], problem["column"]) == ("q.rego", 4, 2)

    def test_rego_v0_syntax_is_rejected_not_rewritten(self, engine_factory: EngineFactory) -> None:
        v0 = bundle_of(old="package old\n\nallow {\n  true\n}\n")
        with pytest.raises(PolicyError) as caught:
            engine_factory(v0)
        assert "old.rego:3" in caught.value.message
        assert "`if` keyword is required" in caught.value.message


class TestFailClosed:
    def test_undefined_decision(
        self, engine_factory: EngineFactory, make_input: InputFactory
    ) -> None:
        engine = engine_factory(bundle_of(other="package sealgate.push\n\ndecision := {}\n"))
        with pytest.raises(PolicyError) as caught:
            engine.decide(make_input())
        assert caught.value.code == "policy.undefined"

    @pytest.mark.parametrize(
        "body",
        [
            'decision := "yes"',
            'decision := {"allow": "true"}',
            'decision := {"allow": true, "deny": [{"message": "no code"}]}',
        ],
    )
    def test_result_breaking_the_contract(
        self, engine_factory: EngineFactory, make_input: InputFactory, body: str
    ) -> None:
        engine = engine_factory(bundle_of(adm=f"package sealgate.admission\n\n{body}\n"))
        with pytest.raises(PolicyError) as caught:
            engine.decide(make_input())
        assert caught.value.code == "policy.contract"

    def test_deny_wins_over_allow(
        self, engine_factory: EngineFactory, make_input: InputFactory
    ) -> None:
        source = (
            "package sealgate.admission\n\n"
            'decision := {"allow": true, "deny": [{"code": "x", "message": "no"}]}\n'
        )
        decision = engine_factory(bundle_of(adm=source)).decide(make_input())
        assert decision.allow is False

    def test_evaluation_error(
        self, engine_factory: EngineFactory, make_input: InputFactory
    ) -> None:
        source = (
            "package sealgate.admission\n\n"
            'decision := {"allow": time.parse_rfc3339_ns("not a time") > 0}\n'
        )
        engine = engine_factory(bundle_of(adm=source))
        with pytest.raises(PolicyError) as caught:
            engine.decide(make_input())
        assert caught.value.code == "policy.engine"

    def test_unreachable_server(self, make_input: InputFactory) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        server = OpaServerEngine(f"http://127.0.0.1:{port}", timeout=0.5)
        with pytest.raises(PolicyError) as caught:
            server.decide(make_input())
        assert caught.value.code == "policy.engine"
        with pytest.raises(PolicyError):
            server.check_health()

    def test_unhealthy_server(self, opa_standin: OpaRestStandIn) -> None:
        opa_standin.healthy = False
        with pytest.raises(PolicyError):
            OpaServerEngine(opa_standin.url).check_health()

    def test_time_budget(self, engine_factory: EngineFactory, make_input: InputFactory) -> None:
        slow = (
            "package sealgate.admission\n\n"
            'decision := {"allow": count([x | some x in numbers.range(1, 5000000)]) > 0}\n'
        )
        engine = engine_factory(bundle_of(adm=slow))
        with pytest.raises(DeadlineError) as caught:
            decide_within(engine, policy_input=make_input(), seconds=0.01)
        assert caught.value.code == "deadline.policy"

    def test_within_budget(
        self, engine_factory: EngineFactory, default_bundle: PolicyBundle, make_input: InputFactory
    ) -> None:
        engine = engine_factory(default_bundle)
        assert decide_within(engine, policy_input=make_input(), seconds=30).allow is True

    def test_empty_engine_denies(self, make_input: InputFactory) -> None:
        engine = EmbeddedOpaEngine()
        try:
            with pytest.raises(PolicyError):
                engine.decide(make_input())
        finally:
            engine.close()


class TestBuildEngine:
    def test_opa_url_selects_the_server_engine(
        self, opa_standin: OpaRestStandIn, make_input: InputFactory
    ) -> None:
        settings = load_settings(opa_url=opa_standin.url, policy_dir=POLICIES)
        engine = build_engine(settings)
        try:
            assert isinstance(engine, OpaServerEngine)
            assert engine.decide(make_input()).allow is True
        finally:
            engine.close()

    def test_default_is_embedded_with_the_policy_directory(self, make_input: InputFactory) -> None:
        engine = build_engine(load_settings(policy_dir=POLICIES))
        try:
            assert isinstance(engine, EmbeddedOpaEngine)
            assert engine.decide(make_input()).allow is True
        finally:
            engine.close()

    def test_bad_opa_url_is_a_config_error(self) -> None:
        with pytest.raises(ConfigError):
            OpaServerEngine("ftp://opa")
