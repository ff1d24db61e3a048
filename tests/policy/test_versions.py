"""Policy versions: publish (only bundles that compile and pass their tests), activate,
roll back, every replica following the active version; the API and CLI for them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient

from app.auth.tokens import create_token
from app.config import Settings
from app.db.session import session_scope
from app.errors import NotFoundError, PolicyError
from app.policy.bundle import PolicyBundle
from app.policy.engines import EmbeddedOpaEngine
from app.policy.versions import (
    ActiveVersionPoller,
    activate_version,
    list_versions,
    publish_bundle,
    stored_bundle,
)
from app.services import Services
from tests.conftest import Cli
from tests.policy.conftest import POLICIES, InputFactory, vulnerability

STRICT = {"defaults": {"vulnerabilities": {"deny_severities": ["critical", "high"]}}}


def strict_bundle(default_bundle: PolicyBundle) -> PolicyBundle:
    from app.policy.bundle import deep_merge

    return PolicyBundle(
        modules=default_bundle.modules, data=deep_merge(default_bundle.data, override=STRICT)
    )


def broken_bundle(default_bundle: PolicyBundle) -> PolicyBundle:
    files = {**default_bundle.files(), "rules/typo.rego": "package typo\n\np if {\n  q r\n}\n"}
    return PolicyBundle.from_files(files)


def failing_tests_bundle(default_bundle: PolicyBundle) -> PolicyBundle:
    files = {
        **default_bundle.files(),
        "rules/typo_test.rego": "package t\n\ntest_no if {\n\tfalse\n}\n",
    }
    return PolicyBundle.from_files(files)


class TestPublishAndActivate:
    def test_publish_activate_and_roll_back(
        self, services: Services, default_bundle: PolicyBundle
    ) -> None:
        with session_scope(services.sessions) as session:
            first = publish_bundle(session, bundle=default_bundle, author="alice", message="v1")
            second = publish_bundle(session, bundle=strict_bundle(default_bundle), author="bob")
        assert (first.version, second.version) == (1, 2)
        with session_scope(services.sessions) as session:
            versions = list_versions(session)
            assert [(v.version, v.active) for v in versions] == [(2, True), (1, False)]
            assert versions[1].author == "alice" and versions[1].message == "v1"
            assert versions[1].content_hash == default_bundle.content_hash
            activate_version(session, version=1)
        with session_scope(services.sessions) as session:
            version, bundle = stored_bundle(session)
        assert version == 1
        assert bundle.content_hash == default_bundle.content_hash

    def test_rejected_bundle_names_file_and_line_and_changes_nothing(
        self, services: Services, default_bundle: PolicyBundle
    ) -> None:
        with session_scope(services.sessions) as session:
            publish_bundle(session, bundle=default_bundle, author="alice")
        for bad, where in (
            (broken_bundle(default_bundle), "rules/typo.rego:4:"),
            (failing_tests_bundle(default_bundle), "rules/typo_test.rego:3:"),
        ):
            with pytest.raises(PolicyError) as caught, session_scope(services.sessions) as s:
                publish_bundle(s, bundle=bad, author="mallory")
            assert where in caught.value.message
        with session_scope(services.sessions) as session:
            assert [(v.version, v.active) for v in list_versions(session)] == [(1, True)]

    def test_concurrent_activations_leave_one_version_active(
        self, services: Services, default_bundle: PolicyBundle
    ) -> None:
        with session_scope(services.sessions) as session:
            for n in range(4):
                publish_bundle(session, bundle=default_bundle, author=f"a{n}", activate=False)

        def activate(version: int) -> None:
            with session_scope(services.sessions) as session:
                activate_version(session, version=version)

        for _ in range(5):
            with ThreadPoolExecutor(max_workers=4) as pool:
                list(pool.map(activate, [1, 2, 3, 4]))
            with session_scope(services.sessions) as session:
                active = [v.version for v in list_versions(session) if v.active]
            assert len(active) == 1, active

    def test_one_engine_however_many_threads_ask_first(self, settings: Settings) -> None:
        fresh = Services.from_settings(settings)
        try:
            with ThreadPoolExecutor(max_workers=8) as pool:
                engines = list(pool.map(lambda _: fresh.policy, range(8)))
            assert len({id(e) for e in engines}) == 1
        finally:
            fresh.close()

    def test_activating_an_unknown_version(self, services: Services) -> None:
        with pytest.raises(NotFoundError), session_scope(services.sessions) as session:
            activate_version(session, version=42)


@pytest.fixture
def second_replica(settings: Settings, services: Services) -> Iterator[Services]:
    replica = Services.from_settings(settings)
    yield replica
    asyncio.run(replica.aclose())


class TestReplicasFollowTheActiveVersion:
    def test_two_replicas_converge_on_activate_and_rollback(
        self,
        services: Services,
        second_replica: Services,
        default_bundle: PolicyBundle,
        make_input: InputFactory,
    ) -> None:
        high = make_input(vulnerabilities=[vulnerability("CVE-8", "high")])
        engines = [EmbeddedOpaEngine(default_bundle), EmbeddedOpaEngine(default_bundle)]
        pollers = [
            ActiveVersionPoller(
                engine_source=constant(e),
                sessions=s.sessions,
                interval=0.1,
            )
            for e, s in zip(engines, (services, second_replica), strict=True)
        ]
        for poller in pollers:
            poller.start()
        try:
            with session_scope(services.sessions) as session:
                publish_bundle(session, bundle=default_bundle, author="a")
                publish_bundle(session, bundle=strict_bundle(default_bundle), author="a")
            wait_until(lambda: all(p.version == 2 for p in pollers))
            assert all(not e.decide(high).allow for e in engines)

            with session_scope(second_replica.sessions) as session:
                activate_version(session, version=1)
            wait_until(lambda: all(p.version == 1 for p in pollers))
            assert all(e.decide(high).allow for e in engines)
        finally:
            for poller in pollers:
                poller.stop()
            for engine in engines:
                engine.close()

    def test_poll_once_keeps_the_directory_bundle_until_a_version_is_active(
        self, services: Services, default_bundle: PolicyBundle
    ) -> None:
        engine = EmbeddedOpaEngine(default_bundle)
        poller = ActiveVersionPoller(engine_source=lambda: engine, sessions=services.sessions)
        try:
            assert poller.poll_once() is False
            assert engine.revision == default_bundle.content_hash
        finally:
            engine.close()


def constant(engine: EmbeddedOpaEngine) -> Callable[[], EmbeddedOpaEngine]:
    return lambda: engine


def wait_until(condition: Callable[[], bool], *, limit: float = 15.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail("replicas did not pick up the active version")
        time.sleep(0.05)


@pytest.fixture
def admin_headers(services: Services) -> dict[str, str]:
    with session_scope(services.sessions) as session:
        issued = create_token(session, name="root", scopes=["admin"])
    return {"Authorization": f"Bearer {issued.token}"}


@pytest.fixture
def signer_headers(services: Services) -> dict[str, str]:
    with session_scope(services.sessions) as session:
        issued = create_token(session, name="ci", scopes=["sign:registry.example.com/**"])
    return {"Authorization": f"Bearer {issued.token}"}


class TestPolicyApi:
    def test_put_list_activate(
        self,
        client: TestClient,
        admin_headers: dict[str, str],
        default_bundle: PolicyBundle,
    ) -> None:
        body = {"files": default_bundle.files(), "message": "first"}
        created = client.put("/v1/policies", json=body, headers=admin_headers)
        assert created.status_code == 201, created.text
        assert created.json()["version"] == 1 and created.json()["author"] == "root"
        strict = {"files": strict_bundle(default_bundle).files(), "activate": False}
        assert client.put("/v1/policies", json=strict, headers=admin_headers).status_code == 201
        listed = client.get("/v1/policies", headers=admin_headers).json()
        assert [(v["version"], v["active"]) for v in listed] == [(2, False), (1, True)]
        activated = client.post("/v1/policies/2/activate", headers=admin_headers)
        assert activated.status_code == 200 and activated.json()["active"] is True
        missing = client.post("/v1/policies/9/activate", headers=admin_headers)
        assert missing.status_code == 404

    def test_the_service_follows_the_version_it_activates(
        self,
        client: TestClient,
        services: Services,
        admin_headers: dict[str, str],
        default_bundle: PolicyBundle,
    ) -> None:
        strict = strict_bundle(default_bundle)
        body = {"files": strict.files(), "message": "deny highs"}
        assert client.put("/v1/policies", json=body, headers=admin_headers).status_code == 201
        wait_until(lambda: services.policy.revision == strict.content_hash)
        assert client.app.state.policy_poller.version == 1  # type: ignore[attr-defined]

    def test_rejected_bundle_is_422_naming_file_and_line(
        self,
        client: TestClient,
        admin_headers: dict[str, str],
        default_bundle: PolicyBundle,
    ) -> None:
        assert (
            client.put(
                "/v1/policies", json={"files": default_bundle.files()}, headers=admin_headers
            ).status_code
            == 201
        )
        bad = {"files": broken_bundle(default_bundle).files()}
        response = client.put("/v1/policies", json=bad, headers=admin_headers)
        assert response.status_code == 422
        error = response.json()["error"]
        assert error["code"] == "policy.compile"
        assert "rules/typo.rego:4:" in error["message"]
        assert error["details"]["problems"][0]["line"] == 4
        listed = client.get("/v1/policies", headers=admin_headers).json()
        assert [(v["version"], v["active"]) for v in listed] == [(1, True)]

    @pytest.mark.parametrize(
        "files",
        [
            {"../escape.rego": "package x"},
            {"/abs.rego": "package x"},
            {"notes.txt": "hello"},
            {"data.json": "{not json"},
            {"data.json": "{}"},
        ],
    )
    def test_bad_bundles_are_400(
        self, client: TestClient, admin_headers: dict[str, str], files: dict[str, str]
    ) -> None:
        response = client.put("/v1/policies", json={"files": files}, headers=admin_headers)
        assert response.status_code == 400, response.text
        assert response.json()["error"]["message"]

    def test_only_admins_publish_and_activate(
        self,
        client: TestClient,
        signer_headers: dict[str, str],
        default_bundle: PolicyBundle,
    ) -> None:
        body = {"files": default_bundle.files()}
        assert client.put("/v1/policies", json=body).status_code == 401
        assert client.put("/v1/policies", json=body, headers=signer_headers).status_code == 403
        assert client.post("/v1/policies/1/activate", headers=signer_headers).status_code == 403
        assert client.get("/v1/policies").status_code == 401


class TestVersionCli:
    def test_publish_versions_activate(self, sealgate: Cli) -> None:
        published = sealgate("policy", "publish", str(POLICIES), "-m", "initial")
        assert published.exit_code == 0, published.output
        assert '"version": 1' in published.stdout
        assert sealgate("policy", "publish", str(POLICIES), "--no-activate").exit_code == 0
        assert sealgate("policy", "activate", "2").exit_code == 0
        listed = sealgate("policy", "versions")
        assert '"active": true' in listed.stdout
        unknown = sealgate("policy", "activate", "7")
        assert unknown.exit_code == 1
        assert "policy version 7 does not exist" in unknown.stderr
