"""The pipeline's caches against the real registry and store: hits, expiry, clearing,
single flight, and soundness (a cached decision never outlives what it was made on)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from app.auth.scopes import Scope
from app.auth.tokens import Principal
from app.config import Settings
from app.db.models import ScanRecord
from app.db.session import session_scope
from app.enforce.deadline import Deadline
from app.enforce.outcome import DecisionRequest, Outcome
from app.enforce.pipeline import decide
from app.enforce.scans import upload_scan
from app.enforce.sign import SignFormat, sign_image
from app.oci.refs import ImageRef
from app.policy.bundle import PolicyBundle
from app.policy.input import Entrypoint, KubernetesContext
from app.policy.versions import ActiveVersionPoller, publish_bundle
from app.scans.detect import parse_report
from app.services import Services
from app.verify.trust import remove_authority
from tests.enforce.conftest import trust_new_key
from tests.fixtures.images import push_random_image
from tests.fixtures.registry import RegistryProcess
from tests.fixtures.standins import CountingProxyStandIn

ADMIN = Principal(name="test", scopes=(Scope.parse("admin"),))
REPORT = "trivy/dd_trivy_schema2_image_os_and_jar.json"
MAX_SCAN_AGE = 604800  # the default library's scans.max_age_seconds


@pytest.fixture
async def make_services(
    settings: Settings, clean_database: Any
) -> AsyncIterator[Callable[..., Services]]:
    made: list[Services] = []

    def _make(**changes: Any) -> Services:
        svc = Services.from_settings(settings.model_copy(update=changes))
        made.append(svc)
        return svc

    yield _make
    for svc in made:
        await svc.aclose()


@pytest.fixture
def counting_proxy(registry: RegistryProcess) -> Iterator[CountingProxyStandIn]:
    """The test registry behind a proxy that counts what it is asked."""
    with CountingProxyStandIn(registry) as proxy:
        yield proxy


async def signed_through(
    services: Services, proxy: CountingProxyStandIn, *repositories: str
) -> list[ImageRef]:
    """Trust a new key for the proxy's host and sign one new image per repository there."""
    trust_new_key(services, scope=f"{proxy.host}/**")
    return [await signed_image(services, f"{proxy.host}/{repo}") for repo in repositories]


async def signed_image(services: Services, repo: str) -> ImageRef:
    image, _ = await push_random_image(services.registry, repo)
    await sign_image(services, image=str(image), principal=ADMIN, key_name="ci")
    return image


async def decide_once(services: Services, image: str) -> Outcome:
    request = DecisionRequest(image=image, entrypoint=Entrypoint.push, deadline=Deadline(10))
    return await decide(request, services.decisions)


def warn_only(bundle: PolicyBundle, registry: RegistryProcess) -> PolicyBundle:
    """``bundle`` with the test registry's images in warn mode (its own Rego tests, which
    use other registries, still pass)."""
    repositories = {**bundle.data["repositories"], f"{registry.host}/**": {"mode": "warn"}}
    return bundle.model_copy(update={"data": {**bundle.data, "repositories": repositories}})


def codes(outcome: Outcome) -> set[str]:
    return {f.code for f in outcome.decision.deny}


