"""The registry client against a real ``docker-registry`` process (distribution 2.8)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import pytest
from sqlalchemy import Engine

from app.errors import InputError, RegistryError
from app.oci import media
from app.oci.client import RegistryClient
from app.oci.digests import compute_digest, fallback_tag
from app.oci.locks import PostgresIndexLock
from app.oci.refs import ImageRef
from tests.fixtures.images import (
    push_multiplatform_index,
    push_random_image,
    registry_client,
)
from tests.fixtures.registry import RegistryProcess
from tests.fixtures.standins import (
    CountingProxyStandIn,
    HostileRegistryStandIn,
    StandInRequest,
    StandInResponse,
)

ARTIFACT = "application/vnd.example.sealgate.test+json"


class TestResolveAndFetch:
    async def test_resolve_tag_to_the_pushed_digest(
        self, oci_client: RegistryClient, unique_repo: Callable[[str], str]
    ) -> None:
        ref, manifest = await push_random_image(oci_client, unique_repo("app"), tag="v1")
        tag_ref = ImageRef.parse(f"{ref.name}:v1")
        assert await oci_client.resolve_digest(tag_ref) == manifest.digest
        assert manifest.digest == compute_digest(manifest.raw)

    async def test_resolve_missing_tag_is_not_found(
        self, oci_client: RegistryClient, unique_repo: Callable[[str], str]
    ) -> None:
        ref, _ = await push_random_image(oci_client, unique_repo("app"))
        with pytest.raises(RegistryError) as caught:
            await oci_client.resolve_digest(ImageRef.parse(f"{ref.name}:nope"))
        assert caught.value.code == "registry.not_found"
        assert ref.registry in caught.value.message and ref.repository in caught.value.message

    async def test_get_manifest_by_tag_and_by_digest(
        self, oci_client: RegistryClient, unique_repo: Callable[[str], str]
    ) -> None:
        ref, pushed = await push_random_image(oci_client, unique_repo("app"), tag="v2")
        by_tag = await oci_client.get_manifest(ImageRef.parse(f"{ref.name}:v2"))
        by_digest = await oci_client.get_manifest(ImageRef.parse(f"{ref.name}@{pushed.digest}"))
        assert by_tag.raw == by_digest.raw == pushed.raw
        assert by_tag.ref.digest == pushed.digest
        assert by_digest.media_type == media.OCI_MANIFEST and not by_digest.is_index
        assert by_digest.config is not None and len(by_digest.layers) == 1

    async def test_blob_round_trip(
        self, oci_client: RegistryClient, unique_repo: Callable[[str], str]
    ) -> None:
        ref, manifest = await push_random_image(oci_client, unique_repo("app"))
        assert manifest.config is not None
        config = json.loads(await oci_client.get_blob(ref, manifest.config.digest))
        assert config["os"] == "linux" and config["architecture"] == "amd64"

    async def test_blob_read_cap(
        self, oci_client: RegistryClient, unique_repo: Callable[[str], str]
    ) -> None:
        ref, manifest = await push_random_image(oci_client, unique_repo("app"))
        layer = manifest.layers[0]
        with pytest.raises(RegistryError) as caught:
            await oci_client.get_blob(ref, layer.digest, max_bytes=layer.size - 1)
        assert caught.value.code == "registry.too_large"

    async def test_missing_blob_is_not_found(
        self, oci_client: RegistryClient, unique_repo: Callable[[str], str]
    ) -> None:
        ref, _ = await push_random_image(oci_client, unique_repo("app"))
        with pytest.raises(RegistryError) as caught:
            await oci_client.get_blob(ref, compute_digest(b"never pushed"))
        assert caught.value.code == "registry.not_found"

    async def test_chunked_upload_above_threshold(
        self, registry: RegistryProcess, unique_repo: Callable[[str], str]
    ) -> None:
        async with registry_client(registry, chunked_upload_threshold=1024) as client:
            ref = ImageRef.parse(unique_repo("chunked"))
            data = bytes(range(256)) * 20  # 5120 bytes: five chunks
            descriptor = await client.push_blob(ref, data, media_type=media.OCI_LAYER)
            assert descriptor.size == len(data)
            assert await client.get_blob(ref, descriptor.digest) == data

    async def test_push_blob_twice_is_harmless(
        self, oci_client: RegistryClient, unique_repo: Callable[[str], str]
    ) -> None:
        ref = ImageRef.parse(unique_repo("again"))
        first = await oci_client.push_blob(ref, b"same bytes", media_type=media.OCI_LAYER)
        second = await oci_client.push_blob(ref, b"same bytes", media_type=media.OCI_LAYER)
        assert first == second

    async def test_push_manifest_rejected_when_blobs_are_missing(
        self, oci_client: RegistryClient, unique_repo: Callable[[str], str]
    ) -> None:
        ref = ImageRef.parse(unique_repo("broken"))
        missing = {"mediaType": media.OCI_IMAGE_CONFIG, "digest": compute_digest(b"x"), "size": 1}
        manifest = {
            "schemaVersion": 2,
            "mediaType": media.OCI_MANIFEST,
            "config": missing,
            "layers": [],
        }
        with pytest.raises(RegistryError) as caught:
            await oci_client.push_manifest(ref, manifest, media_type=media.OCI_MANIFEST)
        assert caught.value.code == "registry.invalid_manifest"


class TestPlatforms:
    async def test_select_each_platform_of_an_index(
        self, oci_client: RegistryClient, unique_repo: Callable[[str], str]
    ) -> None:
        ref, index = await push_multiplatform_index(oci_client, unique_repo("multi"))
        assert index.is_index and index.media_type == media.OCI_INDEX
        amd64 = await oci_client.select_platform(index)
        arm64 = await oci_client.select_platform(index, architecture="arm64", variant="v8")
        assert amd64.digest != arm64.digest
        assert {amd64.digest, arm64.digest} == {d.digest for d in index.manifests}
        assert amd64.config is not None
        config = json.loads(await oci_client.get_blob(ref, amd64.config.digest))
        assert config["architecture"] == "amd64"

    async def test_missing_platform_names_what_is_offered(
        self, oci_client: RegistryClient, unique_repo: Callable[[str], str]
    ) -> None:
        _, index = await push_multiplatform_index(oci_client, unique_repo("multi"))
        with pytest.raises(RegistryError) as caught:
            await oci_client.select_platform(index, architecture="s390x")
        assert caught.value.code == "registry.not_found"
        assert "linux/s390x" in caught.value.message and "linux/arm64/v8" in caught.value.message

    async def test_single_image_is_its_own_platform(
        self, oci_client: RegistryClient, unique_repo: Callable[[str], str]
    ) -> None:
        _, manifest = await push_random_image(oci_client, unique_repo("single"))
        assert await oci_client.select_platform(manifest) is manifest


class TestFallbackReferrers:
    """Debian's registry has no referrers API: the client keeps the ``sha256-<hex>`` tag."""

    async def test_subject_learnt_from_resolving_a_tag_is_exact(
        self, registry: RegistryProcess, unique_repo: Callable[[str], str]
    ) -> None:
        # A fresh client resolves the tag with HEAD and reuses its type and size for the
        # referrer's subject instead of fetching the manifest: it must be the real descriptor,
        # for an image manifest and for an index alike.
        async with registry_client(registry) as pusher:
            image_ref, image = await push_random_image(pusher, unique_repo("app"))
            index_ref, index = await push_multiplatform_index(pusher, unique_repo("multi"))
        for tagged, manifest in ((image_ref, image), (index_ref, index)):
            async with registry_client(registry) as client:
                by_tag = ImageRef.parse(f"{tagged.name}:{tagged.tag or 'v1'}")
                digest = await client.resolve_digest(by_tag)
                referrer = await client.push_referrer(
                    by_tag.with_digest(digest), artifact_type=ARTIFACT, layers=[], annotations={}
                )
                stored = await client.get_manifest(by_tag.with_digest(referrer.digest))
            assert stored.subject == manifest.descriptor

    async def test_a_registry_known_to_lack_the_api_is_asked_for_the_fallback_tag_only(
        self, registry: RegistryProcess, unique_repo: Callable[[str], str]
    ) -> None:
        """Fails if ``_list_referrers`` asks ``/referrers/`` again once ``has_referrers_api``
        has learnt that the registry answers it with 404."""
        async with registry_client(registry) as pusher:
            ref, _ = await push_random_image(pusher, unique_repo("app"))
            referrer = await pusher.push_referrer(
                ref, artifact_type=ARTIFACT, layers=[], annotations={}
            )
        with CountingProxyStandIn(registry) as proxy:
            proxied = ImageRef.parse(f"{proxy.host}/{ref.repository}").with_digest(ref.digest or "")
            async with registry_client(registry, insecure_registries=[proxy.host]) as client:
                assert not await client.has_referrers_api(proxied)
                listings = [await client.list_referrers(proxied) for _ in range(3)]

        assert all([d.digest for d in listed] == [referrer.digest] for listed in listings)
        asked = [path for _, path in proxy.requests if "/referrers/" in path]
        assert len(asked) == 1  # the probe

    async def test_no_referrers_is_an_empty_list(
        self, oci_client: RegistryClient, unique_repo: Callable[[str], str]
    ) -> None:
        ref, _ = await push_random_image(oci_client, unique_repo("app"))
        assert await oci_client.list_referrers(ref) == []

    async def test_push_and_list_a_referrer(
        self, oci_client: RegistryClient, unique_repo: Callable[[str], str]
    ) -> None:
        ref, image = await push_random_image(oci_client, unique_repo("app"))
        referrer = await oci_client.push_referrer(
            ref,
            artifact_type=ARTIFACT,
            layers=[(b'{"hello":1}', "application/json", {"org.example.layer": "one"})],
            annotations={"org.example.kind": "test"},
        )
        listed = await oci_client.list_referrers(ref)
        assert [d.digest for d in listed] == [referrer.digest]
        assert listed[0].artifact_type == ARTIFACT
        assert listed[0].annotations == {"org.example.kind": "test"}
        stored = await oci_client.get_manifest(ref.with_digest(referrer.digest))
        assert stored.subject == image.descriptor
        assert stored.artifact_type == ARTIFACT
        assert stored.config == media.EMPTY_CONFIG
        assert stored.layers[0].annotations == {"org.example.layer": "one"}
        tag_index = await oci_client.get_manifest(ref.with_tag(fallback_tag(image.digest)))
        assert tag_index.media_type == media.OCI_INDEX

    async def test_artifact_type_filter_and_no_duplicates(
        self, oci_client: RegistryClient, unique_repo: Callable[[str], str]
    ) -> None:
        ref, _ = await push_random_image(oci_client, unique_repo("app"))
        layers: list[tuple[bytes, str, dict[str, str]]] = [(b"{}", "application/json", {})]
        first = await oci_client.push_referrer(
            ref, artifact_type=ARTIFACT, layers=layers, annotations={}
        )
        again = await oci_client.push_referrer(
            ref, artifact_type=ARTIFACT, layers=layers, annotations={}
        )
        other = await oci_client.push_referrer(
            ref, artifact_type="application/vnd.example.other", layers=layers, annotations={}
        )
        assert first.digest == again.digest
        everything = await oci_client.list_referrers(ref)
        assert sorted(d.digest for d in everything) == sorted([first.digest, other.digest])
        only = await oci_client.list_referrers(ref, artifact_type=ARTIFACT)
        assert [d.digest for d in only] == [first.digest]
        index = await oci_client.referrers_index(ref, artifact_type=ARTIFACT)
        assert index["mediaType"] == media.OCI_INDEX
        assert [m["digest"] for m in index["manifests"]] == [first.digest]

    async def _race(self, first: RegistryClient, second: RegistryClient, repo: str) -> None:
        ref, _ = await push_random_image(first, repo)
        pushed = await asyncio.gather(
            *(
                w.push_referrer(
                    ref,
                    artifact_type=ARTIFACT,
                    layers=[(f"writer {i} referrer {n}".encode(), "text/plain", {})],
                    annotations={"writer": str(i)},
                )
                for n in range(4)
                for i, w in enumerate((first, second))
            )
        )
        listed = await first.list_referrers(ref)
        assert sorted(d.digest for d in listed) == sorted(d.digest for d in pushed)

    async def test_replicas_sharing_postgresql_take_turns(
        self, registry: RegistryProcess, unique_repo: Callable[[str], str], test_engine: Engine
    ) -> None:
        # Two clients as two replicas would be: no in-process lock in common, only the
        # database's advisory lock, and no settle delay at all.
        if test_engine.dialect.name != "postgresql":
            pytest.skip("advisory locks need PostgreSQL")
        async with (
            registry_client(registry, index_lock=PostgresIndexLock(test_engine)) as first,
            registry_client(registry, index_lock=PostgresIndexLock(test_engine)) as second,
        ):
            assert first.fallback_settle_seconds == 0
            await self._race(first, second, unique_repo("race"))

    async def test_invalid_fallback_index_means_no_referrers(
        self,
        oci_client: RegistryClient,
        unique_repo: Callable[[str], str],
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        ref, image = await push_random_image(oci_client, unique_repo("app"))
        # A plain image manifest under the fallback tag is not an index.
        _, other = await push_random_image(oci_client, ref.name, tag=None)
        await oci_client.push_manifest(
            ref, other.raw, media_type=other.media_type, tag=fallback_tag(image.digest)
        )
        assert await oci_client.list_referrers(ref) == []
        assert "not an OCI index" in caplog.text

    async def test_listing_needs_a_digest(self, oci_client: RegistryClient) -> None:
        with pytest.raises(InputError):
            await oci_client.list_referrers(ImageRef.parse("127.0.0.1:1/a:tag"))

    async def test_referrers_cap(
        self, registry: RegistryProcess, unique_repo: Callable[[str], str]
    ) -> None:
        async with registry_client(registry, max_referrers=2) as client:
            ref, _ = await push_random_image(client, unique_repo("cap"))
            for i in range(3):
                await client.push_referrer(
                    ref,
                    artifact_type=ARTIFACT,
                    layers=[(str(i).encode(), "text/plain", {})],
                    annotations={},
                )
            assert len(await client.list_referrers(ref)) == 2


class TestAuthRegistry:
    async def test_basic_credentials_from_settings(
        self, auth_registry: RegistryProcess, unique_repo: Callable[[str], str]
    ) -> None:
        async with registry_client(
            auth_registry,
            credentials=True,
        ) as client:
            ref, manifest = await push_random_image(client, f"{auth_registry.host}/team/app")
            assert await client.resolve_digest(ImageRef.parse(f"{ref.name}:v1")) == manifest.digest

    async def test_basic_credentials_from_docker_config(
        self, auth_registry: RegistryProcess, tmp_path: pytest.TempPathFactory
    ) -> None:
        import base64
        from pathlib import Path

        config = Path(str(tmp_path)) / "config.json"
        pair = base64.b64encode(f"{auth_registry.username}:{auth_registry.password}".encode())
        config.write_text(json.dumps({"auths": {auth_registry.host: {"auth": pair.decode()}}}))
        async with registry_client(auth_registry, docker_config=config) as client:
            ref, manifest = await push_random_image(client, f"{auth_registry.host}/team/cfg")
            assert (await client.get_manifest(ref)).digest == manifest.digest

    async def test_no_credentials_is_a_clear_401(self, auth_registry: RegistryProcess) -> None:
        async with registry_client(auth_registry) as client:
            with pytest.raises(RegistryError) as caught:
                await client.resolve_digest(ImageRef.parse(f"{auth_registry.host}/team/app:v1"))
            assert caught.value.code == "registry.unauthorized"
            assert "no credentials are configured" in caught.value.message
            assert auth_registry.host in caught.value.message

    async def test_wrong_password_is_refused(self, auth_registry: RegistryProcess) -> None:
        async with registry_client(
            auth_registry,
            registry_username="sealgate",
            registry_password="wrong",
            registry_credentials_host=auth_registry.host,
        ) as client:
            with pytest.raises(RegistryError) as caught:
                await client.resolve_digest(ImageRef.parse(f"{auth_registry.host}/team/app:v1"))
            assert caught.value.code == "registry.unauthorized"
            assert "credentials were refused" in caught.value.message

    async def test_credentials_are_never_sent_to_another_registry(
        self,
        auth_registry: RegistryProcess,
        hostile_registry: HostileRegistryStandIn,
    ) -> None:
        presented: list[str | None] = []

        def ask_for_basic_auth(request: StandInRequest) -> StandInResponse:
            presented.append(request.headers.get("authorization"))
            return StandInResponse.json(
                {"errors": [{"code": "UNAUTHORIZED", "message": "log in"}]},
                status=401,
                **{"WWW-Authenticate": 'Basic realm="attacker"'},
            )

        hostile_registry.routes[("GET", "/v2/evil/app/manifests/v1")] = ask_for_basic_auth
        async with registry_client(auth_registry, credentials=True) as client:
            with pytest.raises(RegistryError) as caught:
                await client.resolve_digest(ImageRef.parse(f"{hostile_registry.host}/evil/app:v1"))
            assert caught.value.code == "registry.unauthorized"
            # The configured registry still gets them.
            ref, manifest = await push_random_image(client, f"{auth_registry.host}/team/scoped")
            assert (await client.get_manifest(ref)).digest == manifest.digest
        assert presented, "the stand-in was never asked"
        assert presented == [None] * len(presented)


class TestUnreachable:
    async def test_closed_port_fails_fast_as_unreachable(self, registry: RegistryProcess) -> None:
        from tests.fixtures.registry import free_port

        host = f"127.0.0.1:{free_port()}"
        async with registry_client(registry, registry_retries=1) as client:
            with pytest.raises(RegistryError) as caught:
                await client.resolve_digest(ImageRef.parse(f"{host}/a/b:v1"))
            assert caught.value.code == "registry.unreachable"
            assert host in caught.value.message

    async def test_plain_http_only_for_loopback_and_listed_hosts(
        self, registry: RegistryProcess
    ) -> None:
        async with registry_client(registry, insecure_registries=["reg.internal:5000"]) as client:
            assert client.plain_http_allowed("localhost:5000")
            assert client.plain_http_allowed("127.0.0.7:80")
            assert client.plain_http_allowed("[::1]:5000")
            assert client.plain_http_allowed("reg.internal:5000")
            assert not client.plain_http_allowed("reg.internal:5001")
            assert not client.plain_http_allowed("ghcr.io")
            assert not client.plain_http_allowed("10.0.0.1:5000")
