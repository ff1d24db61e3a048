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
    await client.push_referrer(ref.with_digest(digest), artifact_type=...,
                               layers=[(bundle_json, SIGSTORE_BUNDLE_V03, {})], annotations={})

What it guarantees:

- every byte fetched by digest hashes to that digest, and a manifest fetched by tag hashes to
  the ``Docker-Content-Digest`` the registry sent (``registry.digest_mismatch`` otherwise);
- bodies are read as a stream and abandoned past ``max_manifest_bytes`` / ``max_blob_bytes``
  whatever ``Content-Length`` says; at most ``max_referrers`` referrers, from at most
  ``max_referrer_pages`` pages, are read (the rest ignored, with a warning);
- only registries ``settings.registry_allowlist`` admits are contacted, never a link-local or
  metadata address (``app.oci.egress``); redirects are followed only for manifest and blob
  reads, never with credentials to another origin (``app.oci.transport``);
- each request has ``registry_request_timeout`` and each public call ``registry_total_timeout``;
  only idempotent requests (GET, HEAD, PUT of a manifest by digest) are retried, with back-off,
  on connection errors, 429 (``Retry-After`` honoured up to 10 s), 502, 503 and 504;
- HTTPS verifies against ``settings.registry_ca_bundle``; plain HTTP only for loopback and
  ``settings.insecure_registries`` hosts that do not speak TLS.

