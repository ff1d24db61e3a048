"""Legacy ``.sig`` publishing against the real registry: concurrent signings lose nothing."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable

import pytest
from sqlalchemy import Engine

from app.oci.client import RegistryClient
from app.oci.locks import PostgresIndexLock
from app.oci.refs import ImageRef
from app.signing.payloads import simple_signing_payload
from app.signing.publish import SIGNATURE_ANNOTATION, legacy_signature_tag, publish_legacy
from app.signing.signers import Algorithm, KeySigner, generate_private_key
from tests.fixtures.images import push_random_image, registry_client
from tests.fixtures.registry import RegistryProcess


def _signers(count: int) -> list[KeySigner]:
    return [
        KeySigner(
            name=f"key-{i}",
            algorithm=Algorithm.ecdsa_p256,
            private_key=generate_private_key(Algorithm.ecdsa_p256),
        )
        for i in range(count)
    ]


async def _sign_concurrently(
    clients: list[RegistryClient], image: ImageRef, signers: list[KeySigner]
) -> list[str]:
    """One ``publish_legacy`` per signer, all at once; the signatures they published."""
    assert image.digest is not None
    payload = simple_signing_payload(docker_reference=image.name, digest=image.digest)
    signatures = [base64.b64encode(s.sign(payload)).decode() for s in signers]
    await asyncio.gather(
        *(
            publish_legacy(
                clients[i % len(clients)],
                image=image,
                payload=payload,
                annotations={SIGNATURE_ANNOTATION: signature},
            )
            for i, signature in enumerate(signatures)
        )
    )
    return signatures


async def _published(client: RegistryClient, image: ImageRef) -> list[str]:
    assert image.digest is not None
    manifest = await client.get_manifest(image.with_tag(legacy_signature_tag(image.digest)))
    return [layer.annotations[SIGNATURE_ANNOTATION] for layer in manifest.layers]


async def test_concurrent_signings_of_one_image_keep_every_signature(
    oci_client: RegistryClient, unique_repo: Callable[[str], str]
) -> None:
    image, _ = await push_random_image(oci_client, unique_repo("legacy"))
    signatures = await _sign_concurrently([oci_client], image, _signers(2))
    assert sorted(await _published(oci_client, image)) == sorted(signatures)


async def test_replicas_sharing_postgresql_keep_every_signature(
    registry: RegistryProcess, unique_repo: Callable[[str], str], test_engine: Engine
) -> None:
    # Two clients as two replicas: no in-process lock in common, only the advisory lock.
    if test_engine.dialect.name != "postgresql":
        pytest.skip("advisory locks need PostgreSQL")
    async with (
        registry_client(registry, index_lock=PostgresIndexLock(test_engine)) as first,
        registry_client(registry, index_lock=PostgresIndexLock(test_engine)) as second,
    ):
        image, _ = await push_random_image(first, unique_repo("legacy"))
        signatures = await _sign_concurrently([first, second], image, _signers(4))
        assert sorted(await _published(second, image)) == sorted(signatures)


async def test_concurrent_duplicates_are_published_once(
    oci_client: RegistryClient, unique_repo: Callable[[str], str]
) -> None:
    image, _ = await push_random_image(oci_client, unique_repo("legacy"))
    assert image.digest is not None
    payload = simple_signing_payload(docker_reference=image.name, digest=image.digest)
    annotations = {SIGNATURE_ANNOTATION: base64.b64encode(b"one signature").decode()}
    digests = await asyncio.gather(
        *(
            publish_legacy(
                oci_client,
                image=image,
                payload=payload,
                annotations=annotations,
                is_duplicate=lambda existing: existing == annotations,
            )
            for _ in range(3)
        )
    )
    assert len(set(digests)) == 1
    assert await _published(oci_client, image) == [annotations[SIGNATURE_ANNOTATION]]
