"""Reads through mirrors, against real registries: an upstream, a mirror filled as a pull-
through cache would be, and stand-ins for a mirror that lies and one that hangs.

What is shown: a read naming the upstream is served by the mirror (the upstream stopped),
keeps the upstream name, and says who served it; a mirror missing something (404, an empty
referrer listing) hands over to the next endpoint; a mirror serving other bytes under a
digest is skipped, and with the upstream switched off the read fails with
``registry.digest_mismatch``; a hanging mirror is skipped within its share of the time and
then asked last; a pull-only mirror never resolves tags; writes never go to a mirror.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from app.config import load_settings
from app.errors import RegistryError
from app.oci import budget
from app.oci.client import RegistryClient
from app.oci.digests import fallback_tag
from app.oci.mirrors import served_from
from app.oci.refs import ImageRef
from tests.fixtures.faulty import SilentRegistryStandIn, refused_host
from tests.fixtures.images import push_random_image, registry_client
from tests.fixtures.mirrors import SubstitutingMirrorStandIn, mirror_image
from tests.fixtures.registry import RegistryProcess, start_registry, stop_registry


@pytest.fixture(scope="module")
def mirror(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryProcess]:
    reg = start_registry(tmp_path_factory.mktemp("mirror"))
    yield reg
    stop_registry(reg)


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[RegistryProcess]:
    """An upstream of its own, so that a test may stop it."""
    reg = start_registry(tmp_path / "upstream")
    yield reg
    stop_registry(reg)


@pytest.fixture
async def plain(upstream: RegistryProcess) -> AsyncIterator[RegistryClient]:
    """A client without mirrors, to fill the registries."""
    async with registry_client(upstream) as client:
        yield client


def through(
    upstream: str, *locations: str | dict[str, Any], use_upstream: bool = True, **settings: Any
) -> RegistryClient:
    mirrors = [{"location": x} if isinstance(x, str) else x for x in locations]
    return RegistryClient.from_settings(
        load_settings(
            registry_mirrors={upstream: {"mirror": mirrors, "upstream": use_upstream}},
            docker_config=None,
            registry_retries=0,
            **settings,
        )
    )


async def test_the_mirror_serves_an_upstream_name_while_the_upstream_is_stopped(
    upstream: RegistryProcess, mirror: RegistryProcess, plain: RegistryClient
) -> None:
    image, manifest = await push_random_image(plain, f"{upstream.host}/team/app")
    await mirror_image(plain, image, f"{mirror.host}/cache/team/app")
    stop_registry(upstream)
    client = through(upstream.host, f"{mirror.host}/cache")
    try:
        with served_from() as sources:
            assert await client.resolve_digest(image.with_tag("v1")) == image.digest
            fetched = await client.get_manifest(image)
            blob = await client.get_blob(image, manifest.layers[0].digest)
    finally:
        await client.aclose()
    assert fetched.raw == manifest.raw
    assert fetched.ref.name == image.name  # the identity stays the upstream's
    assert len(blob) == manifest.layers[0].size
    assert sources == [f"{mirror.host}/cache/team/app"]


async def test_a_mirror_without_the_content_hands_over_to_the_upstream(
    upstream: RegistryProcess, mirror: RegistryProcess, plain: RegistryClient
) -> None:
    image, _ = await push_random_image(plain, f"{upstream.host}/only/upstream")
    client = through(upstream.host, f"{mirror.host}/cache")
    try:
        with served_from() as sources:
            fetched = await client.get_manifest(image)
    finally:
        await client.aclose()
    assert fetched.digest == image.digest
    assert sources == [image.name]


async def test_an_empty_referrer_listing_on_a_mirror_is_not_the_answer(
    upstream: RegistryProcess, mirror: RegistryProcess, plain: RegistryClient
) -> None:
    # The mirror has the image but not its referrers (a proxy cache that keeps none).
    image, _ = await push_random_image(plain, f"{upstream.host}/team/listed")
    await mirror_image(plain, image, f"{mirror.host}/cache/team/listed")
    pushed = await plain.push_referrer(
        image,
        artifact_type="application/example",
        layers=[(b"x", "text/plain", {})],
        annotations={},
    )
    client = through(upstream.host, f"{mirror.host}/cache")
    try:
        listed = await client.list_referrers(image)
    finally:
        await client.aclose()
    assert [d.digest for d in listed] == [pushed.digest]


@pytest.mark.parametrize("blobs", [False, True], ids=["manifest", "blob"])
async def test_a_mirror_serving_other_bytes_under_the_digest_is_skipped(
    upstream: RegistryProcess,
    mirror: RegistryProcess,
    plain: RegistryClient,
    blobs: bool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    image, manifest = await push_random_image(plain, f"{upstream.host}/team/app")
    await mirror_image(plain, image, f"{mirror.host}/team/app")
    layer = manifest.layers[0].digest
    with SubstitutingMirrorStandIn(mirror, blobs=blobs) as liar:
        client = through(upstream.host, liar.host)
        try:
            with caplog.at_level(logging.ERROR, logger="app.oci.client"):
                fetched = await client.get_manifest(image)
                data = await client.get_blob(image, layer)
        finally:
            await client.aclose()
        assert liar.substituted >= 1
    assert fetched.raw == manifest.raw
    assert len(data) == manifest.layers[0].size
    assert any(r.__dict__.get("code") == "registry.digest_mismatch" for r in caplog.records)


async def test_with_the_upstream_switched_off_other_bytes_fail_closed(
    upstream: RegistryProcess, mirror: RegistryProcess, plain: RegistryClient
) -> None:
    image, manifest = await push_random_image(plain, f"{upstream.host}/team/app")
    await mirror_image(plain, image, f"{mirror.host}/team/app")
    with SubstitutingMirrorStandIn(mirror, blobs=True) as liar:
        client = through(upstream.host, liar.host, use_upstream=False)
        try:
            with pytest.raises(RegistryError) as manifest_error:
                await client.get_manifest(image)
            with pytest.raises(RegistryError) as blob_error:
                await client.get_blob(image, manifest.layers[0].digest)
        finally:
            await client.aclose()
    assert manifest_error.value.code == "registry.digest_mismatch"
    assert blob_error.value.code == "registry.digest_mismatch"
    assert upstream.host in manifest_error.value.message  # named as asked for


async def test_a_hanging_mirror_is_skipped_within_its_share_then_asked_last(
    upstream: RegistryProcess, mirror: RegistryProcess, plain: RegistryClient
) -> None:
    image, _ = await push_random_image(plain, f"{upstream.host}/team/app")
    await mirror_image(plain, image, f"{mirror.host}/team/app")
    stop_registry(upstream)
    with SilentRegistryStandIn() as silent:
        client = through(upstream.host, silent.host, mirror.host, registry_request_timeout=5.0)
        try:
            started = time.monotonic()
            with budget.within(2.0), served_from() as sources:
                fetched = await client.get_manifest(image)
            first = time.monotonic() - started
            connections = silent.connections
            started = time.monotonic()
            await client.get_manifest(image.with_tag("v1"))
            second = time.monotonic() - started
        finally:
            await client.aclose()
        # Three endpoints and 2 s: the silent one had at most a third of them.
        assert first < 2.0 / 3 + 0.5
        assert fetched.digest == image.digest
        assert sources == [f"{mirror.host}/team/app"]
        assert second < 0.5 and silent.connections == connections


async def test_an_unreachable_mirror_is_skipped(
    upstream: RegistryProcess, plain: RegistryClient
) -> None:
    image, _ = await push_random_image(plain, f"{upstream.host}/team/app")
    client = through(upstream.host, refused_host())
    try:
        assert (await client.get_manifest(image)).digest == image.digest
    finally:
        await client.aclose()


async def test_a_pull_only_mirror_never_resolves_a_tag(
    upstream: RegistryProcess, mirror: RegistryProcess, plain: RegistryClient
) -> None:
    # The mirror's v1 points elsewhere: whoever resolves the tag chooses what is verified.
    image, _ = await push_random_image(plain, f"{upstream.host}/team/app")
    other, _ = await push_random_image(plain, f"{mirror.host}/team/app")
    await mirror_image(plain, image, f"{mirror.host}/team/app", tag=None)
    pull_only = {"location": mirror.host, "capabilities": ["pull"]}
    resolving = through(upstream.host, mirror.host)
    digest_only = through(upstream.host, pull_only)
    air_gapped = through(upstream.host, pull_only, use_upstream=False)
    tag = ImageRef.parse(f"{upstream.host}/team/app:v1")
    try:
        assert await resolving.resolve_digest(tag) == other.digest
        assert await digest_only.resolve_digest(tag) == image.digest
        with pytest.raises(RegistryError) as refused:
            await air_gapped.resolve_digest(tag)
        # Digests and evidence tags still come through it.
        assert (await air_gapped.get_manifest(image)).digest == image.digest
        assert await air_gapped.list_referrers(image) == []
    finally:
        for client in (resolving, digest_only, air_gapped):
            await client.aclose()
    assert refused.value.code == "registry.not_allowed"
    assert "digest" in refused.value.message


async def test_writes_never_go_to_a_mirror(
    upstream: RegistryProcess, mirror: RegistryProcess, plain: RegistryClient
) -> None:
    image, _ = await push_random_image(plain, f"{upstream.host}/team/app")
    copy = await mirror_image(plain, image, f"{mirror.host}/team/app")
    client = through(upstream.host, mirror.host)
    try:
        pushed = await client.push_referrer(
            image,
            artifact_type="application/example",
            layers=[(b"y", "text/plain", {})],
            annotations={},
        )
    finally:
        await client.aclose()
    assert [d.digest for d in await plain.list_referrers(image)] == [pushed.digest]
    assert await plain.list_referrers(copy) == []
    with pytest.raises(RegistryError):
        await plain.get_manifest(copy.with_tag(fallback_tag(image.digest or "")))


async def test_a_link_local_mirror_is_refused_and_skipped(
    upstream: RegistryProcess, plain: RegistryClient, caplog: pytest.LogCaptureFixture
) -> None:
    image, _ = await push_random_image(plain, f"{upstream.host}/team/app")
    client = through(upstream.host, "169.254.169.254")
    try:
        with caplog.at_level(logging.WARNING, logger="app.oci.client"):
            assert (await client.get_manifest(image)).digest == image.digest
    finally:
        await client.aclose()
    assert [r.__dict__.get("code") for r in caplog.records if r.name == "app.oci.client"] == [
        "registry.not_allowed"
    ]