Reads (``resolve_digest``, ``get_manifest``, ``select_platform``, ``get_blob``,
``list_referrers``) go through the mirrors of ``settings.registry_mirrors`` in order, then
the upstream unless it is switched off (``app.oci.mirrors``). An endpoint that fails (no
answer, an error status, 404, content not matching the digest) is skipped; each but the
last gets a share of the time left (``min(registry_request_timeout, left / endpoints
left)``, with ``app.oci.budget`` knowing the caller's deadline), and one that did not
answer at all rests for ``registry_mirror_rest_seconds``: it is asked only when no other
endpoint answered (a 404 elsewhere is answer enough). A referrer listing that
is empty on a mirror (a proxy cache may not keep referrers) is "not here": the next endpoint
is asked. Writes never go to mirrors. Referrers are listed and pushed where
``settings.signature_repositories`` keeps the image's evidence (``evidence_home``), with the
image's own digest as subject.

The HTTP layer (schemes, retries, limits) is ``app.oci.transport``, authentication
``app.oci.auth``, manifest checks ``app.oci.manifest``.

Every failure is a ``RegistryError`` with one of the codes of ``app.oci.errors`` and a message
naming the registry, the repository and what went wrong. An invalid reference or digest given
by the caller is an ``InputError``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import re
import time
from collections import OrderedDict
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from typing import Any, TypeVar

import httpx

from app.errors import InputError, RegistryError
from app.limits import MAX_ERROR_BODY_BYTES
from app.oci import budget, errors, media
from app.oci.descriptor import Descriptor
from app.oci.digests import compute_digest, fallback_tag, matches_digest, parse_digest
from app.oci.errors import registry_error
from app.oci.locks import IndexLock, ProcessLock
from app.oci.manifest import Manifest, parse_manifest, parse_referrers_page
from app.oci.mirrors import Location, Mirrors, note_served
from app.oci.refs import ImageRef
from app.oci.settings import RegistrySettings
from app.oci.signature_repos import SignatureRepositories
from app.oci.transport import (
    RegistryTransport,
    Reply,
    registry_message,
    same_origin,
)

__all__ = ["Descriptor", "Manifest", "RegistryClient"]

log = logging.getLogger(__name__)

# Blobs this small are uploaded without asking first whether the registry has them.
SMALL_BLOB_BYTES = 64 * 1024
# How long a registry's answer about the referrers API is believed (it can be upgraded).
REFERRERS_API_MEMORY_SECONDS = 600.0
_NEXT_LINK = re.compile(r'<([^>]*)>\s*;\s*(?:[^,]*;\s*)*rel="?next"?')
# A mirror that did not answer at all; it is asked after the others for a while.
_SILENT = frozenset({errors.UNREACHABLE, errors.TIMEOUT})
T = TypeVar("T")


class RegistryClient:
    """An async client for the OCI distribution API of any number of registries.

    Build it with ``from_settings``; ``transport`` exists for tests that mount an in-process
    app. The client keeps bearer tokens and learned challenges per registry.
    """

    # How often a fallback-index update is retried when its entry keeps disappearing.
    fallback_attempts = 5

    def __init__(
        self,
        *,
        settings: RegistrySettings,
        transport: httpx.AsyncBaseTransport | None = None,
        index_lock: IndexLock | None = None,
    ) -> None:
        self._settings = settings
        self._transport = RegistryTransport(settings=settings, transport=transport)
        self._index_lock: IndexLock = index_lock or ProcessLock()
        self._mirrors = Mirrors(settings.registry_mirrors)
        self._homes = SignatureRepositories(settings.signature_repositories)
        # Endpoints that did not answer, and until when (monotonic) they are asked last.
        self._resting: dict[str, float] = {}
        self._blob_locks = ProcessLock()
        # Content-addressed facts learnt from earlier answers: blobs known to be present and
        # manifest descriptors (media type, size) learnt when resolving a tag. A digest names
        # the same bytes forever, so these spare a HEAD per blob and a GET per referrer push.
        self._known: OrderedDict[str, Descriptor] = OrderedDict()
        # Registries known to serve the referrers API (True) or not (False), and until when
        # (monotonic) that is believed: a registry can be upgraded in place.
        self._referrers_api: dict[str, tuple[bool, float]] = {}
        # Registries that acknowledged referrer pushes with OCI-Subject (no fallback index).
        self._subject_registries: set[str] = set()
        # How long to wait before re-reading a fallback index we wrote, to see whether a
        # writer outside Sealgate's lock dropped our entry (see app.oci.locks).
        self.fallback_settle_seconds = settings.referrers_fallback_settle_seconds

    @classmethod
    def from_settings(
        cls, settings: RegistrySettings, *, index_lock: IndexLock | None = None
    ) -> RegistryClient:
        """A client configured by ``settings`` (timeouts, limits, TLS, credentials).

        ``index_lock`` serialises fallback-index writers; ``Services`` passes a PostgreSQL
        advisory lock when the database is PostgreSQL so that replicas take turns.
        """
        return cls(settings=settings, index_lock=index_lock)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._transport.aclose()

    def plain_http_allowed(self, host: str) -> bool:
        """Whether ``host`` (``name[:port]``) may be spoken to over plain HTTP."""
        return self._transport.plain_http_allowed(host)

    def hold_tag(self, ref: ImageRef, tag: str) -> AbstractAsyncContextManager[None]:
        """Take turns with Sealgate's other writers of ``tag`` in ``ref``'s repository.

        For read-modify-write updates of a tag (a fallback index, a cosign ``.sig``
        manifest): ``async with client.hold_tag(ref, tag):`` holds the client's index lock
        (in process, and across replicas on PostgreSQL) for that tag.
        """
        return self._index_lock.hold(f"{ref.registry}/{ref.repository}:{tag}")

    # -- public operations -------------------------------------------------------------------

    async def resolve_digest(self, ref: ImageRef, *, mirrors: bool = True) -> str:
        """The digest ``ref`` names: its own digest if pinned, else what its tag points at.

        A tag is resolved with HEAD (every manifest media type in ``Accept``) and, when the
        registry sends no ``Docker-Content-Digest``, with GET and the digest of the bytes.
        ``mirrors=False`` asks ``ref``'s registry itself (a read before a write).
        """
        if ref.digest:
            return ref.digest
        async with self._transport.deadline(ref, f"resolving {ref}"):
            if not mirrors:
                return await self._resolve_at(ref)
            return await self._routed(ref, f"resolving {ref}", self._resolve_at)

    async def _resolve_at(self, ref: ImageRef) -> str:
        """``resolve_digest`` at one endpoint."""
        reply = await self._transport.send(
            "HEAD",
            ref,
            await self._transport.url(ref, f"manifests/{ref.reference}"),
            headers={"Accept": ", ".join(media.MANIFEST_TYPES)},
            limit=0,
            idempotent=True,
            redirects=True,
        )
        if reply.status in (405, 501):  # HEAD not supported: GET below
            reply = replace(reply, status=200, headers=httpx.Headers())
        self._transport.check_status(reply, ref, f"manifest {ref.reference}")
        header = reply.headers.get("Docker-Content-Digest")
        if header:
            try:
                digest = parse_digest(header)
            except InputError as e:
                raise registry_error(
                    errors.PROTOCOL,
                    ref=ref,
                    problem=f"Docker-Content-Digest {header!r} is not a digest",
                ) from e
            self._learn_manifest(ref, digest, reply.headers)
            return digest
        manifest, _ = await self._fetch_manifest(ref)
        return manifest.digest

    async def get_manifest(self, ref: ImageRef, *, mirrors: bool = True) -> Manifest:
        """The manifest or index ``ref`` names, by digest if pinned, else by tag.

        ``mirrors=False`` asks ``ref``'s registry itself: the read of a read-modify-write
        must see what the write will replace, not a mirror's copy.

        Raises ``registry.not_found``, ``registry.digest_mismatch``, ``registry.too_large``
        (over ``max_manifest_bytes``) or ``registry.invalid_manifest`` among others.
        """
        async with self._transport.deadline(ref, f"fetching manifest {ref}"):
            if not mirrors:
                manifest, _ = await self._fetch_manifest(ref)
                return manifest
            return await self._manifest(ref, f"manifest {ref.reference}")

    async def select_platform(
        self,
        index: Manifest,
        *,
        os: str = "linux",
        architecture: str = "amd64",
        variant: str | None = None,
    ) -> Manifest:
        """The image manifest for one platform of ``index`` (``index`` itself if not an index).

        ``variant=None`` accepts any variant (the first listed wins). Raises
        ``registry.not_found`` naming the platforms on offer when none matches.
        """
        if not index.is_index:
            return index
        wanted = "/".join(p for p in (os, architecture, variant) if p)
        offered = []
        for entry in index.manifests:
            platform = entry.platform or {}
            offered.append(
                "/".join(
                    str(platform.get(k))
                    for k in ("os", "architecture", "variant")
                    if platform.get(k)
                )
            )
            if (
                platform.get("os") == os
                and platform.get("architecture") == architecture
                and (variant is None or platform.get("variant") == variant)
            ):
                async with self._transport.deadline(index.ref, f"fetching the {wanted} manifest"):
                    chosen = await self._manifest(
                        index.ref.with_digest(entry.digest), f"the {wanted} manifest"
                    )
                if chosen.is_index:
                    raise registry_error(
                        errors.INVALID_MANIFEST,
                        ref=index.ref,
                        problem=f"index {index.digest} names another index for {wanted}",
                    )
                return chosen
        raise registry_error(
            errors.NOT_FOUND,
            ref=index.ref,
            problem=f"index {index.digest} has no manifest for {wanted} "
            f"(it offers: {', '.join(offered) or 'nothing'})",
        )

    async def get_blob(self, ref: ImageRef, digest: str, *, max_bytes: int | None = None) -> bytes:
        """The blob ``digest`` of ``ref``'s repository, checked against the digest.

        Reads at most ``max_bytes`` (default ``settings.max_blob_bytes``), else
        ``registry.too_large``.
        """
        parse_digest(digest)
        limit = max_bytes or self._settings.max_blob_bytes

        async def _at(at: ImageRef) -> bytes:
            reply = await self._transport.send(
                "GET",
                at,
                await self._transport.url(at, f"blobs/{digest}"),
                limit=limit,
                idempotent=True,
                redirects=True,
            )
            self._transport.check_status(reply, at, f"blob {digest}")
            if not matches_digest(reply.body, digest):
                raise registry_error(
                    errors.DIGEST_MISMATCH,
                    ref=at,
                    problem=f"blob {digest} was served with content hashing to "
                    f"{compute_digest(reply.body, algorithm=digest.partition(':')[0])}",
                )
            return reply.body

        async with self._transport.deadline(ref, f"fetching blob {digest}"):
            return await self._routed(ref, f"blob {digest}", _at)

    async def push_blob(self, ref: ImageRef, data: bytes, *, media_type: str) -> Descriptor:
        """Upload ``data`` to ``ref``'s repository unless it is there; return its descriptor.

        Monolithic (POST then PUT) up to ``settings.chunked_upload_threshold`` bytes, chunked
        (POST, PATCH per chunk, PUT) above it.
        """
        async with self._transport.deadline(ref, "uploading a blob"):
            return await self._push_blob(ref, data, media_type=media_type)

    async def push_manifest(
        self,
        ref: ImageRef,
        manifest: dict[str, Any] | bytes,
        *,
        media_type: str,
        tag: str | None = None,
    ) -> Descriptor:
        """Store ``manifest`` in ``ref``'s repository, by ``tag`` if given, else by digest.

        A dict is serialised compactly; bytes are sent as they are (and must be JSON).
        """
        async with self._transport.deadline(ref, "pushing a manifest"):
            descriptor, _ = await self._put_manifest(ref, manifest, media_type=media_type, tag=tag)
            return descriptor

    async def list_referrers(
        self, ref: ImageRef, *, artifact_type: str | None = None
    ) -> list[Descriptor]:
        """The referrers of the manifest ``ref.digest`` names, at most ``max_referrers``,
        read from ``evidence_home(ref)`` (through its mirrors; the first endpoint listing any
        referrer wins).

        Uses ``GET /v2/<name>/referrers/<digest>`` (following ``Link: rel="next"`` for at most
        ``max_referrer_pages`` pages; past either cap the rest is ignored with a warning, as
        an endless ``Link`` chain would otherwise keep us busy until the deadline); on 404 reads
        the ``<alg>-<hex>`` fallback tag (missing: no referrers; not a valid index: none, with a
        warning), straight away on a registry known to have no API (a 404 there, believed
        for ``REFERRERS_API_MEMORY_SECONDS``).
        ``artifact_type`` is applied here when the registry did not report applying it.
        """
        subject = _pinned(ref, "listing referrers")
        home = self.evidence_home(ref)
        async with self._transport.deadline(ref, f"listing referrers of {subject}"):
            return await self._routed(
                home,
                f"referrers of {subject}",
                lambda at: self._list_referrers(at, subject=subject, artifact_type=artifact_type),
                empty=lambda found: not found,
            )

    async def referrers_index(
        self, ref: ImageRef, *, artifact_type: str | None = None
    ) -> dict[str, Any]:
        """``list_referrers`` as the OCI image index the referrers API returns."""
        referrers = await self.list_referrers(ref, artifact_type=artifact_type)
        return {
            "schemaVersion": 2,
            "mediaType": media.OCI_INDEX,
            "manifests": [d.to_json() for d in referrers],
        }

    async def push_referrer(
        self,
        subject: ImageRef,
        *,
        artifact_type: str,
        layers: list[tuple[bytes, str, dict[str, str]]],
        annotations: dict[str, str],
    ) -> Descriptor:
        """Push an artifact referring to ``subject``; return the referrer's descriptor.

        It is pushed to ``evidence_home(subject)`` (the image's own repository unless a
        signature repository is configured for it), always naming ``subject``'s digest.

        ``layers`` are ``(data, media_type, annotations)``. The empty config and the layers are
        uploaded first, then the manifest (``artifactType``, ``subject`` with the subject's
        media type, digest and size) by digest. Without an ``OCI-Subject`` answer the
        ``<alg>-<hex>`` fallback index is updated: no duplicates, and re-read and retried when
        another writer raced us (``registry.conflict`` if that never settles).
        """
        async with self._transport.deadline(subject, f"pushing a referrer of {subject}"):
            target = self._known_manifest(subject)
            if target is None:
                fetched = await self._manifest(subject, f"manifest {subject.reference}")
                target = fetched.descriptor
            home = self.evidence_home(subject)
            await self._push_blob(home, media.EMPTY_CONFIG_DATA, media_type=media.OCI_EMPTY)
            layer_descriptors = []
            for data, layer_type, layer_annotations in layers:
                uploaded = await self._push_blob(home, data, media_type=layer_type)
                layer_descriptors.append(
                    replace(uploaded, annotations=dict(layer_annotations)).to_json()
                )
            manifest: dict[str, Any] = {
                "schemaVersion": 2,
                "mediaType": media.OCI_MANIFEST,
                "artifactType": artifact_type,
                "config": media.EMPTY_CONFIG.to_json(),
                "layers": layer_descriptors,
                "subject": target.to_json(),
            }
            if annotations:
                manifest["annotations"] = dict(annotations)
            pushed, headers = await self._put_manifest(
                home, manifest, media_type=media.OCI_MANIFEST, tag=None
            )
            referrer = Descriptor(
                media_type=media.OCI_MANIFEST,
                digest=pushed.digest,
                size=pushed.size,
                artifact_type=artifact_type,
                annotations=dict(annotations),
            )
            if headers.get("OCI-Subject") != target.digest:
                await self._add_to_fallback_index(home.with_digest(target.digest), referrer)
            return referrer

    def evidence_home(self, ref: ImageRef) -> ImageRef:
        """Where the signatures, attestations and scans of ``ref`` are read and written:
        the signature repository ``settings.signature_repositories`` names for it, else
        ``ref`` itself (tag and digest kept; see ``app.oci.signature_repos``)."""
        return self._homes.home(ref)

    # -- mirrors -----------------------------------------------------------------------------

    async def _routed(
        self,
        ref: ImageRef,
        what: str,
        read: Callable[[ImageRef], Awaitable[T]],
        *,
        empty: Callable[[T], bool] | None = None,
    ) -> T:
        """``read`` at each location of ``ref``'s route until one serves (module doc).

        ``empty`` tells an answer that serves nothing (an empty referrer listing): the next
        endpoint is asked, and the empty answer is returned only when none had more.
        """
        route = self._mirrors.route(ref)
        if len(route) == 1 and route[0].mirror is None:
            result = await read(ref)
            note_served(ref)
            return result
        if not route:
            raise registry_error(
                errors.NOT_ALLOWED,
                ref=ref,
                problem=f"{what}: the upstream is switched off and no mirror has the 'resolve' "
                "capability; name the image by digest",
            )
        healthy, resting = self._by_health(route)
        failures: list[RegistryError] = []
        nothing: list[T] = []
        ordered = [*healthy, *resting]
        for index, location in enumerate(ordered):
            if index == len(healthy) and (nothing or any(e.code not in _SILENT for e in failures)):
                # An endpoint answered (it lacks the content): the resting ones, which did
                # not answer moments ago, are not waited for.
                break
            try:
                if index == len(ordered) - 1:
                    result = await read(location.ref)
                else:
                    result = await self._within_share(
                        location, what, read, endpoints_left=len(ordered) - index
                    )
            except RegistryError as e:
                self._skipped(location, what, e)
                failures.append(e)
                continue
            self._resting.pop(location.endpoint, None)
            if empty is not None and empty(result):
                nothing = nothing or [result]
                continue
            note_served(location.ref)
            return result
        if nothing:
            return nothing[0]
        raise _unserved(ref, what, failures)

    async def _within_share(
        self,
        location: Location,
        what: str,
        read: Callable[[ImageRef], Awaitable[T]],
        *,
        endpoints_left: int,
    ) -> T:
        """``read`` at ``location`` within its share of the time left."""
        left = budget.remaining()
        if left is None:
            left = self._settings.registry_total_timeout
        share = min(self._settings.registry_request_timeout, left / endpoints_left)
        try:
            async with asyncio.timeout(share):
                return await read(location.ref)
        except TimeoutError as e:
            raise registry_error(
                errors.TIMEOUT,
                ref=location.ref,
                problem=f"{what}: no answer within {share:.2f} s (this endpoint's share of "
                "the time left)",
            ) from e

    def _by_health(self, route: tuple[Location, ...]) -> tuple[list[Location], list[Location]]:
        """``route`` split, in order, into endpoints not resting and those resting after
        they did not answer (asked only when no other endpoint answered at all)."""
        now = time.monotonic()
        resting = {e for e, until in self._resting.items() if until > now}
        return (
            [location for location in route if location.endpoint not in resting],
            [location for location in route if location.endpoint in resting],
        )

    def _skipped(self, location: Location, what: str, error: RegistryError) -> None:
        if error.code in _SILENT and self._settings.registry_mirror_rest_seconds > 0:
            self._resting[location.endpoint] = (
                time.monotonic() + self._settings.registry_mirror_rest_seconds
            )
        extra = {"endpoint": location.endpoint, "what": what, "code": error.code}
        if error.code == errors.DIGEST_MISMATCH:
            log.error(
                "registry endpoint skipped: it served other content than the digest names",
                extra=extra,
            )
        elif error.code == errors.NOT_FOUND:  # "not here": the next endpoint is asked
            log.debug("registry endpoint does not have it", extra=extra)
        else:
            log.warning("registry endpoint skipped", extra=extra)

    async def _manifest(self, ref: ImageRef, what: str) -> Manifest:
        """The manifest ``ref`` names through its route, carrying ``ref``'s own name."""

        async def _at(at: ImageRef) -> Manifest:
            manifest, _ = await self._fetch_manifest(at)
            return manifest

        manifest = await self._routed(ref, what, _at)
        return replace(manifest, ref=ref.with_digest(manifest.digest))

    # -- manifests ---------------------------------------------------------------------------

    async def _fetch_manifest(self, ref: ImageRef) -> tuple[Manifest, httpx.Headers]:
        reply = await self._transport.send(
            "GET",
            ref,
            await self._transport.url(ref, f"manifests/{ref.reference}"),
            headers={"Accept": ", ".join(media.MANIFEST_TYPES)},
            limit=self._settings.max_manifest_bytes,
            idempotent=True,
            redirects=True,
        )
        self._transport.check_status(reply, ref, f"manifest {ref.reference}")
        return parse_manifest(ref, body=reply.body, headers=reply.headers), reply.headers

    async def _put_manifest(
        self,
        ref: ImageRef,
        manifest: dict[str, Any] | bytes,
        *,
        media_type: str,
        tag: str | None,
    ) -> tuple[Descriptor, httpx.Headers]:
        if isinstance(manifest, bytes):
            raw = manifest
            try:
                document = json.loads(raw)
            except ValueError as e:
                raise InputError(f"the manifest to push is not JSON: {e}") from e
        else:
            document = manifest
            raw = json.dumps(manifest, separators=(",", ":"), ensure_ascii=False).encode()
        if len(raw) > self._settings.max_manifest_bytes:
            raise registry_error(
                errors.TOO_LARGE,
                ref=ref,
                problem=f"manifest of {len(raw)} bytes exceeds the "
                f"{self._settings.max_manifest_bytes}-byte limit",
            )
        digest = compute_digest(raw)
        target = ref.with_tag(tag).tag if tag is not None else digest
        reply = await self._transport.send(
            "PUT",
            ref,
            await self._transport.url(ref, f"manifests/{target}"),
            headers={"Content-Type": media_type},
            content=raw,
            limit=MAX_ERROR_BODY_BYTES,
            idempotent=tag is None,
            push=True,
        )
        if reply.status == 400:
            raise registry_error(
                errors.INVALID_MANIFEST,
                ref=ref,
                problem=f"the registry rejected manifest {digest}{registry_message(reply)}",
            )
        self._transport.check_status(reply, ref, f"pushing manifest {digest}")
        _check_echoed_digest(reply, ref, digest)
        artifact_type = document.get("artifactType") if isinstance(document, dict) else None
        descriptor = Descriptor(
            media_type=media_type,
            digest=digest,
            size=len(raw),
            artifact_type=artifact_type if isinstance(artifact_type, str) else None,
        )
        return descriptor, reply.headers

    # -- blobs -------------------------------------------------------------------------------

    async def _push_blob(self, ref: ImageRef, data: bytes, *, media_type: str) -> Descriptor:
        digest = compute_digest(data)
        descriptor = Descriptor(media_type=media_type, digest=digest, size=len(data))
        # One upload per blob at a time in this process: the others then find it present.
        # (distribution 2.8 can fail a manifest whose blob is being committed twice at once.)
        key = f"{ref.registry}/{ref.repository}@{digest}"
        async with self._blob_locks.hold(key):
            if key in self._known:
                return descriptor
            if len(data) <= SMALL_BLOB_BYTES:
                # Uploading a small blob costs what asking for it does; a blob already
                # present is simply committed again by the registry.
                return await self._upload_blob(ref, data, descriptor)
            exists = await self._transport.send(
                "HEAD",
                ref,
                await self._transport.url(ref, f"blobs/{digest}"),
                limit=0,
                idempotent=True,
                push=True,
                redirects=True,
            )
            if exists.status == 200:
                self._remember(key, descriptor)
                return descriptor
            return await self._upload_blob(ref, data, descriptor)

    async def _upload_blob(self, ref: ImageRef, data: bytes, descriptor: Descriptor) -> Descriptor:
        """POST then PUT (PATCHes in between above the chunk threshold); checks the echo."""
        threshold = self._settings.chunked_upload_threshold
        chunks = [data[i : i + threshold] for i in range(0, len(data), threshold)] or [b""]
        await self._upload_chunks(ref, descriptor, _iterate(chunks))
        return descriptor

    async def _upload_chunks(
        self,
        ref: ImageRef,
        descriptor: Descriptor,
        chunks: AsyncIterator[bytes],
        *,
        mount_from: str | None = None,
    ) -> bool:
        """Upload the blob ``chunks`` make up: POST (with ``mount_from``, a mount request: True
        when the registry mounts the blob and nothing is sent); one chunk goes in the PUT
        (monolithic), more are PATCHed one by one then committed by an empty PUT. The bytes
        are hashed on the way and must be ``descriptor``'s (``registry.digest_mismatch``
        before the commit otherwise); the registry's echoed digest is checked too. False when
        the bytes were uploaded."""
        digest = descriptor.digest
        hasher = hashlib.new(digest.partition(":")[0])

        async def open_upload() -> Reply | None:
            if mount_from is not None:
                return await self._post_mount(ref, descriptor, from_repository=mount_from)
            reply = await self._transport.send(
                "POST",
                ref,
                await self._transport.url(ref, "blobs/uploads/"),
                limit=MAX_ERROR_BODY_BYTES,
                idempotent=False,
                push=True,
            )
            self._transport.check_status(reply, ref, "starting a blob upload")
            return reply

        # The upload is opened while the first chunk is read (from another registry, a
        # file): the two waits overlap instead of adding up.
        opening = asyncio.ensure_future(open_upload())
        try:
            chunk = await anext(chunks, None)
            started = await opening
        except BaseException:
            _abandon(opening)
            raise
        if started is None:  # mounted: the bytes read are not needed
            await _close(chunks)
            return True
        location = _location(started, ref)
        pending: bytes | None = None
        offset = 0
        while chunk is not None:
            hasher.update(chunk)
            if pending is not None:
                location = await self._patch_chunk(ref, location, pending, offset, digest)
                offset += len(pending)
            pending = chunk
            chunk = await anext(chunks, None)
        body = pending or b""
        if offset and body:  # chunked: the last chunk is PATCHed too, the PUT is empty
            location = await self._patch_chunk(ref, location, body, offset, digest)
            offset += len(body)
            body = b""
        total = offset + len(body)
        actual = f"{digest.partition(':')[0]}:{hasher.hexdigest()}"
        if actual != digest or total != descriptor.size:
            raise registry_error(
                errors.DIGEST_MISMATCH,
                ref=ref,
                problem=f"blob {digest} ({descriptor.size} bytes) was given {total} bytes "
                f"hashing to {actual}; the upload was not committed",
            )
        finished = await self._transport.send(
            "PUT",
            ref,
            location.copy_merge_params({"digest": digest}),
            headers={"Content-Type": "application/octet-stream"},
            content=body,
            limit=MAX_ERROR_BODY_BYTES,
            idempotent=False,
            push=True,
        )
        self._transport.check_status(finished, ref, f"completing the upload of blob {digest}")
        _check_echoed_digest(finished, ref, digest)
        self._remember(f"{ref.registry}/{ref.repository}@{digest}", descriptor)
        return False

    async def _patch_chunk(
        self, ref: ImageRef, location: httpx.URL, chunk: bytes, start: int, digest: str
    ) -> httpx.URL:
        patched = await self._transport.send(
            "PATCH",
            ref,
            location,
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Range": f"{start}-{start + len(chunk) - 1}",
            },
            content=chunk,
            limit=MAX_ERROR_BODY_BYTES,
            idempotent=False,
            push=True,
        )
        self._transport.check_status(patched, ref, f"uploading bytes {start}+ of blob {digest}")
        return _location(patched, ref)

    # -- what the client has learnt ------------------------------------------------------------

    _KNOWN_LIMIT = 4096

    def _remember(self, key: str, descriptor: Descriptor) -> None:
        self._known[key] = descriptor
        self._known.move_to_end(key)
        while len(self._known) > self._KNOWN_LIMIT:
            self._known.popitem(last=False)

    def _learn_manifest(self, ref: ImageRef, digest: str, headers: httpx.Headers) -> None:
        """Keep a manifest's descriptor from a HEAD answer, when it gave type and size."""
        media_type = headers.get("Content-Type", "").split(";")[0].strip()
        size = headers.get("Content-Length", "")
        if media_type in media.MANIFEST_TYPES and size.isdigit():
            self._remember(
                f"{ref.registry}/{ref.repository}@{digest}#manifest",
                Descriptor(media_type=media_type, digest=digest, size=int(size)),
            )

    def _known_manifest(self, ref: ImageRef) -> Descriptor | None:
        return self._known.get(f"{ref.registry}/{ref.repository}@{ref.digest}#manifest")

    # -- referrers ---------------------------------------------------------------------------

    async def _list_referrers(
        self, ref: ImageRef, *, subject: str, artifact_type: str | None
    ) -> list[Descriptor]:
        if self._knows_referrers_api(ref) is False:
            # A registry without the API: its 404 would only send us to the fallback tag.
            return await self._fallback_referrers(ref, subject=subject, artifact_type=artifact_type)
        cap = self._settings.max_referrers
        first = await self._transport.url(ref, f"referrers/{subject}")
        if artifact_type:
            first = first.copy_merge_params({"artifactType": artifact_type})
        url: httpx.URL | None = first
        found: list[Descriptor] = []
        seen_pages: set[str] = set()
        while url is not None:
            if len(seen_pages) >= self._settings.max_referrer_pages:
                log.warning(
                    "referrers of %s@%s span more than %d pages; the rest are ignored",
                    ref.name,
                    subject,
                    self._settings.max_referrer_pages,
                )
                return found
            seen_pages.add(str(url))
            reply = await self._transport.send(
                "GET",
                ref,
                url,
                headers={"Accept": media.OCI_INDEX},
                limit=self._settings.max_manifest_bytes,
                idempotent=True,
            )
            if reply.status == 404 and not found and len(seen_pages) == 1:
                self._learn_referrers_api(ref, supported=False)
                return await self._fallback_referrers(
                    ref, subject=subject, artifact_type=artifact_type
                )
            self._transport.check_status(reply, ref, f"referrers of {subject}")
            if len(seen_pages) == 1:
                self._learn_referrers_api(ref, supported=True)
            page = parse_referrers_page(ref, reply.body)
            filtered = "artifacttype" in reply.headers.get("OCI-Filters-Applied", "").lower()
            for descriptor in page:
                if artifact_type and not filtered and descriptor.artifact_type != artifact_type:
                    continue
                if any(d.digest == descriptor.digest for d in found):
                    continue
                if len(found) >= cap:
                    log.warning(
                        "referrers of %s@%s exceed the cap of %d; the rest are ignored",
                        ref.name,
                        subject,
                        cap,
                    )
                    return found
                found.append(descriptor)
            url = _next_page(ref, reply) if page else None
            if url is not None and str(url) in seen_pages:
                raise registry_error(
                    errors.PROTOCOL, ref=ref, problem=f"referrers pagination of {subject} loops"
                )
        return found

    async def _fallback_referrers(
        self, ref: ImageRef, *, subject: str, artifact_type: str | None
    ) -> list[Descriptor]:
        entries, _, _ = await self._read_fallback_index(ref, subject=subject)
        found = [d for d in entries if artifact_type is None or d.artifact_type == artifact_type]
        cap = self._settings.max_referrers
        if len(found) > cap:
            log.warning(
                "referrers of %s@%s exceed the cap of %d; the rest are ignored",
                ref.name,
                subject,
                cap,
            )
        return found[:cap]

    async def _read_fallback_index(
        self, ref: ImageRef, *, subject: str
    ) -> tuple[list[Descriptor], list[dict[str, Any]], str | None]:
        """The fallback tag's entries (parsed and as stored) and its ETag; empty if missing.

        A tag that is not a valid OCI index is treated as no referrers, with a warning, as
        distribution-spec asks.
        """
        tag_ref = ref.with_tag(fallback_tag(subject))
        try:
            index, headers = await self._fetch_manifest(tag_ref)
        except RegistryError as e:
            if e.code == errors.NOT_FOUND:
                return [], [], None
            if e.code in (errors.INVALID_MANIFEST, errors.TOO_LARGE):
                log.warning("ignoring the referrers fallback tag of %s: %s", ref.name, e.message)
                return [], [], None
            raise
        if index.media_type != media.OCI_INDEX:
            log.warning(
                "ignoring the referrers fallback tag %s of %s: it is %s, not an OCI index",
                tag_ref.tag,
                ref.name,
                index.media_type,
            )
            return [], [], None
        raw_entries = [d for d in index.json.get("manifests") or [] if isinstance(d, dict)]
        return index.manifests, raw_entries, headers.get("ETag")

    async def _add_to_fallback_index(
        self, subject: ImageRef, referrer: Descriptor, *more: Descriptor
    ) -> None:
        """Add ``referrer`` (and ``more``, in one write) to the fallback index of ``subject``
        and confirm they stay there.

        With ``ETag`` the write is conditional (412 = raced, retry). Registries such as
        distribution 2.8 send an ETag but ignore ``If-Match``, so every write is also confirmed
        by re-reading it after ``fallback_settle_seconds``: a writer that read before our
        write and wrote after it has dropped our entry, and we add it again. With the
        default of 0 no writer outside Sealgate is expected and the write is not re-read.
        Sealgate's own writers, in this process and (on PostgreSQL) in every replica, take
        turns under ``index_lock``, so only writers outside Sealgate can race us.
        """
        digest = _pinned(subject, "a referrers fallback index")
        async with self.hold_tag(subject, fallback_tag(digest)):
            await self._update_fallback_index(subject, [referrer, *more])

    async def _update_fallback_index(
        self,
        ref: ImageRef,
        referrers: Sequence[Descriptor],
        *,
        first_read: Awaitable[tuple[list[Descriptor], list[dict[str, Any]], str | None]]
        | None = None,
    ) -> None:
        """``_add_to_fallback_index`` once its lock is held; ``first_read`` is the fallback
        index read under that lock already (or still being read)."""
        digest = _pinned(ref, "a referrers fallback index")
        tag = fallback_tag(digest)
        referrer = referrers[0]
        for attempt in range(self.fallback_attempts + 1):
            if attempt == 0 and first_read is not None:
                entries, raw_entries, etag = await first_read
            else:
                entries, raw_entries, etag = await self._read_fallback_index(ref, subject=digest)
            listed = {d.digest for d in entries}
            wanted = {d.digest: d for d in referrers}
            missing = [d for key, d in wanted.items() if key not in listed]
            if not missing:
                return
            if attempt > 0:
                log.info(
                    "referrers tag %s of %s lost %s to a concurrent writer; adding it again",
                    tag,
                    ref.name,
                    ", ".join(d.digest for d in missing),
                )
            if attempt == self.fallback_attempts:
                break
            index = {
                "schemaVersion": 2,
                "mediaType": media.OCI_INDEX,
                "manifests": [*raw_entries, *(d.to_json() for d in missing)],
            }
            raw = json.dumps(index, separators=(",", ":")).encode()
            reply = await self._transport.send(
                "PUT",
                ref,
                await self._transport.url(ref, f"manifests/{tag}"),
                headers={
                    "Content-Type": media.OCI_INDEX,
                    **({"If-Match": etag} if etag else {}),
                },
                content=raw,
                limit=MAX_ERROR_BODY_BYTES,
                idempotent=False,
                push=True,
            )
            if reply.status != 412:
                self._transport.check_status(reply, ref, f"updating referrers tag {tag}")
                if self.fallback_settle_seconds <= 0:
                    # Only writers outside Sealgate's lock could drop our entry, and
                    # none are expected: the write stands without a confirming read.
                    return
            await asyncio.sleep(self.fallback_settle_seconds * random.uniform(1.0, 1.5))
        raise registry_error(
            errors.CONFLICT,
            ref=ref,
            problem=f"referrers tag {tag} kept changing under concurrent writers; "
            f"referrer {referrer.digest} is not listed after {self.fallback_attempts} attempts",
        )

    # -- copying whole images (app.transfer) ----------------------------------------------

    async def has_blob(self, ref: ImageRef, descriptor: Descriptor) -> bool:
        """Whether ``ref``'s repository holds the blob ``descriptor`` names (HEAD)."""
        key = f"{ref.registry}/{ref.repository}@{descriptor.digest}"
        if key in self._known:
            return True
        async with self._transport.deadline(ref, f"looking for blob {descriptor.digest}"):
            reply = await self._transport.send(
                "HEAD",
                ref,
                await self._transport.url(ref, f"blobs/{descriptor.digest}"),
                limit=0,
                idempotent=True,
                redirects=True,
            )
        if reply.status == 404:
            return False
        self._transport.check_status(reply, ref, f"blob {descriptor.digest}")
        self._remember(key, descriptor)
        return True

    async def has_manifest(self, ref: ImageRef) -> bool:
        """Whether ``ref``'s repository holds the manifest ``ref.digest`` names (HEAD)."""
        digest = _pinned(ref, "looking for a manifest")
        async with self._transport.deadline(ref, f"looking for manifest {digest}"):
            reply = await self._transport.send(
                "HEAD",
                ref,
                await self._transport.url(ref, f"manifests/{digest}"),
                headers={"Accept": ", ".join(media.MANIFEST_TYPES)},
                limit=0,
                idempotent=True,
                redirects=True,
            )
        if reply.status == 404:
            return False
        self._transport.check_status(reply, ref, f"manifest {digest}")
        return True

    async def list_tags(self, ref: ImageRef, *, max_tags: int = 10_000) -> list[str]:
        """The tags of ``ref``'s repository (``GET /v2/<name>/tags/list``, following
        ``Link: rel="next"``), at most ``max_tags``; a repository the registry does not know
        has none."""
        found: list[str] = []
        async with self._transport.deadline(ref, f"listing the tags of {ref.name}"):
            url: httpx.URL | None = (await self._transport.url(ref, "tags/list")).copy_merge_params(
                {"n": "1000"}
            )
            seen: set[str] = set()
            while url is not None and len(found) < max_tags and str(url) not in seen:
                seen.add(str(url))
                reply = await self._transport.send(
                    "GET",
                    ref,
                    url,
                    limit=self._settings.max_manifest_bytes,
                    idempotent=True,
                )
                if reply.status == 404 and not found:
                    return []
                self._transport.check_status(reply, ref, "the tag list")
                try:
                    tags = json.loads(reply.body).get("tags") or []
                except (ValueError, AttributeError) as e:
                    raise registry_error(
                        errors.PROTOCOL, ref=ref, problem="the tag list is not a JSON object"
                    ) from e
                if not isinstance(tags, list):
                    raise registry_error(
                        errors.PROTOCOL, ref=ref, problem="the tag list has no list of tags"
                    )
                found += [t for t in tags if isinstance(t, str)]
                url = _next_page(ref, reply) if tags else None
        return found[:max_tags]

    async def has_referrers_api(self, ref: ImageRef) -> bool:
        """Whether ``ref``'s registry serves the OCI 1.1 referrers API (asked once per
        registry: a registry with the API answers 200 even for a digest without referrers,
        one without answers 404)."""
        known = self._knows_referrers_api(ref)
        if known is not None:
            return known
        digest = _pinned(ref, "probing the referrers API")
        async with self._transport.deadline(ref, "probing the referrers API"):
            reply = await self._transport.send(
                "GET",
                ref,
                await self._transport.url(ref, f"referrers/{digest}"),
                headers={"Accept": media.OCI_INDEX},
                limit=self._settings.max_manifest_bytes,
                idempotent=True,
            )
        if reply.status != 404:
            self._transport.check_status(reply, ref, f"referrers of {digest}")
        supported = reply.status != 404
        self._learn_referrers_api(ref, supported=supported)
        return supported

    def _knows_referrers_api(self, ref: ImageRef) -> bool | None:
        known = self._referrers_api.get(ref.registry)
        if known is None or known[1] < time.monotonic():
            return None
        return known[0]

    def _learn_referrers_api(self, ref: ImageRef, *, supported: bool) -> None:
        until = time.monotonic() + REFERRERS_API_MEMORY_SECONDS
        self._referrers_api[ref.registry] = (supported, until)

    async def mount_blob(
        self, ref: ImageRef, descriptor: Descriptor, *, from_repository: str
    ) -> bool:
        """Ask ``ref``'s registry to mount the blob from ``from_repository`` (same registry).

        ``POST /v2/<name>/blobs/uploads/?mount=<digest>&from=<repository>``: True when the
        registry mounted it (201); False when it declined (202 opens an upload instead,
        which is cancelled here), so the caller uploads the bytes.
        """
        digest = descriptor.digest
        async with self._transport.deadline(ref, f"mounting blob {digest}"):
            reply = await self._post_mount(ref, descriptor, from_repository=from_repository)
            if reply is None:
                return True
            if reply.headers.get("Location"):
                cancel = await self._transport.send(
                    "DELETE",
                    ref,
                    _location(reply, ref),
                    limit=MAX_ERROR_BODY_BYTES,
                    idempotent=False,
                    push=True,
                )
                if cancel.status >= 400:
                    log.info("could not cancel the upload opened by a declined mount of %s", digest)
            return False

    async def mount_or_push_blob(
        self,
        ref: ImageRef,
        descriptor: Descriptor,
        chunks: Callable[[], AsyncIterable[bytes]],
        *,
        from_repository: str,
    ) -> bool:
        """Mount the blob ``descriptor`` names from ``from_repository`` (same registry), else
        upload it from ``chunks()``: True when it was mounted (nothing sent), False when its
        bytes were uploaded (checked as ``push_blob_chunks`` checks them).

        One request asks both: ``POST ...?mount=<digest>&from=<repository>`` answers 201 when
        the registry mounted it, else 202 with an upload session, which carries the bytes
        (read from ``chunks()`` while the registry is asked). ``from_repository`` may be
        ``ref``'s own repository: a blob already there is then found in the same request that
        would upload it, instead of a HEAD first (a registry that mounts nothing opens an
        upload every time: the bytes are sent again, which is why ``app.transfer`` asks this
        way for small blobs only).
        """
        digest = descriptor.digest
        async with self._transport.deadline(ref, f"uploading blob {digest}"):
            key = f"{ref.registry}/{ref.repository}@{digest}"
            async with self._blob_locks.hold(key):
                if key in self._known:
                    return True
                return await self._upload_chunks(
                    ref, descriptor, aiter(chunks()), mount_from=from_repository
                )

    async def _post_mount(
        self, ref: ImageRef, descriptor: Descriptor, *, from_repository: str
    ) -> Reply | None:
        """``POST ...?mount=&from=``: None when the registry mounted the blob, else the 202
        answer that opened an upload instead."""
        digest = descriptor.digest
        url = (await self._transport.url(ref, "blobs/uploads/")).copy_merge_params(
            {"mount": digest, "from": from_repository}
        )
        reply = await self._transport.send(
            "POST", ref, url, limit=MAX_ERROR_BODY_BYTES, idempotent=False, push=True
        )
        if reply.status == 201:
            _check_echoed_digest(reply, ref, digest)
            self._remember(f"{ref.registry}/{ref.repository}@{digest}", descriptor)
            return None
        self._transport.check_status(reply, ref, f"mounting blob {digest}")
        return reply

    async def read_blob_chunks(
        self, ref: ImageRef, descriptor: Descriptor, *, chunk_bytes: int | None = None
    ) -> AsyncIterator[bytes]:
        """The blob ``descriptor`` names, in ranged reads of ``chunk_bytes`` at most
        (default ``settings.chunked_upload_threshold``), so a large blob is never held whole.

        The bytes are hashed as they go; after the last chunk a content that does not hash to
        the digest (or has another size) raises ``registry.digest_mismatch``, so a consumer
        must not commit anything before the iteration ends. A registry that ignores ``Range``
        answers the whole blob at once (read up to ``max_blob_bytes``).
        """
        size = descriptor.size
        if size > self._settings.max_blob_bytes:
            raise registry_error(
                errors.TOO_LARGE,
                ref=ref,
                problem=f"blob {descriptor.digest} of {size} bytes exceeds the "
                f"{self._settings.max_blob_bytes}-byte limit",
            )
        if descriptor.digest == media.EMPTY_CONFIG.digest and size == media.EMPTY_CONFIG.size:
            # The empty config every artifact (a Sigstore bundle, a scan) shares: its digest
            # names these two bytes, so there is nothing to ask the registry.
            yield media.EMPTY_CONFIG_DATA
            return
        step = chunk_bytes or self._settings.chunked_upload_threshold
        digest = descriptor.digest
        hasher = hashlib.new(digest.partition(":")[0])
        offset = 0
        while offset < size or (size == 0 and offset == 0):
            end = min(offset + step, size) - 1
            async with self._transport.deadline(ref, f"fetching blob {digest}"):
                reply = await self._transport.send(
                    "GET",
                    ref,
                    await self._transport.url(ref, f"blobs/{digest}"),
                    headers={"Range": f"bytes={offset}-{end}"} if size else {},
                    limit=self._settings.max_blob_bytes,
                    idempotent=True,
                    redirects=True,
                )
            self._transport.check_status(reply, ref, f"blob {digest}")
            body = reply.body
            if reply.status == 200:  # the whole blob, Range ignored
                if offset:
                    raise registry_error(
                        errors.PROTOCOL,
                        ref=ref,
                        problem=f"blob {digest}: a ranged read was answered with the whole blob",
                    )
            elif len(body) != end - offset + 1:
                raise registry_error(
                    errors.TRUNCATED,
                    ref=ref,
                    problem=f"blob {digest}: bytes {offset}-{end} came as {len(body)} bytes",
                )
            hasher.update(body)
            offset += len(body)
            last = reply.status == 200 or offset >= size
            if last:
                actual = f"{digest.partition(':')[0]}:{hasher.hexdigest()}"
                if actual != digest or offset != size:
                    raise registry_error(
                        errors.DIGEST_MISMATCH,
                        ref=ref,
                        problem=f"blob {digest} ({size} bytes) was served as {offset} bytes "
                        f"hashing to {actual}",
                    )
            if body:
                yield body
            if last:
                return

    async def push_blob_chunks(
        self, ref: ImageRef, descriptor: Descriptor, chunks: AsyncIterable[bytes]
    ) -> Descriptor:
        """Upload the blob ``descriptor`` names from ``chunks`` (for example
        ``read_blob_chunks`` of another registry, or a file read piece by piece).

        Nothing is committed unless the bytes hash to the digest and have the size
        (``registry.digest_mismatch``); whether the blob is there already is the caller's
        question (``has_blob``).
        """
        async with self._transport.deadline(ref, f"uploading blob {descriptor.digest}"):
            key = f"{ref.registry}/{ref.repository}@{descriptor.digest}"
            async with self._blob_locks.hold(key):
                if key in self._known:
                    return descriptor
                await self._upload_chunks(ref, descriptor, aiter(chunks))
                return descriptor

    async def push_referrer_manifests(
        self, subject: ImageRef, manifests: Sequence[Manifest]
    ) -> list[Descriptor]:
        """Store the referrer ``manifests`` byte for byte in ``subject``'s repository and list
        them among the referrers of ``subject.digest``.

        The manifests go by digest, all at once; those a registry without the referrers API
        did not acknowledge (no ``OCI-Subject`` answer) are added to the ``<alg>-<hex>``
        fallback index in one read-modify-write, as ``push_referrer`` does for one, whose
        read goes while the manifests are pushed unless the registry has acknowledged
        referrers before. Each listed descriptor carries the manifest's ``artifactType``
        (else its config media type, as distribution-spec says) and annotations.
        """
        digest = _pinned(subject, "a referrer's subject")
        async with self._transport.deadline(subject, f"pushing referrers of {subject}"):
            if subject.registry in self._subject_registries:
                # The registry answers OCI-Subject: nothing to read before the pushes.
                pushed, unacknowledged = await self._put_referrers(subject, manifests)
                if unacknowledged:
                    await self._add_to_fallback_index(subject, *unacknowledged)
                return pushed
            async with self.hold_tag(subject, fallback_tag(digest)):
                # The fallback index is read while the manifests are stored (under the lock
                # its update needs): a registry without the API needs it as soon as they are.
                reading = asyncio.ensure_future(self._read_fallback_index(subject, subject=digest))
                try:
                    pushed, unacknowledged = await self._put_referrers(subject, manifests)
                except BaseException:
                    _abandon(reading)
                    raise
                if unacknowledged:
                    await self._update_fallback_index(subject, unacknowledged, first_read=reading)
                else:
                    _abandon(reading)
                    self._subject_registries.add(subject.registry)
                return pushed

    async def _put_referrers(
        self, subject: ImageRef, manifests: Sequence[Manifest]
    ) -> tuple[list[Descriptor], list[Descriptor]]:
        """Push the referrer ``manifests`` by digest, all at once: the descriptors listing
        them, and those of them the registry did not acknowledge with ``OCI-Subject``."""
        answers = await asyncio.gather(
            *(
                self._put_manifest(subject, m.raw, media_type=m.media_type, tag=None)
                for m in manifests
            )
        )
        pushed: list[Descriptor] = []
        unacknowledged: list[Descriptor] = []
        for manifest, (stored, headers) in zip(manifests, answers, strict=True):
            config = manifest.config
            referrer = Descriptor(
                media_type=manifest.media_type,
                digest=stored.digest,
                size=stored.size,
                artifact_type=manifest.artifact_type or (config.media_type if config else None),
                annotations=manifest.annotations,
            )
            pushed.append(referrer)
            if headers.get("OCI-Subject") != subject.digest:
                unacknowledged.append(referrer)
        return pushed, unacknowledged


