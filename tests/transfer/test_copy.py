"""``copy_image`` between two real registries: everything attached arrives with the same
digests, skopeo reads the result, a second run resumes, blobs are mounted within a registry,
``--platform`` keeps the index's signatures, and bytes that do not match are refused."""

from __future__ import annotations

import hashlib
import json
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable

import pytest

from app.errors import InputError, RegistryError
from app.oci.client import RegistryClient
from app.oci.descriptor import Descriptor
from app.oci.digests import fallback_tag
from app.oci.refs import ImageRef
from app.transfer.copy import copy_image
from app.transfer.graph import Platform
from app.transfer.progress import BlobOutcome
from tests.fixtures.images import registry_client
from tests.fixtures.registry import RegistryProcess
from tests.fixtures.standins import ProxyStandIn, StandInRequest, StandInResponse
from tests.fixtures.transfer import push_attached_image


def skopeo(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("skopeo")
    if binary is None:
        pytest.fail("skopeo is not installed: run `sudo apt-get install skopeo`")
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=60, check=False)


def site_repo(site: RegistryProcess, source: str) -> ImageRef:
    return ImageRef.parse(f"{site.host}/copies/{source.split('/', 1)[1]}:multi")


class TestCopyEverythingAttached:
    async def test_index_platforms_referrers_and_legacy_tags_arrive_unchanged(
        self,
        transfer_client: RegistryClient,
        site_registry: RegistryProcess,
        unique_repo: Callable[[str], str],
    ) -> None:
        attached = await push_attached_image(transfer_client, unique_repo("app"))
        destination = site_repo(site_registry, attached.index.name)

        report = await copy_image(
            transfer_client, source=attached.index.with_tag("multi"), destination=destination
        )

        client = transfer_client
        assert await client.resolve_digest(destination) == attached.index.digest
        for child in attached.children:
            assert await client.has_manifest(destination.with_digest(child))
        assert attached.index.digest is not None
        listed = await client.list_referrers(destination.with_digest(attached.index.digest))
        assert [d.digest for d in listed] == [attached.bundle.digest]
        assert listed[0].artifact_type == attached.bundle.artifact_type
        scans = await client.list_referrers(destination.with_digest(attached.children[0]))
        assert [d.digest for d in scans] == [attached.scan.digest]
        # distribution 2.8 has no referrers API: the fallback index was rebuilt there.
        fallback = await client.get_manifest(
            destination.with_tag(fallback_tag(attached.index.digest))
        )
        assert [d.digest for d in fallback.manifests] == [attached.bundle.digest]
        source_sig = await client.get_manifest(attached.index.with_tag(attached.signature_tag))
        copied_sig = await client.get_manifest(destination.with_tag(attached.signature_tag))
        assert copied_sig.digest == source_sig.digest
        assert report.referrers == 2 and report.legacy_tags == 1
        assert report.platforms == ("linux/amd64", "linux/arm64/v8")
        assert report.blobs[BlobOutcome.copied] > 0
        assert report.remap_identity == f"{site_registry.host}/copies={attached.index.registry}"

    async def test_skopeo_reads_what_copy_pushed(
        self,
        transfer_client: RegistryClient,
        site_registry: RegistryProcess,
        unique_repo: Callable[[str], str],
    ) -> None:
        attached = await push_attached_image(transfer_client, unique_repo("app"))
        destination = site_repo(site_registry, attached.index.name)
        await copy_image(
            transfer_client, source=attached.index.with_tag("multi"), destination=destination
        )
        where = f"docker://{destination}"

        raw = skopeo("inspect", "--tls-verify=false", "--raw", where)
        arm = skopeo(
            "inspect",
            "--tls-verify=false",
            "--override-arch",
            "arm64",
            "--override-variant",
            "v8",
            where,
        )

        assert raw.returncode == 0, raw.stderr
        assert "sha256:" + hashlib.sha256(raw.stdout.encode()).hexdigest() == attached.index.digest
        assert arm.returncode == 0, arm.stderr
        inspected = json.loads(arm.stdout)
        assert inspected["Architecture"] == "arm64"
        arm_manifest = await transfer_client.get_manifest(
            destination.with_digest(attached.children[1])
        )
        assert inspected["Layers"] == [d.digest for d in arm_manifest.layers]

    async def test_a_second_run_resumes_and_skips_what_is_there(
        self,
        transfer_client: RegistryClient,
        site_registry: RegistryProcess,
        unique_repo: Callable[[str], str],
    ) -> None:
        attached = await push_attached_image(transfer_client, unique_repo("app"))
        destination = site_repo(site_registry, attached.index.name)

        class Interrupt(Exception):
            pass

        class StopAfterTwoBlobs:
            done = 0

            def expect(self, *, blobs: int, total_bytes: int) -> None:
                pass

            def blob_done(self, blob: Descriptor, outcome: BlobOutcome) -> None:
                self.done += 1
                if self.done == 2:
                    raise Interrupt

            def note(self, text: str) -> None:
                pass

        source = attached.index.with_tag("multi")
        with pytest.raises(Interrupt):
            await copy_image(
                transfer_client,
                source=source,
                destination=destination,
                progress=StopAfterTwoBlobs(),
                concurrency=1,
            )
        with pytest.raises(RegistryError):  # interrupted before any manifest
            await transfer_client.resolve_digest(destination)

        # A fresh client: nothing remembered from the first run.
        async with registry_client(site_registry) as fresh:
            again = await copy_image(fresh, source=source, destination=destination)
            third = await copy_image(fresh, source=source, destination=destination)

        assert again.blobs[BlobOutcome.present] == 2
        assert again.blobs[BlobOutcome.copied] > 0
        assert await transfer_client.resolve_digest(destination) == attached.index.digest
        assert third.blobs[BlobOutcome.copied] == 0
        assert (
            third.blobs[BlobOutcome.present]
            == again.blobs[BlobOutcome.present] + again.blobs[BlobOutcome.copied]
        )
        assert third.bytes_sent == 0

    async def test_blobs_are_mounted_within_one_registry(
        self, transfer_client: RegistryClient, unique_repo: Callable[[str], str]
    ) -> None:
        attached = await push_attached_image(transfer_client, unique_repo("app"))
        destination = ImageRef.parse(unique_repo("mounted")).with_tag("multi")

        report = await copy_image(
            transfer_client, source=attached.index.with_tag("multi"), destination=destination
        )

        assert report.blobs[BlobOutcome.mounted] > 0
        assert report.blobs[BlobOutcome.copied] == 0
        assert await transfer_client.resolve_digest(destination) == attached.index.digest


