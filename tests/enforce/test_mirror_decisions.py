"""Admission decisions through mirrors, end to end: real registries (upstream and mirror),
real PostgreSQL, Sealgate's own signing, the default policy library, a stored authority.

The image is signed in the upstream and copied with its evidence to the mirror as a pull-
through cache holds it; the upstream is then stopped. A decision naming the upstream is
made on evidence read through the mirror, under the upstream's name (the authority's scope
and the signature's docker-reference both name the upstream), and the input and the
record say which endpoint served it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from app.auth.scopes import Scope
from app.auth.tokens import Principal
from app.db.models import Decision
from app.db.session import session_scope
from app.enforce.deadline import Deadline
from app.enforce.outcome import DecisionRequest, Outcome
from app.enforce.pipeline import decide_and_store
from app.enforce.sign import sign_image
from app.oci.refs import ImageRef
from app.policy.input import Entrypoint, assumed_kubernetes
from app.services import Services
from tests.enforce.conftest import ServicesFactory, recorded_input, trust_new_key
from tests.fixtures.faulty import SilentRegistryStandIn
from tests.fixtures.images import push_random_image
from tests.fixtures.mirrors import SubstitutingMirrorStandIn, mirror_image
from tests.fixtures.registry import RegistryProcess, start_registry, stop_registry

ADMIN = Principal(name="test", scopes=(Scope.parse("admin"),))
DEADLINE = 4.0
SLACK = 0.5


@pytest.fixture(scope="module")
def mirror(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryProcess]:
    reg = start_registry(tmp_path_factory.mktemp("mirror"))
    yield reg
    stop_registry(reg)


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[RegistryProcess]:
    reg = start_registry(tmp_path / "upstream")
    yield reg
    stop_registry(reg)


async def signed_upstream_image(
    services: Services, upstream: RegistryProcess, mirror_repo: str | None
) -> ImageRef:
    """An image signed in ``upstream`` (key ``ci``, an authority for the upstream's images),
    copied with its evidence to ``mirror_repo`` (``host/path``) when given."""
    trust_new_key(services, scope=f"{upstream.host}/**")
    image, _ = await push_random_image(services.registry, f"{upstream.host}/team/app")
    await sign_image(services, image=str(image), principal=ADMIN, key_name="ci")
    if mirror_repo is not None:
        await mirror_image(services.registry, image, mirror_repo)
    return image


async def admit(services: Services, image: str) -> tuple[Outcome, float, Decision]:
    request = DecisionRequest(
        image=image,
        entrypoint=Entrypoint.admission,
        deadline=Deadline(DEADLINE),
        kubernetes=assumed_kubernetes(Entrypoint.admission, "default"),
    )
    started = time.monotonic()
    outcome, record_id = await decide_and_store(request, services.decisions)
    elapsed = time.monotonic() - started
    with session_scope(services.sessions) as session:
        record = session.scalars(select(Decision).where(Decision.id == record_id)).one()
        session.expunge(record)
    return outcome, elapsed, record


def mirrored(upstream: RegistryProcess, *locations: str, use_upstream: bool = True) -> Any:
    return {
        upstream.host: {"mirror": [{"location": x} for x in locations], "upstream": use_upstream}
    }


async def test_admitted_through_the_mirror_while_the_upstream_is_stopped(
    upstream: RegistryProcess, mirror: RegistryProcess, make_services: ServicesFactory
) -> None:
    plain = make_services()
    image = await signed_upstream_image(plain, upstream, f"{mirror.host}/cache/team/app")
    stop_registry(upstream)
    services = make_services(registry_mirrors=mirrored(upstream, f"{mirror.host}/cache"))

    outcome, _, record = await admit(services, f"{upstream.host}/team/app:v1")

    assert outcome.allowed, outcome.decision
    assert outcome.digest == image.digest
    document = outcome.full_input()
    assert document["image"]["registry"] == upstream.host  # the identity is the upstream's
    assert document["signatures"][0]["authority"] == "ci"
    assert document["image"]["served_by"] == [f"{mirror.host}/cache/team/app"]
    assert outcome.served_by == (f"{mirror.host}/cache/team/app",)
    assert record.served_by == [f"{mirror.host}/cache/team/app"]
    assert record.image == f"{upstream.host}/team/app:v1"
    assert recorded_input(services, record)["image"]["served_by"] == [
        f"{mirror.host}/cache/team/app"
    ]


async def test_without_the_mirror_the_same_decision_fails_closed(
    upstream: RegistryProcess, mirror: RegistryProcess, make_services: ServicesFactory
) -> None:
    plain = make_services()
    await signed_upstream_image(plain, upstream, f"{mirror.host}/cache/team/app")
    stop_registry(upstream)

    outcome, _, record = await admit(make_services(), f"{upstream.host}/team/app:v1")

    assert not outcome.allowed and outcome.failure == "registry.unreachable"
    assert outcome.served_by is None and record.served_by is None


async def test_a_substituting_mirror_is_skipped_for_the_upstream(
    upstream: RegistryProcess, mirror: RegistryProcess, make_services: ServicesFactory
) -> None:
    plain = make_services()
    image = await signed_upstream_image(plain, upstream, f"{mirror.host}/team/app")
    with SubstitutingMirrorStandIn(mirror, blobs=True) as liar:
        services = make_services(registry_mirrors=mirrored(upstream, liar.host))
        outcome, _, _ = await admit(services, str(image))
        assert liar.substituted >= 1
    assert outcome.allowed, outcome.decision
    # Everything came from the image's own repository in the end.
    assert "served_by" not in outcome.full_input()["image"]
    assert outcome.served_by is None


async def test_a_substituting_mirror_alone_is_refused(
    upstream: RegistryProcess, mirror: RegistryProcess, make_services: ServicesFactory
) -> None:
    plain = make_services()
    image = await signed_upstream_image(plain, upstream, f"{mirror.host}/team/app")
    stop_registry(upstream)
    with SubstitutingMirrorStandIn(mirror) as liar:
        services = make_services(registry_mirrors=mirrored(upstream, liar.host))
        outcome, _, record = await admit(services, str(image))
    assert not outcome.allowed
    assert outcome.failure == "registry.digest_mismatch"
    assert record.failure == "registry.digest_mismatch"


async def test_a_hanging_mirror_is_skipped_within_the_deadline(
    upstream: RegistryProcess, mirror: RegistryProcess, make_services: ServicesFactory
) -> None:
    plain = make_services()
    await signed_upstream_image(plain, upstream, f"{mirror.host}/team/app")
    stop_registry(upstream)
    with SilentRegistryStandIn() as silent:
        services = make_services(
            registry_mirrors=mirrored(upstream, silent.host, mirror.host),
            registry_request_timeout=DEADLINE,
        )
        outcome, elapsed, record = await admit(services, f"{upstream.host}/team/app:v1")
        assert silent.connections >= 1
    assert elapsed < DEADLINE + SLACK, f"took {elapsed:.2f} s"
    assert outcome.allowed, outcome.decision
    assert record.served_by == [f"{mirror.host}/team/app"]
