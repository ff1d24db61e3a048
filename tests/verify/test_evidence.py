"""Evidence collection against a real registry: what is read, what is dropped, and the caps
that keep a hostile registry (thousands of referrers, huge or misdirected ones) cheap.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest

from app.config import Settings
from app.oci import media
from app.oci.client import RegistryClient
from app.oci.digests import fallback_tag
from app.oci.refs import ImageRef
from app.verify.evidence import (
    BundleCandidate,
    EvidenceLimits,
    LegacyCandidate,
    collect_evidence,
)
from tests.fixtures.images import push_random_image, registry_settings
from tests.fixtures.registry import RegistryProcess
from tests.verify import cosign_wire as wire


@pytest.fixture
async def client(registry: RegistryProcess) -> AsyncIterator[RegistryClient]:
    settings: Settings = registry_settings(registry)
    c = RegistryClient.from_settings(settings)
    yield c
    await c.aclose()


async def new_image(client: RegistryClient, registry: RegistryProcess) -> ImageRef:
    image, _ = await push_random_image(client, f"{registry.host}/e{secrets.token_hex(5)}/app")
    return image


async def push_referrer_manifest(
    client: RegistryClient, image: ImageRef, *, layer: dict[str, Any], n: int
) -> dict[str, Any]:
    """Push a referrer manifest without touching the fallback index; return its descriptor."""
    await client.push_blob(image, media.EMPTY_CONFIG_DATA, media_type=media.OCI_EMPTY)
    manifest = {
        "schemaVersion": 2,
        "mediaType": media.OCI_MANIFEST,
        "artifactType": wire.BUNDLE_MEDIA_TYPE,
        "config": media.EMPTY_CONFIG.to_json(),
        "layers": [layer],
        "subject": {"mediaType": media.OCI_MANIFEST, "digest": image.digest, "size": 1},
        "annotations": {"n": str(n)},
    }
    pushed = await client.push_manifest(image, manifest, media_type=media.OCI_MANIFEST)
    return {**pushed.to_json(), "artifactType": wire.BUNDLE_MEDIA_TYPE}


class TestCollect:
    async def test_reads_referrer_bundles_and_legacy_layers(
        self, client: RegistryClient, registry: RegistryProcess
    ) -> None:
        key = wire.new_key()
        image = await new_image(client, registry)
        assert image.digest is not None
        bundle = wire.dsse_bundle(key, wire.statement(image.digest))
        referrer = await wire.push_bundle(client, image, bundle)
        payload = wire.simple_signing(image.digest, image.name)
        sig = await wire.push_legacy(client, image, [wire.legacy_layer(key, payload)])
        # Another kind of referrer (a scan report) is not a signature candidate.
        await client.push_referrer(
            image,
            artifact_type="application/sarif+json",
            layers=[(b"{}", "application/sarif+json", {})],
            annotations={},
        )

        evidence = await collect_evidence(client, image)

        kinds = {type(c): c for c in evidence.candidates}
        assert set(kinds) == {BundleCandidate, LegacyCandidate}
        bundle_candidate = kinds[BundleCandidate]
        assert isinstance(bundle_candidate, BundleCandidate)
        assert bundle_candidate.bundle == bundle
        assert bundle_candidate.signature_digest == referrer.digest
        legacy = kinds[LegacyCandidate]
        assert isinstance(legacy, LegacyCandidate)
        assert legacy.payload == payload and legacy.signature_digest == sig.digest
        assert evidence.problems == ()

    async def test_referrer_about_another_image_is_dropped(
        self, client: RegistryClient, registry: RegistryProcess
    ) -> None:
        image = await new_image(client, registry)
        other, _ = await push_random_image(client, image.name, tag=None)
        assert image.digest is not None
        bundle = wire.dsse_bundle(wire.new_key(), wire.statement(image.digest))
        # A referrer of `other`, listed in `image`'s fallback index by a hostile writer.
        pushed = await wire.push_bundle(client, other, bundle)
        index = {
            "schemaVersion": 2,
            "mediaType": media.OCI_INDEX,
            "manifests": [{**pushed.to_json(), "artifactType": wire.BUNDLE_MEDIA_TYPE}],
        }
        await client.push_manifest(
            image, index, media_type=media.OCI_INDEX, tag=fallback_tag(image.digest)
        )

        evidence = await collect_evidence(client, image)

        assert evidence.candidates == ()
        assert [p.code for p in evidence.problems] == ["evidence.wrong_subject"]


class TestHostileRegistry:
    async def test_thousands_of_referrers_are_capped(
        self, client: RegistryClient, registry: RegistryProcess
    ) -> None:
        image = await new_image(client, registry)
        assert image.digest is not None
        forged = wire.dsse_bundle(
            wire.new_key(), wire.statement(image.digest), signature=b"\x00" * 64
        )
        layer = await client.push_blob(image, forged, media_type=wire.BUNDLE_MEDIA_TYPE)
        gate = asyncio.Semaphore(16)

        async def one(n: int) -> dict[str, Any]:
            async with gate:
                return await push_referrer_manifest(client, image, layer=layer.to_json(), n=n)

        # 200 distinct referrer manifests listed 3000 times: the registry serves thousands.
        distinct = await asyncio.gather(*(one(n) for n in range(200)))
        entries = [distinct[n % len(distinct)] for n in range(3000)]
        index = {"schemaVersion": 2, "mediaType": media.OCI_INDEX, "manifests": entries}
        await client.push_manifest(
            image, index, media_type=media.OCI_INDEX, tag=fallback_tag(image.digest)
        )
        limits = EvidenceLimits(max_signatures=16)

        evidence = await collect_evidence(client, image, limits=limits)

        assert len(evidence.candidates) == 16
        assert [p.code for p in evidence.problems] == ["evidence.too_many"]
        assert "only the first 16" in evidence.problems[0].reason

    async def test_too_many_legacy_layers_are_capped(
        self, client: RegistryClient, registry: RegistryProcess
    ) -> None:
        key = wire.new_key()
        image = await new_image(client, registry)
        assert image.digest is not None
        layers = [
            wire.legacy_layer(key, wire.simple_signing(image.digest, f"r{n}")) for n in range(40)
        ]
        await wire.push_legacy(client, image, layers)

        evidence = await collect_evidence(client, image, limits=EvidenceLimits(max_signatures=8))

        assert len(evidence.candidates) == 8
        assert [p.code for p in evidence.problems] == ["evidence.too_many"]

    async def test_huge_bundle_is_refused_before_download(
        self, client: RegistryClient, registry: RegistryProcess
    ) -> None:
        image = await new_image(client, registry)
        huge = json.dumps({"pad": "x" * (3 << 20)}).encode()
        await wire.push_bundle(client, image, huge)

        evidence = await collect_evidence(client, image)

        assert evidence.candidates == ()
        assert [p.code for p in evidence.problems] == ["evidence.too_large"]

    async def test_bundle_layer_lying_about_its_size_is_cut_off(
        self, client: RegistryClient, registry: RegistryProcess
    ) -> None:
        image = await new_image(client, registry)
        huge = json.dumps({"pad": "x" * (3 << 20)}).encode()
        blob = await client.push_blob(image, huge, media_type=wire.BUNDLE_MEDIA_TYPE)
        # The descriptor claims a small size; the blob behind the digest is 3 MiB.
        entry = await push_referrer_manifest(
            client, image, layer={**blob.to_json(), "size": 100}, n=0
        )
        assert image.digest is not None
        index = {"schemaVersion": 2, "mediaType": media.OCI_INDEX, "manifests": [entry]}
        await client.push_manifest(
            image, index, media_type=media.OCI_INDEX, tag=fallback_tag(image.digest)
        )

        evidence = await collect_evidence(client, image)

        assert evidence.candidates == ()
        assert len(evidence.problems) == 1
        assert evidence.problems[0].code.startswith("registry.")