class TestCachesAnswer:
    async def test_a_repeated_decision_is_answered_from_cache_until_its_ttl(
        self,
        make_services: Callable[..., Services],
        registry: RegistryProcess,
        unique_repo: Callable[[str], str],
    ) -> None:
        services = make_services(cache_decision_ttl=1.0)
        trust_new_key(services, scope=f"{registry.host}/**")
        image = await signed_image(services, unique_repo("app"))

        first = await decide_once(services, str(image))
        second = await decide_once(services, str(image))
        await asyncio.sleep(1.2)
        third = await decide_once(services, str(image))

        assert first.allowed and second.allowed and third.allowed
        assert (first.cache, second.cache, third.cache) == (None, "decision", "evidence")
        assert second.decision == first.decision
        assert services.caches.decisions.stats.hits == 1

    async def test_a_remembered_decision_is_bound_to_its_facts(
        self,
        make_services: Callable[..., Services],
        registry: RegistryProcess,
        unique_repo: Callable[[str], str],
    ) -> None:
        """The warm path answers without encoding the input only for the same facts: another
        Kubernetes context, or a new signature, is decided (or looked up) afresh."""
        services = make_services()
        trust_new_key(services, scope=f"{registry.host}/**")
        image = await signed_image(services, unique_repo("app"))

        def admission(namespace: str) -> DecisionRequest:
            context = KubernetesContext(namespace=namespace, kind="Pod", operation="CREATE")
            return DecisionRequest(
                image=str(image),
                entrypoint=Entrypoint.admission,
                deadline=Deadline(10),
                kubernetes=context,
            )

        first = await decide(admission("team-a"), services.decisions)
        again = await decide(admission("team-a"), services.decisions)
        other = await decide(admission("team-b"), services.decisions)

        assert (first.cache, again.cache) == (None, "decision")
        # The very input it was decided on: the recorder stores and hashes it once for both.
        assert again.input is first.input
        assert other.input["kubernetes"]["namespace"] == "team-b"  # type: ignore[index]
        assert first.input["kubernetes"]["namespace"] == "team-a"  # type: ignore[index]

        # A second signature replaces the cached evidence: the remembered facts no longer hold.
        await sign_image(services, image=str(image), principal=ADMIN, key_name="ci")
        services.decisions.context.refresh()
        after = await decide(admission("team-a"), services.decisions)
        assert after.cache is None
        assert len(after.input["signatures"]) == 2  # type: ignore[arg-type]

    async def test_an_authority_change_clears_what_it_vouched_for(
        self,
        make_services: Callable[..., Services],
        registry: RegistryProcess,
        unique_repo: Callable[[str], str],
    ) -> None:
        here = make_services()
        other_replica = make_services()
        trust_new_key(here, scope=f"{registry.host}/**")
        image = await signed_image(here, unique_repo("app"))
        assert (await decide_once(here, str(image))).allowed
        assert (await decide_once(other_replica, str(image))).allowed

        with session_scope(here.sessions) as session:
            remove_authority(session, "ci")
        here.decisions.context.refresh()  # what the API does after a change on this replica
        assert not (await decide_once(here, str(image))).allowed

        # Another replica learns it on its next refresh (every refresh_interval seconds).
        assert (await decide_once(other_replica, str(image))).cache == "decision"
        other_replica.decisions.context.refresh()
        after = await decide_once(other_replica, str(image))
        assert not after.allowed and after.cache is None

    async def test_a_policy_activation_decides_afresh(
        self,
        make_services: Callable[..., Services],
        registry: RegistryProcess,
        unique_repo: Callable[[str], str],
    ) -> None:
        services = make_services()
        image, _ = await push_random_image(services.registry, unique_repo("app"))  # unsigned
        assert not (await decide_once(services, str(image))).allowed
        lenient = warn_only(PolicyBundle.from_directory(services.settings.policy_dir), registry)
        with session_scope(services.sessions) as session:
            publish_bundle(session, bundle=lenient, author="t")
        poller = ActiveVersionPoller(
            engine_source=lambda: services.policy,
            sessions=services.sessions,
            on_load=lambda _v: services.caches.forget_policy(),
        )
        assert poller.poll_once()

        after = await decide_once(services, str(image))

        assert after.allowed and after.cache != "decision"
        assert after.policy_version == 1
        assert after.policy_revision == lenient.content_hash

    async def test_concurrent_decisions_about_one_digest_share_one_fetch(
        self,
        make_services: Callable[..., Services],
        registry: RegistryProcess,
        counting_proxy: CountingProxyStandIn,
    ) -> None:
        proxy = counting_proxy
        services = make_services(insecure_registries=[registry.host, proxy.host])
        lone, crowd = await signed_through(services, proxy, "single/app", "crowd/app")
        proxy.requests.clear()
        await decide_once(services, str(lone))
        one_decision = len(proxy.requests)
        proxy.requests.clear()

        outcomes = await asyncio.gather(*(decide_once(services, str(crowd)) for _ in range(50)))

        assert all(o.allowed for o in outcomes)
        assert len(proxy.requests) == one_decision, proxy.requests


