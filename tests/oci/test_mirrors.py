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

import base64
import json
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
from tests.fixtures.standins import HostileRegistryStandIn, StandInResponse
from tests.fixtures.tls import TlsFiles


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
            **{"docker_config": None, "registry_retries": 0, **settings},
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


async def test_a_mirror_trusts_its_own_ca(
    upstream: RegistryProcess, plain: RegistryClient, tls_files: TlsFiles
) -> None:
    image, manifest = await push_random_image(plain, f"{upstream.host}/team/app")
    with HostileRegistryStandIn(tls=tls_files) as tls_mirror:
        tls_mirror.routes[("GET", f"/v2/team/app/manifests/{image.digest}")] = StandInResponse(
            headers={"Content-Type": manifest.media_type}, body=manifest.raw
        )
        trusting = through(
            upstream.host, {"location": tls_mirror.host, "ca": str(tls_files.ca_cert)}
        )
        untrusting = through(upstream.host, tls_mirror.host)
        try:
            with served_from() as trusted_sources:
                await trusting.get_manifest(image)
            with served_from() as untrusted_sources:
                await untrusting.get_manifest(image)
        finally:
            await trusting.aclose()
            await untrusting.aclose()
    assert trusted_sources == [f"{tls_mirror.host}/team/app"]
    assert untrusted_sources == [image.name]  # the certificate did not verify: skipped


async def test_a_mirror_gets_the_credentials_entry_it_names(
    upstream: RegistryProcess,
    auth_registry: RegistryProcess,
    plain: RegistryClient,
    tmp_path: Path,
) -> None:
    image, _ = await push_random_image(plain, f"{upstream.host}/team/app")
    async with registry_client(auth_registry, credentials=True) as filler:
        await mirror_image(filler, image, f"{auth_registry.host}/cache/team/app")
    pair = base64.b64encode(f"{auth_registry.username}:{auth_registry.password}".encode())
    docker_config = tmp_path / "config.json"
    docker_config.write_text(json.dumps({"auths": {"robot.mirror": {"auth": pair.decode()}}}))
    stop_registry(upstream)
    location = f"{auth_registry.host}/cache"
    named = RegistryClient.from_settings(
        load_settings(
            registry_mirrors={
                upstream.host: {"mirror": [{"location": location, "credentials": "robot.mirror"}]}
            },
            docker_config=docker_config,
            registry_retries=0,
        )
    )
    unnamed = through(upstream.host, location, docker_config=docker_config)
    try:
        assert (await named.get_manifest(image)).digest == image.digest
        with pytest.raises(RegistryError) as refused:
            await unnamed.get_manifest(image)
    finally:
        await named.aclose()
        await unnamed.aclose()
    # Without it the mirror's host has no entry: 401 there, and the upstream is stopped.
    assert refused.value.code == "registry.unreachable"
    assert "401 Unauthorized" in refused.value.message
