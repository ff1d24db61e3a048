"""The async OCI registry client: manifests, blobs and OCI 1.1 referrers over HTTP.

Use one ``RegistryClient`` per process (``Services.registry``) and close it with ``aclose``::

    client = RegistryClient.from_settings(settings)
    ref = ImageRef.parse("127.0.0.1:5000/team/app:v1")
    digest = await client.resolve_digest(ref)               # "sha256:..."
    manifest = await client.get_manifest(ref.with_digest(digest))
    if manifest.is_index:
        manifest = await client.select_platform(manifest, os="linux", architecture="amd64")
    config = await client.get_blob(ref, manifest.config.digest)
    referrers = await client.list_referrers(ref.with_digest(digest), artifact_type=...)
    await client.push_referrer(ref.with_digest(digest), artifact_type=..., layers=[...],
                               annotations={})

Every failure is a ``RegistryError`` whose ``code`` is one of ``registry.unreachable``,
``registry.unauthorized``, ``registry.forbidden``, ``registry.not_found``,
``registry.rate_limited``, ``registry.server_error``, ``registry.digest_mismatch``,
``registry.too_large``, ``registry.invalid_manifest``, ``registry.truncated``,
``registry.timeout`` or ``registry.protocol`` and whose message names the registry, the
repository and what went wrong. An invalid reference is an ``InputError``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.config import Settings
from app.oci.descriptor import Descriptor
from app.oci.refs import ImageRef

__all__ = ["Descriptor", "Manifest", "RegistryClient"]


@dataclass(frozen=True)
class Manifest:
    """A manifest or index exactly as fetched: ``raw`` hashes to ``digest``; ``json`` is parsed."""

    ref: ImageRef
    digest: str
    media_type: str
    raw: bytes
    json: dict[str, Any]

    @property
    def is_index(self) -> bool:
        raise NotImplementedError


class RegistryClient:
    @classmethod
    def from_settings(cls, settings: Settings) -> RegistryClient:
        raise NotImplementedError

    async def resolve_digest(self, ref: ImageRef) -> str:
        raise NotImplementedError

    async def get_manifest(self, ref: ImageRef) -> Manifest:
        raise NotImplementedError

    async def select_platform(
        self,
        index: Manifest,
        *,
        os: str = "linux",
        architecture: str = "amd64",
        variant: str | None = None,
    ) -> Manifest:
        raise NotImplementedError

    async def get_blob(self, ref: ImageRef, digest: str, *, max_bytes: int | None = None) -> bytes:
        raise NotImplementedError

    async def push_blob(self, ref: ImageRef, data: bytes, *, media_type: str) -> Descriptor:
        raise NotImplementedError

    async def push_manifest(
        self,
        ref: ImageRef,
        manifest: dict[str, Any] | bytes,
        *,
        media_type: str,
        tag: str | None = None,
    ) -> Descriptor:
        raise NotImplementedError

    async def list_referrers(
        self, ref: ImageRef, *, artifact_type: str | None = None
    ) -> list[Descriptor]:
        raise NotImplementedError

    async def referrers_index(
        self, ref: ImageRef, *, artifact_type: str | None = None
    ) -> dict[str, Any]:
        raise NotImplementedError

    async def push_referrer(
        self,
        subject: ImageRef,
        *,
        artifact_type: str,
        layers: list[tuple[bytes, str, dict[str, str]]],
        annotations: dict[str, str],
    ) -> Descriptor:
        raise NotImplementedError

    async def aclose(self) -> None:
        raise NotImplementedError