class TestPlatformSelection:
    async def test_one_platform_is_tagged_and_the_index_signatures_are_kept(
        self,
        transfer_client: RegistryClient,
        site_registry: RegistryProcess,
        unique_repo: Callable[[str], str],
    ) -> None:
        attached = await push_attached_image(transfer_client, unique_repo("app"))
        destination = site_repo(site_registry, attached.index.name)
        assert attached.index.digest is not None

        report = await copy_image(
            transfer_client,
            source=attached.index.with_tag("multi"),
            destination=destination,
            platforms=[Platform.parse("linux/amd64")],
        )

        client = transfer_client
        assert await client.resolve_digest(destination) == attached.children[0]
        assert not await client.has_manifest(destination.with_digest(attached.children[1]))
        assert not await client.has_manifest(destination.with_digest(attached.index.digest))
        index_referrers = await client.list_referrers(
            destination.with_digest(attached.index.digest)
        )
        assert [d.digest for d in index_referrers] == [attached.bundle.digest]
        assert await client.get_manifest(destination.with_tag(attached.signature_tag))
        scans = await client.list_referrers(destination.with_digest(attached.children[0]))
        assert [d.digest for d in scans] == [attached.scan.digest]
        assert report.platforms == ("linux/amd64",)

    async def test_every_platform_selected_copies_the_index_itself(
        self,
        transfer_client: RegistryClient,
        site_registry: RegistryProcess,
        unique_repo: Callable[[str], str],
    ) -> None:
        attached = await push_attached_image(transfer_client, unique_repo("app"))
        destination = site_repo(site_registry, attached.index.name)

        await copy_image(
            transfer_client,
            source=attached.index.with_tag("multi"),
            destination=destination,
            platforms=[Platform.parse("linux/amd64"), Platform.parse("linux/arm64")],
        )

        assert await transfer_client.resolve_digest(destination) == attached.index.digest

    async def test_a_platform_the_index_lacks_is_refused_naming_what_it_offers(
        self,
        transfer_client: RegistryClient,
        site_registry: RegistryProcess,
        unique_repo: Callable[[str], str],
    ) -> None:
        attached = await push_attached_image(transfer_client, unique_repo("app"))

        with pytest.raises(InputError) as caught:
            await copy_image(
                transfer_client,
                source=attached.index.with_tag("multi"),
                destination=site_repo(site_registry, attached.index.name),
                platforms=[Platform.parse("windows/amd64")],
            )

        assert caught.value.code == "input.platform"
        assert "linux/arm64/v8" in caught.value.message

    @pytest.mark.parametrize("text", ["linux", "linux/", "a/b/c/d", ""])
    def test_a_malformed_platform_is_refused(self, text: str) -> None:
        with pytest.raises(InputError) as caught:
            Platform.parse(text)
        assert caught.value.code == "input.platform"


