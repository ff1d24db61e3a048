"""``sealgate copy SRC DST``: an image and everything attached, from one repository to another.

``copy_image`` carries what ``app.transfer.graph`` collects (every platform, every blob, the
referrers with the fallback index rebuilt at the destination, the legacy ``.sig``/``.att``
tags), as ``cosign copy``, ``oras cp -r`` and ``regctl image copy --referrers`` do. Manifests
keep their bytes, so every digest, and every signature over one, is the same at both ends.

- **Blobs** are skipped when the destination has them (HEAD), mounted when source and
  destination are on the same registry and it agrees (``POST ...?mount=&from=``), and
  otherwise streamed in ranged reads of ``chunked_upload_threshold`` bytes, each checked
  against its digest before it is committed. At most ``concurrency`` blobs move at once.
- **Manifests** are pushed after all their blobs, children before the index that lists them,
  each subject before its referrers; one already at the destination (by digest, or the tag
  already pointing at it) is skipped.
- **Resuming**: nothing is written twice, so running the same copy again after an
  interruption carries on where it stopped (the report counts what was already there).
- **Referrers** are pushed byte for byte with ``RegistryClient.push_referrer_manifest``,
  which lists them in the destination's ``sha256-<hex>`` fallback index when the registry has
  no referrers API.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from app.errors import RegistryError
from app.oci import errors
from app.oci.client import RegistryClient
from app.oci.descriptor import Descriptor
from app.oci.manifest import Manifest
from app.oci.refs import ImageRef
from app.transfer.graph import ImageGraph, Item, Platform, Role, collect_graph
from app.transfer.naming import identity_remap
from app.transfer.progress import NO_PROGRESS, BlobOutcome, TransferProgress

DEFAULT_CONCURRENCY = 4


@dataclass
class TransferReport:
    """What a transfer did: counts by outcome, and the digests it carried."""

    source: str
    destination: str
    digest: str
    platforms: tuple[str, ...] = ()
    tag: str | None = None
    blobs: dict[str, int] = field(default_factory=lambda: {o.value: 0 for o in BlobOutcome})
    bytes_sent: int = 0
    manifests_pushed: int = 0
    manifests_present: int = 0
    referrers: int = 0
    legacy_tags: int = 0
    remap_identity: str | None = None

    def count_blob(self, blob: Descriptor, outcome: BlobOutcome) -> None:
        self.blobs[outcome.value] += 1
        if outcome is BlobOutcome.copied:
            self.bytes_sent += blob.size

    def to_json(self) -> dict[str, object]:
        return {
            "source": self.source,
            "destination": self.destination,
            "digest": self.digest,
            "tag": self.tag,
            "platforms": list(self.platforms),
            "blobs": dict(self.blobs),
            "bytes_sent": self.bytes_sent,
            "manifests": {"pushed": self.manifests_pushed, "present": self.manifests_present},
            "referrers": self.referrers,
            "legacy_tags": self.legacy_tags,
            "remap_identity": self.remap_identity,
        }


async def copy_image(
    client: RegistryClient,
    *,
    source: ImageRef,
    destination: ImageRef,
    platforms: Sequence[Platform] = (),
    referrers: bool = True,
    concurrency: int = DEFAULT_CONCURRENCY,
    progress: TransferProgress = NO_PROGRESS,
) -> TransferReport:
    """Copy ``source`` to ``destination`` (its repository and tag) with everything attached.

    ``platforms`` selects platforms of an index (see ``app.transfer.graph``);
    ``referrers=False`` copies the image alone. Returns the report; raises ``RegistryError``
    (either registry unreadable or refusing, bytes that do not match their digest) and
    ``InputError`` (a platform selection that matches nothing).
    """
    graph = await collect_graph(client, source, platforms=platforms, referrers=referrers)
    blobs = graph.blobs()
    progress.start(blobs=len(blobs), total_bytes=sum(b.size for b in blobs))
    report = TransferReport(
        source=str(source),
        destination=destination.name,
        digest=graph.source.digest or "",
        platforms=graph.platforms,
    )
    await copy_blobs(
        client,
        blobs,
        source=graph.source,
        destination=destination,
        concurrency=concurrency,
        progress=progress,
        report=report,
    )
    await push_items(client, graph, destination=destination, progress=progress, report=report)
    remap = identity_remap(source=source.name, destination=destination.name)
    report.remap_identity = f"{remap.prefix}={remap.signed_prefix}" if remap else None
    return report


async def copy_blobs(
    client: RegistryClient,
    blobs: Sequence[Descriptor],
    *,
    source: ImageRef,
    destination: ImageRef,
    concurrency: int,
    progress: TransferProgress,
    report: TransferReport,
) -> None:
    """Put every blob of ``blobs`` in ``destination``'s repository, ``concurrency`` at once:
    skipped when there, mounted from ``source`` on the same registry, else streamed."""
    mount_from = (
        source.repository
        if source.registry == destination.registry and source.repository != destination.repository
        else None
    )
    await deliver_blobs(
        client,
        blobs,
        destination=destination,
        chunks=lambda blob: client.read_blob_chunks(source, blob),
        mount_from=mount_from,
        concurrency=concurrency,
        progress=progress,
        report=report,
    )


async def deliver_blobs(
    client: RegistryClient,
    blobs: Sequence[Descriptor],
    *,
    destination: ImageRef,
    chunks: Callable[[Descriptor], AsyncIterator[bytes]],
    mount_from: str | None,
    concurrency: int,
    progress: TransferProgress,
    report: TransferReport,
) -> None:
    """Upload each blob of ``blobs`` that ``destination`` lacks from ``chunks(blob)`` (or
    mount it from the repository ``mount_from`` of the same registry), ``concurrency`` at
    once; the first failure cancels the rest and is raised."""
    slots = asyncio.Semaphore(max(1, concurrency))

    async def one(blob: Descriptor) -> None:
        async with slots:
            if await client.has_blob(destination, blob):
                outcome = BlobOutcome.present
            elif mount_from is not None and await client.mount_blob(
                destination, blob, from_repository=mount_from
            ):
                outcome = BlobOutcome.mounted
            else:
                await client.push_blob_chunks(destination, blob, chunks(blob))
                outcome = BlobOutcome.copied
        report.count_blob(blob, outcome)
        progress.blob_done(blob, outcome)

    await run_all(one(blob) for blob in blobs)


async def run_all(coroutines: Iterable[Coroutine[Any, Any, None]]) -> None:
    """Await every coroutine; on the first failure cancel the rest and raise it."""
    try:
        async with asyncio.TaskGroup() as group:
            for coroutine in coroutines:
                group.create_task(coroutine)
    except BaseExceptionGroup as group_error:
        # The first failure is the one to report, with its own code and message.
        raise group_error.exceptions[0] from None


async def push_items(
    client: RegistryClient,
    graph: ImageGraph,
    *,
    destination: ImageRef,
    progress: TransferProgress,
    report: TransferReport,
    tag: str | None = None,
) -> None:
    """Push the manifests of ``graph`` to ``destination``'s repository in order.

    The image's tag is ``tag``, else ``destination.tag``. Blobs must be there already.
    """
    wanted_tag = tag or destination.tag
    for item in graph.items:
        await push_item(
            client,
            item,
            destination=destination,
            tag=wanted_tag if item.role is Role.image and item.tag else item.tag,
            progress=progress,
            report=report,
        )
        if item.role is Role.image and item.tag:
            report.tag = wanted_tag


async def push_item(
    client: RegistryClient,
    item: Item,
    *,
    destination: ImageRef,
    tag: str | None,
    progress: TransferProgress,
    report: TransferReport,
) -> None:
    """Push one manifest unless it is there (and its tag points at it)."""
    manifest = item.manifest
    short = manifest.digest[:19]
    if item.role is Role.referrer and item.subject is not None:
        # Always pushed (a small PUT): this also lists it in a fallback index a previous,
        # interrupted run may not have updated.
        await client.push_referrer_manifest(destination.with_digest(item.subject), manifest)
        report.referrers += 1
        report.manifests_pushed += 1
        progress.note(f"referrer {short} ({manifest.artifact_type or 'no artifactType'})")
        return
    if await _present(client, destination, manifest, tag=tag):
        report.manifests_present += 1
        if item.role is Role.legacy:
            report.legacy_tags += 1
        return
    await client.push_manifest(
        destination.with_digest(manifest.digest) if tag is None else destination,
        manifest.raw,
        media_type=manifest.media_type,
        tag=tag,
    )
    report.manifests_pushed += 1
    if item.role is Role.legacy:
        report.legacy_tags += 1
    progress.note(f"{item.role.value} {short}" + (f" as :{tag}" if tag else ""))


async def _present(
    client: RegistryClient, destination: ImageRef, manifest: Manifest, *, tag: str | None
) -> bool:
    """Whether the destination has ``manifest`` (under ``tag`` when one is wanted)."""
    if tag is None:
        return await client.has_manifest(destination.with_digest(manifest.digest))
    try:
        return await client.resolve_digest(destination.with_tag(tag)) == manifest.digest
    except RegistryError as e:
        if e.code == errors.NOT_FOUND:
            return False
        raise
