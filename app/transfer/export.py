"""``sealgate export IMAGE... -o site.tar``: images with everything attached, into an OCI layout.

Each image is collected as ``copy`` collects it (``app.transfer.graph``: platforms, blobs,
referrers, legacy tags) and written to a layout (``app.transfer.layout``) whose
``index.json`` names every image, referrer and legacy manifest with the annotations
import needs. ``-o DIR`` writes (or adds to) a layout directory, resumably: blobs already
there are not fetched again. ``-o FILE.tar`` builds the directory next to the file and
writes the tar at the end, atomically.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from app.oci.client import RegistryClient
from app.oci.descriptor import Descriptor
from app.oci.refs import ImageRef
from app.transfer.copy import DEFAULT_CONCURRENCY, run_all
from app.transfer.graph import ImageGraph, Item, Platform, Role, collect_graph
from app.transfer.layout import (
    IMAGE_NAME,
    LEGACY_TAG,
    REF_NAME,
    REFERRER_OF,
    REPOSITORY,
    LayoutWriter,
    remove_tree,
    write_tar,
)
from app.transfer.progress import NO_PROGRESS, BlobOutcome, TransferProgress


@dataclass
class ExportReport:
    """What went into the layout."""

    output: str
    images: list[dict[str, object]] = field(default_factory=list)
    blobs_written: int = 0
    blobs_present: int = 0
    bytes_written: int = 0

    def to_json(self) -> dict[str, object]:
        return {
            "output": self.output,
            "images": self.images,
            "blobs": {"written": self.blobs_written, "present": self.blobs_present},
            "bytes_written": self.bytes_written,
        }


def is_tar_target(output: Path) -> bool:
    """Whether ``-o`` names a tar (``.tar``, ``.tar.gz`` is not written) rather than a dir."""
    return output.suffix == ".tar" and not output.is_dir()


async def export_images(
    client: RegistryClient,
    *,
    images: Sequence[ImageRef],
    output: Path,
    platforms: Sequence[Platform] = (),
    referrers: bool = True,
    concurrency: int = DEFAULT_CONCURRENCY,
    progress: TransferProgress = NO_PROGRESS,
) -> ExportReport:
    """Write ``images`` with everything attached to the layout ``output`` (tar or directory).

    Raises ``RegistryError`` (unreadable registry, bytes that do not match their digest),
    ``InputError`` (a platform selection that matches nothing, an output directory that is
    not a layout).
    """
    graphs = [
        await collect_graph(client, image, platforms=platforms, referrers=referrers)
        for image in images
    ]
    report = ExportReport(output=str(output))
    if is_tar_target(output):
        output.parent.mkdir(parents=True, exist_ok=True)
        root = Path(tempfile.mkdtemp(dir=output.parent, prefix=f".{output.name}-"))
        try:
            await _write(client, graphs, root, concurrency, progress, report)
            write_tar(root, output)
        finally:
            remove_tree(root)
    else:
        await _write(client, graphs, output, concurrency, progress, report)
    return report


async def _write(
    client: RegistryClient,
    graphs: list[ImageGraph],
    root: Path,
    concurrency: int,
    progress: TransferProgress,
    report: ExportReport,
) -> None:
    writer = LayoutWriter(root)
    # Each blob from the repository its manifest was read in (the evidence of an image may
    # live in a signature repository).
    sources: dict[str, tuple[ImageRef, Descriptor]] = {}
    for graph in graphs:
        for item in graph.items:
            for blob in item.blobs:
                sources.setdefault(blob.digest, (item.manifest.ref, blob))
    progress.expect(blobs=len(sources), total_bytes=sum(b.size for _, b in sources.values()))
    slots = asyncio.Semaphore(max(1, concurrency))

    async def one(source: ImageRef, blob_digest: str) -> None:
        _, blob = sources[blob_digest]
        async with slots:
            if writer.has_blob(blob):
                report.blobs_present += 1
                outcome = BlobOutcome.present
            else:
                await writer.write_blob(blob, client.read_blob_chunks(source, blob))
                report.blobs_written += 1
                report.bytes_written += blob.size
                outcome = BlobOutcome.copied
        progress.blob_done(blob, outcome)

    await run_all(one(source, digest) for digest, (source, _) in sources.items())
    for graph in graphs:
        for item in graph.items:
            await writer.write_bytes(item.manifest.descriptor, item.manifest.raw)
            if item.role is not Role.manifest:
                writer.add(_entry(graph, item))
        report.images.append(
            {
                "image": str(graph.source),
                "platforms": list(graph.platforms),
                "referrers": graph.count(Role.referrer),
                "legacy_tags": graph.count(Role.legacy),
            }
        )
        progress.note(f"{graph.source}: {len(graph.items)} manifests")
    writer.finish()


def _entry(graph: ImageGraph, item: Item) -> Descriptor:
    """The ``index.json`` descriptor of ``item`` with the annotations import reads."""
    source = graph.source
    annotations = {REPOSITORY: source.name}
    manifest = item.manifest
    descriptor = manifest.descriptor
    if item.role is Role.image and item.tag:
        annotations[REF_NAME] = item.tag
        annotations[IMAGE_NAME] = f"{source.name}:{item.tag}"
    elif item.role is Role.referrer and item.subject:
        annotations[REFERRER_OF] = item.subject
        config = manifest.config
        descriptor = replace(
            descriptor,
            artifact_type=manifest.artifact_type or (config.media_type if config else None),
        )
    elif item.role is Role.legacy and item.tag:
        annotations[LEGACY_TAG] = item.tag
    return replace(descriptor, annotations=annotations)