class BlobCorruptingStandIn(ProxyStandIn):
    """The real registry behind a proxy that flips one byte of every layer it serves (a
    stand-in for a compromised or broken registry)."""

    def handle(self, request: StandInRequest) -> StandInResponse:
        answer = self.forward(request)
        if request.method == "GET" and "/blobs/" in request.path and len(answer.body) > 100:
            body = bytearray(answer.body)
            body[50] ^= 0xFF
            answer.body = bytes(body)
        return answer


class SubjectFirstStandIn(ProxyStandIn):
    """The real registry behind a proxy that refuses a manifest whose ``subject`` is not in
    the registry yet (``400 MANIFEST_BLOB_UNKNOWN``, as GitLab's registry did against
    distribution-spec), and holds every other manifest push back a moment so that referrers
    arrive first (a stand-in for such a registry)."""

    def __init__(self, upstream: RegistryProcess) -> None:
        super().__init__(upstream)
        self.refused: list[str] = []

    def handle(self, request: StandInRequest) -> StandInResponse:
        if request.method == "PUT" and "/manifests/" in request.path:
            subject = json.loads(request.body).get("subject")
            if subject is None:
                time.sleep(0.3)
            else:
                name = request.path.split("/v2/", 1)[1].rsplit("/manifests/", 1)[0]
                there = self._http.head(
                    f"{self.upstream.url}/v2/{name}/manifests/{subject['digest']}",
                    headers={"Accept": subject["mediaType"]},
                )
                if there.status_code == 404:
                    self.refused.append(request.path)
                    return StandInResponse.json(
                        {"errors": [{"code": "MANIFEST_BLOB_UNKNOWN", "message": "blob unknown"}]},
                        status=400,
                    )
        return self.forward(request)


class TestReferrersOrder:
    async def test_a_registry_refusing_referrers_before_their_subject_gets_them_again_after(
        self,
        site_registry: RegistryProcess,
        transfer_client: RegistryClient,
        unique_repo: Callable[[str], str],
    ) -> None:
        """Fails if ``Delivery._push_referrers`` (app/transfer/copy.py) gives up on the
        refusal instead of pushing the referrers again once their subject is there."""
        attached = await push_attached_image(transfer_client, unique_repo("app"))
        assert attached.index.digest is not None
        with SubjectFirstStandIn(site_registry) as proxy:
            destination = ImageRef.parse(f"{proxy.host}/copies/{attached.index.repository}")
            async with registry_client(site_registry, insecure_registries=[proxy.host]) as client:
                report = await copy_image(
                    client,
                    source=attached.index.with_tag("multi"),
                    destination=destination.with_tag("multi"),
                )
                listed = await client.list_referrers(destination.with_digest(attached.index.digest))
                scans = await client.list_referrers(destination.with_digest(attached.children[0]))

        assert proxy.refused  # referrers went first, as distribution-spec allows
        assert [d.digest for d in listed] == [attached.bundle.digest]
        assert [d.digest for d in scans] == [attached.scan.digest]
        assert report.referrers == 2


class TestRefusals:
    async def test_a_blob_that_does_not_match_its_digest_is_not_committed(
        self,
        registry: RegistryProcess,
        site_registry: RegistryProcess,
        transfer_client: RegistryClient,
        unique_repo: Callable[[str], str],
    ) -> None:
        attached = await push_attached_image(transfer_client, unique_repo("app"))
        destination = site_repo(site_registry, attached.index.name)
        with BlobCorruptingStandIn(registry) as proxy:
            source = ImageRef.parse(f"{proxy.host}/{attached.index.repository}:multi")
            async with registry_client(registry, insecure_registries=[proxy.host]) as client:
                with pytest.raises(RegistryError) as caught:
                    await copy_image(client, source=source, destination=destination)

        assert caught.value.code == "registry.digest_mismatch"
        assert "hashing to" in caught.value.message
        layer = (
            await transfer_client.get_manifest(attached.index.with_digest(attached.children[0]))
        ).layers[0]
        assert not await transfer_client.has_blob(destination, layer)


class TestReferrersApi:
    async def test_referrers_are_read_through_the_api_when_the_source_has_it(
        self,
        registry: RegistryProcess,
        referrers_api_standin: ProxyStandIn,
        site_registry: RegistryProcess,
    ) -> None:
        # The source speaks the referrers API (no fallback tag is written there).
        repo = f"{referrers_api_standin.host}/api{secrets.token_hex(4)}/app"
        async with registry_client(
            registry, insecure_registries=[referrers_api_standin.host]
        ) as client:
            attached = await push_attached_image(client, repo)
            assert attached.index.digest is not None
            assert fallback_tag(attached.index.digest) not in await client.list_tags(attached.index)
            destination = site_repo(site_registry, attached.index.name)

            report = await copy_image(
                client, source=attached.index.with_tag("multi"), destination=destination
            )

            listed = await client.list_referrers(destination.with_digest(attached.index.digest))
        assert [d.digest for d in listed] == [attached.bundle.digest]
        assert report.referrers == 2 and report.legacy_tags == 1
