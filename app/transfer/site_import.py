"""``sealgate import site.tar --to REGISTRY[/PREFIX]``: push an exported layout into a site
registry, after checking every byte of it.

1. Every ``index.json`` entry is read with the manifests it lists; each names its source
   repository (``dev.sealgate.transfer.repository``, else ``io.containerd.image.name``) and
   goes to ``REGISTRY/PREFIX/<source repository path>`` (``app.transfer.naming``).
2. Every manifest and blob is checked against its descriptor, size and digest, **before
   anything is pushed**: one byte changed in transit is ``input.layout_tampered`` naming
   the blob, and the site registry is left untouched.
3. Blobs go first (skipped when the site has them), then manifests in the order export
   wrote them: platforms, indexes (with their tags), legacy ``.sig``/``.att`` tags, then
   referrers through ``push_referrer_manifests`` (the fallback index is rebuilt). Running
   the same import again skips everything already there. Referrers and legacy tags go
   where the site keeps the image's evidence (``settings.signature_repositories``; by
   default next to the image).

The report lists, per image, where it went and the identity remap an authority with signed
identity ``match-repository`` needs to accept the source's signatures there.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import httpx

from app.errors import InputError, RegistryError
from app.oci.client import RegistryClient
from app.oci.descriptor import Descriptor
from app.oci.digests import parse_digest
from app.oci.manifest import Manifest, parse_manifest
from app.oci.refs import ImageRef
from app.transfer.copy import DEFAULT_CONCURRENCY, TransferReport, deliver_blobs, push_items
from app.transfer.graph import MAX_INDEX_DEPTH, ImageGraph, Item, Role
from app.transfer.layout import (
    IMAGE_NAME,
    LEGACY_TAG,
    REF_NAME,
    REFERRER_OF,
    REPOSITORY,
    LayoutReader,
)
from app.transfer.naming import SiteTarget, identity_remap
from app.transfer.progress import NO_PROGRESS, TransferProgress


@dataclass(frozen=True)
class _Entry:
    source: ImageRef  # the source repository (no tag)
    destination: ImageRef  # where it goes at the site (no tag)
    items: tuple[Item, ...]  # push order


@dataclass
class ImportReport:
    """What was pushed where, and the remaps authorities need at the site."""

    layout: str
    target: str
    images: list[dict[str, object]] = field(default_factory=list)
    remap_identity: list[str] = field(default_factory=list)
    transfer: TransferReport | None = None

    def to_json(self) -> dict[str, object]:
        counts = self.transfer.to_json() if self.transfer else {}
        return {
            "layout": self.layout,
            "target": self.target,
            "images": self.images,
            "blobs": counts.get("blobs"),
            "bytes_sent": counts.get("bytes_sent"),
            "manifests_pushed": counts.get("manifests_pushed"),
            "referrers": counts.get("referrers"),
            "legacy_tags": counts.get("legacy_tags"),
            "remap_identity": self.remap_identity,
        }


async def import_layout(
    client: RegistryClient,
    *,
    layout: Path,
    target: SiteTarget,
    max_manifest_bytes: int,
    concurrency: int = DEFAULT_CONCURRENCY,
    progress: TransferProgress = NO_PROGRESS,
) -> ImportReport:
    """Check the layout at ``layout`` whole, then push it to ``target`` (see module doc).

    Raises ``InputError`` (``input.layout`` for something that is not a usable layout,
    ``input.layout_tampered`` naming the blob whose size or digest does not match; nothing
    is pushed then) and ``RegistryError`` from the site registry.
    """
    with LayoutReader.open(layout) as reader:
        entries = [
            _at_evidence_home(
                client, _read_entry(reader, d, target=target, max_bytes=max_manifest_bytes)
            )
            for d in reader.entries()
        ]
        # (2) every blob checked before anything is pushed.
        blobs_by_repo: dict[str, tuple[ImageRef, dict[str, Descriptor]]] = {}
        for entry in entries:
            _, blobs = blobs_by_repo.setdefault(entry.destination.name, (entry.destination, {}))
            for item in entry.items:
                for blob in item.blobs:
                    blobs.setdefault(blob.digest, blob)
        unique = {d: b for _, blobs in blobs_by_repo.values() for d, b in blobs.items()}
        for blob in unique.values():
            reader.verify(blob)
        progress.note(f"{layout}: {len(entries)} entries, {len(unique)} blobs verified")
        # (3) blobs, then manifests in order (referrers last).
        transfer = TransferReport(source=str(layout), destination=str(target), digest="")
        total = sum(len(b) for _, b in blobs_by_repo.values())
        progress.expect(
            blobs=total,
            total_bytes=sum(b.size for _, blobs in blobs_by_repo.values() for b in blobs.values()),
        )
        for destination, blobs in blobs_by_repo.values():
            await deliver_blobs(
                client,
                list(blobs.values()),
                destination=destination,
                chunks=reader.chunks,
                mount_from=None,
                concurrency=concurrency,
                progress=progress,
                report=transfer,
            )
    # Referrers after everything else, in the order export wrote them.
    ordered = [e for e in entries if not _is_referrer(e)] + [e for e in entries if _is_referrer(e)]
    by_destination: dict[str, list[Item]] = {}
    for entry in ordered:
        by_destination.setdefault(entry.destination.name, []).extend(entry.items)
    for entry in {e.destination.name: e for e in ordered}.values():
        graph = ImageGraph(source=entry.source, items=tuple(by_destination[entry.destination.name]))
        await push_items(
            client, graph, destination=entry.destination, progress=progress, report=transfer
        )
    report = ImportReport(layout=str(layout), target=str(target), transfer=transfer)
    for entry in entries:
        top = entry.items[-1]
        if top.role is not Role.image:
            continue
        report.images.append(
            {
                "source": f"{entry.source.name}" + (f":{top.tag}" if top.tag else ""),
                "destination": f"{entry.destination.name}" + (f":{top.tag}" if top.tag else ""),
                "digest": top.digest,
            }
        )
        remap = identity_remap(source=entry.source.name, destination=entry.destination.name)
        text = f"{remap.prefix}={remap.signed_prefix}" if remap else None
        if text and text not in report.remap_identity:
            report.remap_identity.append(text)
    return report


def _at_evidence_home(client: RegistryClient, entry: _Entry) -> _Entry:
    """A referrer or a legacy tag goes where the site keeps its image's evidence (its
    ``settings.signature_repositories``; by default next to the image)."""
    if entry.items[-1].role in (Role.referrer, Role.legacy):
        return replace(entry, destination=client.evidence_home(entry.destination))
    return entry


def _is_referrer(entry: _Entry) -> bool:
    return entry.items[-1].role is Role.referrer


def _read_entry(
    reader: LayoutReader, descriptor: Descriptor, *, target: SiteTarget, max_bytes: int
) -> _Entry:
    """One ``index.json`` entry with the manifests it lists, read and checked."""
    annotations = descriptor.annotations
    named = annotations.get(REPOSITORY) or annotations.get(IMAGE_NAME)
    if not named:
        raise InputError(
            f"{reader.where}: index.json entry {descriptor.digest} names no source repository "
            f"(annotation {REPOSITORY} or {IMAGE_NAME}); import places images by it",
            code="input.layout",
        )
    try:
        parsed = ImageRef.parse(named)
    except InputError as e:
        raise InputError(
            f"{reader.where}: index.json entry {descriptor.digest}: {e.message}",
            code="input.layout",
        ) from e
    source = ImageRef(registry=parsed.registry, repository=parsed.repository)
    manifest = _manifest(reader, descriptor, source, max_bytes)
    if annotations.get(REFERRER_OF):
        role, tag = Role.referrer, None
        subject: str | None = _digest(reader, descriptor, annotations[REFERRER_OF])
    elif annotations.get(LEGACY_TAG):
        role, tag, subject = Role.legacy, annotations[LEGACY_TAG], None
    else:
        tag = annotations.get(REF_NAME) or (parsed.tag if IMAGE_NAME in annotations else None)
        role, subject = Role.image, None
    try:
        if tag is not None:
            source.with_tag(tag)
    except InputError as e:
        raise InputError(
            f"{reader.where}: index.json entry {descriptor.digest}: {e.message}",
            code="input.layout",
        ) from e
    items = _children(reader, manifest, source, max_bytes, depth=0)
    items.append(Item(manifest=manifest, role=role, tag=tag, subject=subject))
    return _Entry(source=source, destination=target.place(source), items=tuple(items))


def _children(
    reader: LayoutReader, manifest: Manifest, source: ImageRef, max_bytes: int, *, depth: int
) -> list[Item]:
    if not manifest.is_index:
        return []
    if depth >= MAX_INDEX_DEPTH:
        raise InputError(
            f"{reader.where}: index {manifest.digest} nests indexes deeper than {MAX_INDEX_DEPTH}",
            code="input.layout",
        )
    items: list[Item] = []
    for entry in manifest.manifests:
        child = _manifest(reader, entry, source, max_bytes)
        items += _children(reader, child, source, max_bytes, depth=depth + 1)
        items.append(Item(manifest=child, role=Role.manifest))
    return items


def _manifest(
    reader: LayoutReader, descriptor: Descriptor, source: ImageRef, max_bytes: int
) -> Manifest:
    data = reader.read(descriptor, max_bytes=max_bytes)
    try:
        return parse_manifest(
            source.with_digest(descriptor.digest),
            body=data,
            headers=httpx.Headers({"Content-Type": descriptor.media_type}),
        )
    except RegistryError as e:
        raise InputError(
            f"{reader.where}: manifest {descriptor.digest} is not usable: {e.message}",
            code="input.layout",
        ) from e


def _digest(reader: LayoutReader, descriptor: Descriptor, text: str) -> str:
    try:
        return parse_digest(text)
    except InputError as e:
        raise InputError(
            f"{reader.where}: index.json entry {descriptor.digest}: subject {text[:80]!r} "
            f"is not a digest",
            code="input.layout",
        ) from e