class TestRegistryRequests:
    """An uncached decision asks the registry only what it needs."""

    async def test_a_bundle_signed_image_costs_no_referrers_probe_and_no_legacy_tag(
        self,
        make_services: Callable[..., Services],
        registry: RegistryProcess,
        counting_proxy: CountingProxyStandIn,
    ) -> None:
        proxy = counting_proxy
        signer = make_services(insecure_registries=[registry.host, proxy.host])
        first, second = await signed_through(signer, proxy, "first/app", "second/app")
        # A replica that has seen neither image nor the registry.
        decider = make_services(insecure_registries=[registry.host, proxy.host])
        proxy.requests.clear()
        assert (await decide_once(decider, str(first))).allowed
        # Debian's registry has no referrers API: learnt once (a 404), then not asked.
        assert any("/referrers/" in path for _, path in proxy.requests), proxy.requests
        proxy.requests.clear()

        outcome = await decide_once(decider, str(second))

        assert outcome.allowed
        paths = [path for _, path in proxy.requests]
        assert not any("/referrers/" in p for p in paths), paths
        assert not any(p.endswith(".sig") for p in paths), paths
        # The image is named by digest: the fallback index, the bundle's manifest, its blob.
        assert len(paths) == 3, paths

    async def test_the_legacy_tag_is_read_when_the_referrers_leave_an_authority_unsigned(
        self,
        make_services: Callable[..., Services],
        registry: RegistryProcess,
        unique_repo: Callable[[str], str],
    ) -> None:
        services = make_services()
        trust_new_key(services, scope=f"{registry.host}/**")
        image, _ = await push_random_image(services.registry, unique_repo("legacy"))
        await sign_image(
            services,
            image=str(image),
            principal=ADMIN,
            key_name="ci",
            formats=(SignFormat.legacy,),
        )

        outcome = await decide_once(services, str(image))

        assert outcome.allowed, outcome.decision
        signatures = outcome.input["signatures"]
        assert [s["format"] for s in signatures] == ["legacy"], signatures  # type: ignore[index,union-attr]


