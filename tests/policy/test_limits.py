"""Publishing a bundle: built-ins that reach outside the engine are refused naming file and
line, and compiling and testing runs in a worker process stopped at its time and memory
limits; over HTTP the server stays responsive meanwhile and SIGTERM still stops it.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable

import httpx
import pytest

from app.config import Settings
from app.errors import PolicyError
from app.policy.builtins import outside_calls
from app.policy.bundle import PolicyBundle
from app.policy.versions import check_bundle
from app.policy.worker import BundleLimits
from tests.fixtures.server import HealthProbe, ServerProcess, bearer_for

CALLS_OUT = """package sealgate.push

import rego.v1

# http.send in a comment is not a call
note := "neither is http.send in a string"

decision := {"allow": true, "deny": [], "warn": [], "probe": probe}

probe := http.send({"method": "GET", "url": "http://127.0.0.1:9/"})
"""


def many_rules(count: int) -> dict[str, str]:
    """One module of ``count`` trivial rules: cheap to write, slow to compile."""
    return {"many.rego": "package many\n\n" + "".join(f"r{i} := {i}\n" for i in range(count))}


class TestOutsideBuiltins:
    def test_references_are_found_with_file_and_line_outside_comments_and_strings(
        self,
    ) -> None:
        source = (
            "package x\n"
            "# http.send\n"
            'a := "opa.runtime()"\n'
            "b := `net.lookup_ip_addr\nstill raw`\n"
            'c := net.cidr_contains("10.0.0.0/8", "10.1.2.3")\n'
            'd := net.lookup_ip_addr("example.com")\n'
            "e := opa.runtime()\n"
            'f := http["send"]({})\n'
            "g := input.http.send\n"
        )
        found = [(c.line, c.builtin) for c in outside_calls({"x.rego": source})]
        assert found == [(7, "net.lookup_ip_addr"), (8, "opa.runtime"), (9, "http[...]")]

    def test_a_bundle_calling_http_send_is_refused_naming_file_and_line(self) -> None:
        bundle = PolicyBundle.from_files({"push.rego": CALLS_OUT})
        with pytest.raises(PolicyError) as caught:
            check_bundle(bundle)
        assert caught.value.code == "policy.network_builtin"
        assert caught.value.message.startswith("push.rego:10: the policy calls http.send")
        assert "SEALGATE_POLICY_ALLOW_NETWORK" in caught.value.message

    def test_the_setting_allows_them(self) -> None:
        bundle = PolicyBundle.from_files({"push.rego": CALLS_OUT})
        check_bundle(bundle, limits=BundleLimits(allow_network=True))


class TestWorkerLimits:
    def test_compile_errors_and_failing_tests_come_back_from_the_worker(self) -> None:
        broken = PolicyBundle.from_files({"a.rego": "package a\n\np if {\n  q r\n}\n"})
        with pytest.raises(PolicyError) as caught:
            check_bundle(broken)
        assert caught.value.code == "policy.compile"
        assert "a.rego:4" in caught.value.message
        failing = PolicyBundle.from_files({"t.rego": "package t\n\ntest_no if {\n\tfalse\n}\n"})
        with pytest.raises(PolicyError) as caught:
            check_bundle(failing)
        assert caught.value.code == "policy.tests_failed"
        assert "t.rego:3" in caught.value.message

    def test_a_bundle_over_the_time_limit_is_stopped(self) -> None:
        bundle = PolicyBundle.from_files(many_rules(15_000))
        started = time.monotonic()
        with pytest.raises(PolicyError) as caught:
            check_bundle(bundle, limits=BundleLimits(seconds=1.0))
        assert caught.value.code == "policy.compile_limit"
        assert "longer than 1 s" in caught.value.message
        assert time.monotonic() - started < 1.0 + 5.0

    def test_a_bundle_over_the_memory_limit_is_stopped(self) -> None:
        bundle = PolicyBundle.from_files(many_rules(15_000))
        with pytest.raises(PolicyError) as caught:
            check_bundle(bundle, limits=BundleLimits(memory_bytes=64 * 1024 * 1024))
        assert caught.value.code == "policy.compile_limit"
        assert "more than 64 MiB" in caught.value.message


class TestOverHttp:
    def test_an_oversized_bundle_is_422_the_server_stays_up_and_sigterm_stops_it(
        self, serve: Callable[..., ServerProcess], settings: Settings
    ) -> None:
        server = serve(env={"SEALGATE_POLICY_COMPILE_TIMEOUT": "1"})
        admin = bearer_for(settings, "admin", name="admin")
        with HealthProbe(server.url) as probe:
            answer = httpx.put(
                f"{server.url}/v1/policies",
                json={"files": many_rules(15_000)},
                headers=admin,
                timeout=60,
            )
        assert answer.status_code == 422, answer.text
        assert answer.json()["error"]["code"] == "policy.compile_limit"
        probe.assert_responsive(bound=5.0)

        refused = httpx.put(
            f"{server.url}/v1/policies",
            json={"files": {"push.rego": CALLS_OUT}},
            headers=admin,
            timeout=60,
        )
        assert refused.status_code == 422
        assert refused.json()["error"]["code"] == "policy.network_builtin"
        assert "push.rego:10" in refused.json()["error"]["message"]

        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pytest.fail("sealgate serve did not stop on SIGTERM")
