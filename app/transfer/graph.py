"""What an image brings along when it is copied: its manifests, blobs, referrers and tags.

``collect_graph(client, ref)`` reads, from the registry, everything a faithful copy of ``ref``
needs, in the order a registry accepts it (children before the index that lists them, a
subject before its referrers):

- the manifest or index ``ref`` names, with every platform manifest it lists (or only those
  ``platforms`` selects) and, for each image manifest, its config and layer blobs;
- every referrer of each of those manifests (OCI 1.1 referrers API, or the ``<alg>-<hex>``
  fallback index the client reads when the registry has no API): Sigstore bundles of cosign
  v3 and Sealgate, Sealgate's scans and attestations, SBOMs, anything; and the referrers of
  those referrers, down to ``MAX_REFERRER_DEPTH``;
- the legacy cosign tags of each of those manifests (``sha256-<hex>.sig``, ``.att``,
  ``.sbom``).

Referrers and legacy tags are read where the image's evidence lives
(``RegistryClient.evidence_home``: its own repository, or the signature repository
``settings.signature_repositories`` names for it); each item's ``manifest.ref`` says where
it was read, which is where its blobs are.

With ``platforms``, an index is carried whole (byte for byte, same digest) only when every
platform it lists is selected. Otherwise only the selected platform manifests are carried
(the tag then points at the platform manifest when exactly one is selected, and is not set
when several are); the index's own referrers and legacy tags are carried all the same, so
signatures over the whole index are kept at the destination, listed under the index digest.
A filtered copy of the index is never written: its digest would differ and no signature
over the original would apply to it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

from app.errors import InputError, RegistryError
from app.oci import errors
from app.oci.client import RegistryClient
from app.oci.descriptor import Descriptor
from app.oci.digests import fallback_tag
from app.oci.manifest import Manifest
from app.oci.refs import ImageRef

# cosign's tag-based attachments: signatures, attestations, SBOMs.
LEGACY_SUFFIXES = (".sig", ".att", ".sbom")
# Referrers of referrers (a signature over an SBOM...) are followed this deep.
MAX_REFERRER_DEPTH = 3
# An index nested in an index (rare) is followed this deep.
MAX_INDEX_DEPTH = 2
# Registry reads in flight at once while collecting.
COLLECT_CONCURRENCY = 8


class Role(StrEnum):
    """Why a manifest is carried."""

    image = "image"  # the manifest or index the caller named
    manifest = "manifest"  # a platform manifest, or a part of another carried manifest
    referrer = "referrer"  # refers to ``subject`` through the referrers API
    legacy = "legacy"  # a cosign ``sha256-<hex>.sig``/``.att``/``.sbom`` tag


@dataclass(frozen=True)
class Platform:
    """``os/architecture[/variant]`` as ``--platform`` takes it."""

    os: str
    architecture: str
    variant: str | None = None

    @classmethod
    def parse(cls, text: str) -> Platform:
        """``linux/arm64/v8`` -> Platform; ``InputError`` (``input.platform``) otherwise."""
        parts = text.strip().split("/")
        if len(parts) not in (2, 3) or not all(p.strip() for p in parts):
            raise InputError(
                f"platform {text[:80]!r} is not os/architecture[/variant] (e.g. linux/amd64)",
                code="input.platform",
            )
        return cls(
            os=parts[0], architecture=parts[1], variant=parts[2] if len(parts) == 3 else None
        )

    def matches(self, platform: dict[str, object] | None) -> bool:
        """Whether an index entry's ``platform`` is this one (no variant: any variant)."""
        platform = platform or {}
        return (
            platform.get("os") == self.os
            and platform.get("architecture") == self.architecture
            and (self.variant is None or platform.get("variant") == self.variant)
        )

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