class TestSoundness:
    """A cached decision equals what the engine would answer for the same facts now."""

    async def test_crossing_the_scan_age_limit_while_cached(
        self,
        make_services: Callable[..., Services],
        registry: RegistryProcess,
        unique_repo: Callable[[str], str],
        asset: Callable[[str], Path],
        tmp_path: Path,
    ) -> None:
        # No severity gate, so only the scan's age can deny.
        data = tmp_path / "data.json"
        data.write_text(
            json.dumps(
                {
                    "defaults": {
                        "vulnerabilities": {"deny_severities": [], "deny_fixable_severities": []}
                    }
                }
            )
        )
        services = make_services(policy_data=data)
        trust_new_key(services, scope=f"{registry.host}/**")
        image = await signed_image(services, unique_repo("app"))
        await upload_scan(services, image=image, report=asset(REPORT).read_bytes(), uploaded_by="t")
        soon_stale = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=MAX_SCAN_AGE - 2)
        with session_scope(services.sessions) as session:
            session.execute(update(ScanRecord).values(scanned_at=soon_stale))

        fresh = await decide_once(services, str(image))
        cached = await decide_once(services, str(image))
        await asyncio.sleep(
            max(
                0.0,
                (
                    soon_stale + dt.timedelta(seconds=MAX_SCAN_AGE + 1.2) - dt.datetime.now(dt.UTC)
                ).total_seconds(),
            )
        )
        later = await decide_once(services, str(image))

        assert fresh.allowed and "scan.stale" not in codes(fresh)
        assert cached.cache == "decision"
        assert "scan.stale" in codes(later), later.decision
        assert later.cache != "decision"

    async def test_crossing_an_allowlist_expiry_while_cached(
        self,
        make_services: Callable[..., Services],
        registry: RegistryProcess,
        unique_repo: Callable[[str], str],
        asset: Callable[[str], Path],
        tmp_path: Path,
    ) -> None:
        report = asset(REPORT).read_bytes()
        ids = sorted({v.id for v in parse_report(report).vulnerabilities})
        expires = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
        allowlist = [{"id": i, "reason": "vendor patch pending", "expires": expires} for i in ids]
        data = tmp_path / "data.json"
        data.write_text(json.dumps({"defaults": {"vulnerabilities": {"allowlist": allowlist}}}))
        services = make_services(policy_data=data)
        trust_new_key(services, scope=f"{registry.host}/**")
        image = await signed_image(services, unique_repo("app"))
        await upload_scan(services, image=image, report=report, uploaded_by="t")

        allowed = await decide_once(services, str(image))
        cached = await decide_once(services, str(image))
        until = dt.datetime.strptime(expires, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
        await asyncio.sleep(max(0.0, (until - dt.datetime.now(dt.UTC)).total_seconds() + 0.3))
        denied = await decide_once(services, str(image))

        assert allowed.allowed, allowed.decision
        assert cached.cache == "decision"
        assert not denied.allowed
        assert codes(denied) & {"vulnerability.severity", "vulnerability.fixable"}
        assert denied.cache != "decision"


class TestPolicyVersionRecorded:
    async def test_records_name_the_version_that_decided_during_an_activation(
        self,
        make_services: Callable[..., Services],
        registry: RegistryProcess,
        unique_repo: Callable[[str], str],
    ) -> None:
        services = make_services(cache_decision_ttl=0)
        image, _ = await push_random_image(services.registry, unique_repo("app"))  # unsigned
        base = PolicyBundle.from_directory(services.settings.policy_dir)
        strict = base
        lenient = warn_only(base, registry)
        with session_scope(services.sessions) as session:
            publish_bundle(session, bundle=strict, author="t")
        poller = ActiveVersionPoller(
            engine_source=lambda: services.policy, sessions=services.sessions
        )
        poller.poll_once()

        activated = asyncio.Event()

        async def burst() -> list[Outcome]:
            outcomes = []
            while not activated.is_set() or len(outcomes) < 20:
                outcomes.append(await decide_once(services, str(image)))
            for _ in range(20):  # and some after the activation
                outcomes.append(await decide_once(services, str(image)))
            return outcomes

        def publish_and_load() -> None:
            with session_scope(services.sessions) as session:
                publish_bundle(session, bundle=lenient, author="t")
            poller.poll_once()

        async def activate_midway() -> None:
            await asyncio.sleep(0.05)
            await asyncio.to_thread(publish_and_load)
            activated.set()

        outcomes, _ = await asyncio.gather(burst(), activate_midway())

        seen = {(o.policy_version, o.policy_revision, o.allowed) for o in outcomes}
        assert seen <= {(1, strict.content_hash, False), (2, lenient.content_hash, True)}
        assert len(seen) == 2, "the activation happened during the burst"
        time.sleep(0.2)  # the recorder writes in batches
        services.decisions.recorder.close()  # type: ignore[union-attr]
        from sqlalchemy import select

        from app.db.models import Decision

        with session_scope(services.sessions) as session:
            rows = session.execute(
                select(Decision.policy_version, Decision.policy_revision, Decision.allowed)
            ).all()
        assert {tuple(r) for r in rows} == seen