async def _iterate(chunks: Iterable[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def _close(chunks: AsyncIterator[bytes]) -> None:
    """End ``chunks`` early (an async generator then runs its clean-up)."""
    close = getattr(chunks, "aclose", None)
    if close is not None:
        await close()


def _abandon(task: asyncio.Future[Any]) -> None:
    """Cancel ``task``, whose result nobody will read, without an "exception never
    retrieved" warning if it failed first."""
    task.cancel()
    task.add_done_callback(lambda done: done.cancelled() or done.exception())


def _unserved(ref: ImageRef, what: str, failures: list[RegistryError]) -> RegistryError:
    """The error when no endpoint served: content not matching its digest is said first,
    then "not found" (missing evidence can only deny), else the last endpoint's error."""
    codes = [e.code for e in failures]
    if errors.DIGEST_MISMATCH in codes:
        code = errors.DIGEST_MISMATCH
    elif errors.NOT_FOUND in codes:
        code = errors.NOT_FOUND
    else:
        code = codes[-1]
    said = "; ".join(e.message for e in failures)
    return registry_error(code, ref=ref, problem=f"{what}: no endpoint served it ({said})")


def _pinned(ref: ImageRef, what: str) -> str:
    if not ref.digest:
        raise InputError(f"{what} needs an image reference with a digest, not {ref}")
    return ref.digest


def _check_echoed_digest(reply: Reply, ref: ImageRef, digest: str) -> None:
    echoed = reply.headers.get("Docker-Content-Digest")
    if echoed and echoed != digest:
        raise registry_error(
            errors.DIGEST_MISMATCH,
            ref=ref,
            problem=f"the registry stored {echoed} for content whose digest is {digest}",
        )


def _location(reply: Reply, ref: ImageRef) -> httpx.URL:
    location = reply.headers.get("Location")
    if not location:
        raise registry_error(
            errors.PROTOCOL, ref=ref, problem="blob upload answer has no Location header"
        )
    return same_origin(ref, reply, location, what="blob upload Location")


def _next_page(ref: ImageRef, reply: Reply) -> httpx.URL | None:
    match = _NEXT_LINK.search(reply.headers.get("Link", ""))
    if not match:
        return None
    return same_origin(ref, reply, match.group(1), what="referrers Link")