@dataclass(frozen=True)
class Item:
    """One manifest to carry, and what to do with it at the destination."""

    manifest: Manifest
    role: Role
    tag: str | None = None  # the tag to point at it (the image's tag, a legacy tag)
    subject: str | None = None  # for a referrer: the digest it refers to

    @property
    def digest(self) -> str:
        return self.manifest.digest

    @property
    def blobs(self) -> list[Descriptor]:
        """The config and layers of an image manifest (an index has none)."""
        if self.manifest.is_index:
            return []
        config = self.manifest.config
        return ([config] if config is not None else []) + self.manifest.layers


@dataclass(frozen=True)
class ImageGraph:
    """Everything carried for one image, in push order (see the module doc)."""

    source: ImageRef  # pinned to the digest the caller's reference named
    items: tuple[Item, ...]
    platforms: tuple[str, ...] = field(default=())  # the platforms carried, for an index
    # The manifests whose referrers and legacy tags are carried (pinned references).
    subjects: tuple[ImageRef, ...] = field(default=())

    def blobs(self) -> list[Descriptor]:
        """Every blob of every item, each digest once."""
        seen: dict[str, Descriptor] = {}
        for item in self.items:
            for blob in item.blobs:
                seen.setdefault(blob.digest, blob)
        return list(seen.values())

    def tagged(self) -> Item | None:
        """The item the image's tag points at, if any."""
        return next((i for i in self.items if i.role is not Role.legacy and i.tag), None)

    def count(self, role: Role) -> int:
        return sum(1 for i in self.items if i.role is role)


async def collect_graph(
    client: RegistryClient,
    ref: ImageRef,
    *,
    platforms: Sequence[Platform] = (),
    referrers: bool = True,
) -> ImageGraph:
    """Read from the registry everything a copy of ``ref`` carries (see the module doc).

    ``referrers=False`` carries the image alone (no referrers, no legacy tags). Raises
    ``InputError`` (``input.platform``) when ``platforms`` selects nothing of an index, and
    ``RegistryError`` when the registry cannot be read or serves bytes that do not match.
    """
    graph = await collect_image(client, ref, platforms=platforms)
    if not referrers:
        return graph
    found = await collect_attachments(client, graph.subjects)
    return replace(graph, items=tuple(_unique([*graph.items, *found])))


async def collect_image(
    client: RegistryClient,
    ref: ImageRef,
    *,
    platforms: Sequence[Platform] = (),
    top: Manifest | None = None,
) -> ImageGraph:
    """The image part of ``collect_graph``: the manifests and blobs, no attachments yet.

    ``top`` is the manifest ``ref`` names, when the caller has read it already.
    """
    collector = _Collector(client)
    # By tag, one GET answers both what the tag points at and the manifest (checked against
    # the registry's Docker-Content-Digest): no HEAD first.
    top = top or await client.get_manifest(ref)
    pinned = ref.with_digest(top.digest)
    items: list[Item] = []
    subjects: list[ImageRef] = []
    carried: tuple[str, ...] = ()
    chosen = _chosen_entries(ref, top, platforms)
    if chosen is not None:
        carried = tuple(_platform_text(e) for e in chosen)
        if len(chosen) == len(top.manifests):
            items += await collector.tree(top, tag=ref.tag, role=Role.image)
            subjects = [top.ref, *[i.manifest.ref for i in items if i.role is Role.manifest]]
        else:
            tag = ref.tag if len(chosen) == 1 else None
            parts = await asyncio.gather(
                *(collector.tree_of(pinned.with_digest(e.digest), tag=tag) for e in chosen)
            )
            for part in parts:
                items += part
            # The index's own signatures are kept (listed under its digest) though the
            # index itself is not carried.
            subjects = [i.manifest.ref for i in items if i.role is Role.image] + [top.ref]
    else:
        items += await collector.tree(top, tag=ref.tag, role=Role.image)
        subjects = [i.manifest.ref for i in items]
        if top.is_index:
            carried = tuple(_platform_text(e) for e in top.manifests)
    return ImageGraph(
        source=pinned, items=tuple(_unique(items)), platforms=carried, subjects=tuple(subjects)
    )


