"""``sealgate copy SRC DST``: an image and everything attached, from one repository to another.

``copy_image`` carries what ``app.transfer.graph`` collects (every platform, every blob, the
referrers with the fallback index rebuilt at the destination, the legacy ``.sig``/``.att``
tags), as ``cosign copy``, ``oras cp -r`` and ``regctl image copy --referrers`` do. Manifests
keep their bytes, so every digest, and every signature over one, is the same at both ends.

- **Blobs** are skipped when the destination has them (HEAD), mounted when source and
  destination are on the same registry and it agrees (``POST ...?mount=&from=``), and
  otherwise streamed in ranged reads of ``chunked_upload_threshold`` bytes, each checked
  against its digest before it is committed. At most ``concurrency`` blobs move at once.
- **Manifests** are pushed after all their blobs, in waves: children before the index that
  lists them, each subject before its referrers, each wave at once. A manifest PUT is
  idempotent and costs what asking whether it is there does, so manifests are simply pushed.
- **Resuming**: no blob is sent twice, so running the same copy again after an interruption
  carries on where it stopped (the report counts the blobs that were already there).
- **Referrers** are pushed byte for byte with ``RegistryClient.push_referrer_manifests``, all
  referrers of one subject together, which lists them in the destination's ``sha256-<hex>``
  fallback index (one update per subject) when the registry has no referrers API.
- The image's blobs start moving while its referrers are still being listed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from app.oci.client import RegistryClient
from app.oci.descriptor import Descriptor
from app.oci.refs import ImageRef
from app.transfer.graph import (
    ImageGraph,
    Item,
    Platform,
    Role,
    collect_attachments,
    collect_image,
)
from app.transfer.naming import identity_remap
from app.transfer.progress import NO_PROGRESS, BlobOutcome, TransferProgress

# Blobs in flight at once (skopeo's default for layer copies is 6 too).
DEFAULT_CONCURRENCY = 6


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
            "manifests_pushed": self.manifests_pushed,
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
    image = await collect_image(client, source, platforms=platforms)
    report = TransferReport(
        source=str(source),
        destination=destination.name,
        digest=image.source.digest or "",
        platforms=image.platforms,
    )

    async def blobs_of(graph: ImageGraph, done: set[str]) -> None:
        blobs = [b for b in graph.blobs() if b.digest not in done]
        done.update(b.digest for b in blobs)
        progress.expect(blobs=len(blobs), total_bytes=sum(b.size for b in blobs))
        await copy_blobs(
            client,
            blobs,
            source=image.source,
            destination=destination,
            concurrency=concurrency,
            progress=progress,
            report=report,
        )

    # The image's blobs move while its referrers are being listed.
    done: set[str] = set()
    attached: list[ImageGraph] = []

    async def attach() -> None:
        attached.append(await collect_attachments(client, image))

    await run_all([blobs_of(image, done), *([attach()] if referrers else [])])
    graph = attached[0] if attached else image
    if attached:
        await blobs_of(graph, done)
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
    """Push the manifests of ``graph`` to ``destination``'s repository; blobs must be there.

    The image's tag is ``tag``, else ``destination.tag``. Manifests go in waves: each wave
    holds the manifests whose children and subject went in earlier waves, pushed at once;
    the referrers of one subject go together (one fallback-index update).
    """
    wanted_tag = tag or destination.tag
    for wave in _waves(graph.items):
        referrers: dict[str, list[Item]] = {}
        others: list[Item] = []
        for item in wave:
            if item.role is Role.referrer and item.subject is not None:
                referrers.setdefault(item.subject, []).append(item)
            else:
                others.append(item)
        await run_all(
            [
                *(
                    push_item(
                        client,
                        item,
                        destination=destination,
                        tag=(wanted_tag or item.tag)
                        if item.role is Role.image and item.tag
                        else item.tag,
                        progress=progress,
                        report=report,
                    )
                    for item in others
                ),
                *(
                    push_referrers(
                        client,
                        subject,
                        items,
                        destination=destination,
                        progress=progress,
                        report=report,
                    )
                    for subject, items in referrers.items()
                ),
            ]
        )
        if any(i.role is Role.image and i.tag for i in others):
            report.tag = wanted_tag or next(i.tag for i in others if i.role is Role.image and i.tag)


def _waves(items: Sequence[Item]) -> list[list[Item]]:
    """``items`` grouped so that each one comes after the manifests it lists or refers to."""
    level: dict[str, int] = {}
    waves: list[list[Item]] = []
    for item in items:
        needs = [d.digest for d in item.manifest.manifests] if item.manifest.is_index else []
        if item.subject is not None and item.role is Role.referrer:
            needs.append(item.subject)
        depth = 1 + max((level[d] for d in needs if d in level), default=-1)
        level.setdefault(item.digest, depth)
        while len(waves) <= depth:
            waves.append([])
        waves[depth].append(item)
    return waves


async def push_item(
    client: RegistryClient,
    item: Item,
    *,
    destination: ImageRef,
    tag: str | None,
    progress: TransferProgress,
    report: TransferReport,
) -> None:
    """Push one manifest (not a referrer), by ``tag`` if given, else by digest.

    Pushed even when it is there: a manifest PUT is idempotent and costs what asking does.
    """
    manifest = item.manifest
    await client.push_manifest(
        destination.with_digest(manifest.digest) if tag is None else destination,
        manifest.raw,
        media_type=manifest.media_type,
        tag=tag,
    )
    report.manifests_pushed += 1
    if item.role is Role.legacy:
        report.legacy_tags += 1
    progress.note(f"{item.role.value} {manifest.digest[:19]}" + (f" as :{tag}" if tag else ""))


async def push_referrers(
    client: RegistryClient,
    subject: str,
    items: Sequence[Item],
    *,
    destination: ImageRef,
    progress: TransferProgress,
    report: TransferReport,
) -> None:
    """Push the referrers ``items`` of ``subject`` and list them in its fallback index.

    Always pushed (small PUTs): this also lists them in a fallback index that an earlier,
    interrupted run may not have updated.
    """
    await client.push_referrer_manifests(
        destination.with_digest(subject), [i.manifest for i in items]
    )
    for item in items:
        report.referrers += 1
        report.manifests_pushed += 1
        progress.note(
            f"referrer {item.digest[:19]} ({item.manifest.artifact_type or 'no artifactType'})"
        )
