"""Fixtures for transfer tests: a second real registry (the site) and images with everything
attached (two platforms, a bundle referrer, a scan referrer, a legacy ``.sig`` tag)."""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest

from app.oci import media
from app.oci.client import RegistryClient
from app.oci.descriptor import Descriptor
from app.oci.refs import ImageRef
from app.scans.ingest import SCAN_ARTIFACT_TYPE
from tests.fixtures.images import push_multiplatform_index, registry_client
from tests.fixtures.registry import RegistryProcess, start_registry, stop_registry
from tests.verify.cosign_wire import push_legacy


@pytest.fixture(scope="session")
def site_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryProcess]:
    """A second anonymous registry: the destination of copies and imports."""
    reg = start_registry(tmp_path_factory.mktemp("site-registry"))
    yield reg
    stop_registry(reg)


@pytest.fixture
async def transfer_client(registry: RegistryProcess) -> AsyncIterator[RegistryClient]:
    """A client for both loopback registries (plain HTTP is allowed on loopback)."""
    async with registry_client(registry) as client:
        yield client


@dataclass(frozen=True)
class AttachedImage:
    """An index pushed with its attachments, and what each one is."""

    index: ImageRef  # tag "multi", pinned
    children: tuple[str, ...]  # amd64, arm64 digests
    bundle: Descriptor  # referrer of the index
    scan: Descriptor  # referrer of the amd64 manifest
    signature_tag: str  # sha256-<hex>.sig of the index


async def push_attached_image(client: RegistryClient, repo: str) -> AttachedImage:
    """An index over linux/amd64 and linux/arm64/v8 with a bundle referrer on the index, a
    scan referrer on the amd64 manifest and a legacy ``.sig`` tag on the index."""
    index, manifest = await push_multiplatform_index(client, repo)
    children = tuple(d.digest for d in manifest.manifests)
    bundle = await client.push_referrer(
        index,
        artifact_type=media.SIGSTORE_BUNDLE_V03,
        layers=[
            (json.dumps({"fake": secrets.token_hex(8)}).encode(), media.SIGSTORE_BUNDLE_V03, {})
        ],
        annotations={"dev.sigstore.bundle.content": "dsse-envelope"},
    )
    scan = await client.push_referrer(
        index.with_digest(children[0]),
        artifact_type=SCAN_ARTIFACT_TYPE,
        layers=[(b'{"Results": []}', "application/json", {})],
        annotations={"dev.sealgate.scan.format": "trivy"},
    )
    await push_legacy(client, index, [(b'{"critical": {}}', {"x": "y"})])
    assert index.digest is not None
    return AttachedImage(
        index=index,
        children=children,
        bundle=bundle,
        scan=scan,
        signature_tag=index.digest.replace(":", "-") + ".sig",
    )