def first_subjects(
    ref: ImageRef, top: Manifest, *, platforms: Sequence[Platform] = ()
) -> tuple[ImageRef, ...]:
    """The subjects of ``collect_image``'s graph that ``top`` (the manifest ``ref`` names)
    tells without reading further: itself and the manifests it lists (those ``platforms``
    selects), so that their attachments can be read while the image is. An index nested in
    an index adds subjects known only once it is read (``ImageGraph.subjects`` has all)."""
    chosen = _chosen_entries(ref, top, platforms)
    entries = top.manifests if chosen is None else chosen
    return (top.ref, *(top.ref.with_digest(e.digest) for e in entries))


def _chosen_entries(
    ref: ImageRef, top: Manifest, platforms: Sequence[Platform]
) -> list[Descriptor] | None:
    """The entries of the index ``top`` that ``platforms`` selects; None when nothing is
    selected (not an index, or no ``platforms``); ``InputError`` when none matches."""
    if not (top.is_index and platforms):
        return None
    entries = top.manifests
    chosen = [e for e in entries if any(p.matches(e.platform) for p in platforms)]
    if not chosen:
        offered = ", ".join(_platform_text(e) for e in entries) or "nothing"
        raise InputError(
            f"{ref} has no manifest for {', '.join(map(str, platforms))} (it offers: {offered})",
            code="input.platform",
        )
    return chosen


async def collect_attachments(
    client: RegistryClient,
    subjects: Sequence[ImageRef],
    *,
    tags: Awaitable[set[str] | None] | None = None,
) -> list[Item]:
    """The referrers and legacy tags of ``subjects`` (pinned references, of one repository),
    each subject before its referrers. ``tags`` is ``repository_tags`` of the repository
    their evidence lives in (``evidence_home``) when the caller has started it already."""
    listings = (
        {client.evidence_home(subjects[0]).name: tags} if subjects and tags is not None else {}
    )
    return _unique(await _Collector(client, listings=listings).attachments(subjects))


async def repository_tags(client: RegistryClient, ref: ImageRef) -> set[str] | None:
    """The tags of ``ref``'s repository; None when the registry will not list them (each tag
    is then asked for)."""
    try:
        return set(await client.list_tags(ref))
    except RegistryError:
        return None


