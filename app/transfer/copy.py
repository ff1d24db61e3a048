"""``sealgate copy SRC DST``: an image and everything attached, from one repository to another.

``copy_image`` carries what ``app.transfer.graph`` collects (every platform, every blob, the
referrers with the fallback index rebuilt at the destination, the legacy ``.sig``/``.att``
tags), as ``cosign copy``, ``oras cp -r`` and ``regctl image copy --referrers`` do. Manifests
keep their bytes, so every digest, and every signature over one, is the same at both ends.

- **Blobs** are skipped when the destination has them (HEAD), mounted when source and
  destination are on the same registry and it agrees (``POST ...?mount=&from=``), and
  otherwise streamed in ranged reads of ``chunked_upload_threshold`` bytes, each checked
  against its digest before it is committed (the upload is opened while the first bytes are
  read). A small blob (``SMALL_BLOB_BYTES``) is asked for with the mount request itself,
  which opens its upload when the registry has nothing to mount. At most ``concurrency``
  blobs move at once, the image's first.
- **Manifests** are pushed as soon as what they need is at the destination, not in rounds:
  an image manifest once its blobs are, an index once the manifests it lists are. A
  manifest PUT is idempotent and costs what asking whether it is there does, so manifests
  are simply pushed.
- **Resuming**: no blob is sent twice, so running the same copy again after an interruption
  carries on where it stopped (the report counts the blobs that were already there; a
  registry that mounts nothing gets small blobs again).
- **Referrers** are pushed byte for byte with ``RegistryClient.push_referrer_manifests``, all
  referrers of one subject together, which lists them in the destination's ``sha256-<hex>``
  fallback index (one update per subject) when the registry has no referrers API. They go
  once their blobs are there, before or after their subject (``Delivery._push_referrers``).
- The attachments are listed while the image's manifests are read, and their blobs move as
  soon as they are listed, alongside the image's.
- **Signature repositories** (``settings.signature_repositories``): the attachments are
  read where the source keeps its evidence and written where the destination's is kept
  (``RegistryClient.evidence_home``; by default each image's own repository), so a vetted
  third-party image copied into a site carries the signatures its team keeps apart.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from app.errors import RegistryError
from app.oci import errors
from app.oci.client import SMALL_BLOB_BYTES, RegistryClient
from app.oci.descriptor import Descriptor
from app.oci.refs import ImageRef
from app.transfer.graph import (
    ImageGraph,
    Item,
    Platform,
    Role,
    collect_attachments,
    collect_image,
    first_subjects,
    repository_tags,
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
    report = TransferReport(source=str(source), destination=destination.name, digest="")
    slots = asyncio.Semaphore(max(1, concurrency))

    async def carry(tasks: asyncio.TaskGroup) -> None:
        # The tags (for the fallback and legacy tags) are listed while the top manifest is
        # read; by tag, one GET tells the digest and brings the manifest.
        home = client.evidence_home(source)
        tags = tasks.create_task(repository_tags(client, home)) if referrers else None
        top = await client.get_manifest(source)
        pinned = source.with_digest(top.digest)
        report.digest = top.digest

        def delivery_to(target: ImageRef, *, blobs_in: ImageRef) -> Delivery:
            blobs = BlobSource.reading(client, blobs_in, destination=target, slots=slots)
            return Delivery(
                client, tasks, destination=target, blobs=blobs, progress=progress, report=report
            )

        delivery = delivery_to(destination, blobs_in=pinned)
        # The attachments go from where the source keeps its evidence to where the
        # destination's is kept (signature repositories), each its own repository by default.
        evidence_to = client.evidence_home(destination)
        evidence = (
            delivery
            if home.name == source.name and evidence_to.name == destination.name
            else delivery_to(evidence_to, blobs_in=home)
        )
        # The attachments of what the top manifest names are read while the image is, and
        # carried once the image's own manifests are under way.
        early = first_subjects(source, top, platforms=platforms) if referrers else ()
        attachments = (
            tasks.create_task(collect_attachments(client, early, tags=tags)) if early else None
        )
        image = await collect_image(client, source, platforms=platforms, top=top)
        report.platforms = image.platforms
        delivery.carry(image.items)
        if attachments is not None:
            evidence.carry(await attachments)
            known = {s.digest for s in early}
            late = [s for s in image.subjects if s.digest not in known]
            if late:  # the manifests of an index nested in the index
                evidence.carry(await collect_attachments(client, late))

    await in_task_group(carry)
    remap = identity_remap(source=source.name, destination=destination.name)
    report.remap_identity = f"{remap.prefix}={remap.signed_prefix}" if remap else None
    return report


@dataclass(frozen=True)
class BlobSource:
    """Where the blobs of a transfer come from, and how many may move at once."""

    chunks: Callable[[Descriptor], AsyncIterator[bytes]]  # a blob's bytes, piece by piece
    mount_from: str | None  # a repository of the destination's registry holding them
    slots: asyncio.Semaphore  # one per blob in flight

    @classmethod
    def reading(
        cls,
        client: RegistryClient,
        source: ImageRef,
        *,
        destination: ImageRef,
        slots: asyncio.Semaphore,
    ) -> BlobSource:
        """Blobs read from ``source``'s repository, mounted from it when ``destination``
        is another repository of the same registry."""
        same_registry = source.registry == destination.registry
        return cls(
            chunks=lambda blob: client.read_blob_chunks(source, blob),
            mount_from=source.repository
            if same_registry and source.repository != destination.repository
            else None,
            slots=slots,
        )


class Delivery:
    """Puts the blobs and manifests of one transfer at its destination, each once and each
    as soon as what it needs is there (the module doc says what each needs).

    ``carry`` starts the work in ``tasks`` (an ``asyncio.TaskGroup``) and returns at once; the
    group's end is the transfer's end, and its first failure cancels the rest. The image's
    tag is ``tag``, else ``destination.tag``.
    """

    def __init__(
        self,
        client: RegistryClient,
        tasks: asyncio.TaskGroup,
        *,
        destination: ImageRef,
        blobs: BlobSource | None,
        progress: TransferProgress,
        report: TransferReport,
        tag: str | None = None,
    ) -> None:
        self._client = client
        self._tasks = tasks
        self._destination = destination
        self._blob_source = blobs
        self._progress = progress
        self._report = report
        self._tag = tag or destination.tag
        self._carried: set[tuple[str, str, str | None]] = set()
        # What each manifest and blob waits for: the task putting it at the destination.
        self._blobs: dict[str, asyncio.Task[None]] = {}
        self._manifests: dict[str, asyncio.Task[None]] = {}

    def carry(self, items: Iterable[Item]) -> None:
        """Start carrying those of ``items`` not carried yet (in graph order: the manifests an
        item lists, and a referrer's subject, come before it), and their blobs unless the
        delivery has no ``BlobSource`` (they are there already)."""
        fresh = [i for i in items if _key(i) not in self._carried]
        self._carried.update(_key(i) for i in fresh)
        self._start_blobs(fresh)
        referrers: dict[str, list[Item]] = {}
        for item in fresh:
            if item.role is Role.referrer and item.subject is not None:
                referrers.setdefault(item.subject, []).append(item)
                continue
            task = self._tasks.create_task(self._push(item, self._needs([item])))
            self._manifests.setdefault(item.digest, task)
        # Referrers of one subject go together (one fallback-index update); a referrer of a
        # referrer comes later in the graph, after the group of its subject.
        for subject, group in referrers.items():
            task = self._tasks.create_task(
                self._push_referrers(
                    subject, group, self._needs(group), subject_push=self._manifests.get(subject)
                )
            )
            for item in group:
                self._manifests.setdefault(item.digest, task)

    def _start_blobs(self, items: Sequence[Item]) -> None:
        source = self._blob_source
        if source is None:
            return
        fresh: dict[str, Descriptor] = {}
        for item in items:
            for blob in item.blobs:
                if blob.digest not in self._blobs:
                    fresh.setdefault(blob.digest, blob)
        self._progress.expect(blobs=len(fresh), total_bytes=sum(b.size for b in fresh.values()))
        for digest, blob in fresh.items():
            self._blobs[digest] = self._tasks.create_task(
                deliver_blob(
                    self._client,
                    blob,
                    destination=self._destination,
                    source=source,
                    progress=self._progress,
                    report=self._report,
                )
            )

    def _needs(
        self, items: Sequence[Item], *, subject: str | None = None
    ) -> list[asyncio.Task[None]]:
        """The tasks that must end before ``items`` can be pushed."""
        digests = [b.digest for i in items for b in i.blobs]
        needs = [self._blobs[d] for d in digests if d in self._blobs]
        listed = [d.digest for i in items if i.manifest.is_index for d in i.manifest.manifests]
        needs += [self._manifests[d] for d in listed if d in self._manifests]
        if subject is not None and subject in self._manifests:
            needs.append(self._manifests[subject])
        return needs

    async def _push(self, item: Item, needs: Sequence[asyncio.Task[None]]) -> None:
        for need in needs:
            await need
        tagged = item.role is Role.image and item.tag is not None
        tag = (self._tag or item.tag) if tagged else item.tag
        await push_item(
            self._client,
            item,
            destination=self._destination,
            tag=tag,
            progress=self._progress,
            report=self._report,
        )
        if tagged:
            self._report.tag = tag

    async def _push_referrers(
        self,
        subject: str,
        items: Sequence[Item],
        needs: Sequence[asyncio.Task[None]],
        *,
        subject_push: asyncio.Task[None] | None,
    ) -> None:
        """Push the referrers ``items`` of ``subject`` once their own ``needs`` are there.

        Not after their subject: distribution-spec has registries accept a referrer whose
        subject is not there yet, so they are pushed in either order (on a registry without
        the referrers API nothing at all depends on the subject). A registry that refuses
        one all the same (GitLab's did, with ``MANIFEST_BLOB_UNKNOWN``) gets them again once
        ``subject_push`` is done.
        """
        for need in needs:
            await need
        for attempt in range(2):
            try:
                await push_referrers(
                    self._client,
                    subject,
                    items,
                    destination=self._destination,
                    progress=self._progress,
                    report=self._report,
                )
                return
            except RegistryError as e:
                refused = e.code in (errors.INVALID_MANIFEST, errors.NOT_FOUND)
                if attempt or subject_push is None or not refused:
                    raise
                await subject_push


def _key(item: Item) -> tuple[str, str, str | None]:
    return (item.digest, item.role.value, item.tag)


async def deliver_blob(
    client: RegistryClient,
    blob: Descriptor,
    *,
    destination: ImageRef,
    source: BlobSource,
    progress: TransferProgress,
    report: TransferReport,
) -> None:
    """Put ``blob`` in ``destination``'s repository when it is not there: mounted from
    ``source.mount_from`` (same registry) if the registry agrees, else uploaded from
    ``source.chunks``; within one of ``source.slots``."""
    async with source.slots:
        if blob.size <= SMALL_BLOB_BYTES:
            # Sending a small blob costs what asking for it does, so one request asks the
            # registry to mount it (from the source repository, or from the destination
            # itself: then "mounted" means it was there) and opens its upload if it cannot.
            mounted = await client.mount_or_push_blob(
                destination,
                blob,
                lambda: source.chunks(blob),
                from_repository=source.mount_from or destination.repository,
            )
            if not mounted:
                outcome = BlobOutcome.copied
            elif source.mount_from is None:
                outcome = BlobOutcome.present
            else:
                outcome = BlobOutcome.mounted
        elif await client.has_blob(destination, blob):
            outcome = BlobOutcome.present
        elif source.mount_from is not None and await client.mount_blob(
            destination, blob, from_repository=source.mount_from
        ):
            outcome = BlobOutcome.mounted
        else:
            await client.push_blob_chunks(destination, blob, source.chunks(blob))
            outcome = BlobOutcome.copied
    report.count_blob(blob, outcome)
    progress.blob_done(blob, outcome)


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
    """``deliver_blob`` for each of ``blobs``, ``concurrency`` at once; the first failure
    cancels the rest and is raised."""
    source = BlobSource(
        chunks=chunks, mount_from=mount_from, slots=asyncio.Semaphore(max(1, concurrency))
    )
    await run_all(
        deliver_blob(
            client, blob, destination=destination, source=source, progress=progress, report=report
        )
        for blob in blobs
    )


async def in_task_group(work: Callable[[asyncio.TaskGroup], Awaitable[None]]) -> None:
    """Run ``work(group)`` and every task it starts in ``group``; on the first failure cancel
    the rest and raise it."""
    try:
        async with asyncio.TaskGroup() as group:
            await work(group)
    except BaseExceptionGroup as group_error:
        # The first failure is the one to report, with its own code and message.
        raise group_error.exceptions[0] from None


async def run_all(coroutines: Iterable[Coroutine[Any, Any, None]]) -> None:
    """Await every coroutine; on the first failure cancel the rest and raise it."""

    async def start(group: asyncio.TaskGroup) -> None:
        for coroutine in coroutines:
            group.create_task(coroutine)

    await in_task_group(start)


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

    The image's tag is ``tag``, else ``destination.tag``. Each manifest goes once those it
    lists and its subject are pushed; the referrers of one subject go together (one
    fallback-index update).
    """

    async def push(group: asyncio.TaskGroup) -> None:
        Delivery(
            client,
            group,
            destination=destination,
            blobs=None,
            progress=progress,
            report=report,
            tag=tag,
        ).carry(graph.items)

    await in_task_group(push)


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