class _Collector:
    """Reads manifests with bounded concurrency."""

    def __init__(
        self,
        client: RegistryClient,
        *,
        listings: dict[str, Awaitable[set[str] | None]] | None = None,
    ) -> None:
        self._client = client
        self._slots = asyncio.Semaphore(COLLECT_CONCURRENCY)
        # Tags of each repository, when the registry lists them: a referrers fallback tag or
        # a legacy tag that is not listed is not asked for. ``listings``: those already
        # being listed, by repository name.
        self._tags: dict[str, set[str] | None] = {}
        self._listings = dict(listings or {})
        self._tags_lock = asyncio.Lock()

    async def _tag_set(self, ref: ImageRef) -> set[str] | None:
        async with self._tags_lock:  # one listing per repository
            if ref.name not in self._tags:
                listing = self._listings.pop(ref.name, None)
                self._tags[ref.name] = await (listing or repository_tags(self._client, ref))
            return self._tags[ref.name]

    async def _manifest(self, ref: ImageRef) -> Manifest:
        async with self._slots:
            return await self._client.get_manifest(ref)

    async def tree_of(self, ref: ImageRef, *, tag: str | None) -> list[Item]:
        return await self.tree(await self._manifest(ref), tag=tag, role=Role.image)

    async def tree(
        self,
        manifest: Manifest,
        *,
        tag: str | None,
        role: Role,
        subject: str | None = None,
        depth: int = 0,
    ) -> list[Item]:
        """``manifest`` after the manifests it lists (an index), deepest first."""
        items: list[Item] = []
        if manifest.is_index:
            if depth >= MAX_INDEX_DEPTH:
                raise RegistryError(
                    f"index {manifest.digest} of {manifest.ref.name} nests indexes deeper "
                    f"than {MAX_INDEX_DEPTH}; it is not copied",
                    code=errors.INVALID_MANIFEST,
                )
            children = await asyncio.gather(
                *(self._manifest(manifest.ref.with_digest(e.digest)) for e in manifest.manifests)
            )
            for child in children:
                items += await self.tree(child, tag=None, role=Role.manifest, depth=depth + 1)
        items.append(Item(manifest=manifest, role=role, tag=tag, subject=subject))
        return items

    async def attachments(self, subjects: Sequence[ImageRef]) -> list[Item]:
        """The legacy tags and the referrers (recursively) of every subject, all read at
        once."""
        legacy, referrers = await asyncio.gather(
            asyncio.gather(*(self._legacy(s) for s in subjects)),
            asyncio.gather(*(self._referrer_tree(s, depth=0) for s in subjects)),
        )
        return [item for part in [*legacy, *referrers] for item in part]

    async def _referrer_tree(self, subject: ImageRef, *, depth: int) -> list[Item]:
        """The referrers of ``subject``, each followed by its own referrers (down to
        ``MAX_REFERRER_DEPTH``)."""
        descriptors = await self._referrers(subject)
        home = self._client.evidence_home(subject)
        manifests = await asyncio.gather(
            *(self._manifest(home.with_digest(d.digest)) for d in descriptors)
        )
        trees = await asyncio.gather(
            *(self.tree(m, tag=None, role=Role.referrer, subject=subject.digest) for m in manifests)
        )
        found = [item for tree in trees for item in tree]
        if depth + 1 < MAX_REFERRER_DEPTH:
            deeper = await asyncio.gather(
                *(self._referrer_tree(m.ref, depth=depth + 1) for m in manifests)
            )
            found += [item for part in deeper for item in part]
        return found

    async def _referrers(self, subject: ImageRef) -> list[Descriptor]:
        home = self._client.evidence_home(subject)
        async with self._slots:
            supported = await self._client.has_referrers_api(home)
        if not supported:
            tags = await self._tag_set(home)
            if tags is not None and fallback_tag(_digest(subject)) not in tags:
                return []  # no API and no fallback index: no referrers
        async with self._slots:
            return await self._client.list_referrers(subject)

    async def _legacy(self, subject: ImageRef) -> list[Item]:
        digest = _digest(subject)
        home = self._client.evidence_home(subject)
        base = fallback_tag(digest)
        tags = [base + suffix for suffix in LEGACY_SUFFIXES]
        listed = await self._tag_set(home)
        if listed is not None:
            tags = [t for t in tags if t in listed]
        fetched = await asyncio.gather(*(self._optional(home.with_tag(t)) for t in tags))
        return [
            Item(manifest=m, role=Role.legacy, tag=t, subject=digest)
            for t, m in zip(tags, fetched, strict=True)
            if m is not None
        ]

    async def _optional(self, ref: ImageRef) -> Manifest | None:
        try:
            return await self._manifest(ref)
        except RegistryError as e:
            if e.code == errors.NOT_FOUND:
                return None
            raise


def _digest(subject: ImageRef) -> str:
    if subject.digest is None:  # pragma: no cover - subjects are pinned by construction
        raise ValueError(f"subject {subject} is not pinned to a digest")
    return subject.digest


def _platform_text(entry: Descriptor) -> str:
    platform = entry.platform or {}
    return (
        "/".join(str(platform[k]) for k in ("os", "architecture", "variant") if platform.get(k))
        or "unknown"
    )


def _unique(items: list[Item]) -> list[Item]:
    """Each (digest, role, tag) once, first occurrence kept (order matters)."""
    seen: set[tuple[str, str, str | None]] = set()
    kept = []
    for item in items:
        key = (item.digest, item.role.value, item.tag)
        if key not in seen:
            seen.add(key)
            kept.append(item)
    return kept
