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
  whatever ``Content-Length`` says; at most ``max_referrers`` referrers are read;
- each request has ``registry_request_timeout`` and each public call ``registry_total_timeout``;
  only idempotent requests (GET, HEAD, PUT of a manifest by digest) are retried, with back-off,
  on connection errors, 429 (``Retry-After`` honoured up to 10 s), 502, 503 and 504;
- HTTPS verifies against ``settings.registry_ca_bundle`` when set (else the system CAs); plain
  HTTP is used only for ``localhost``, 127.0.0.0/8, ``::1`` and
  ``settings.insecure_registries``, and for those only when they do not speak TLS (probed
  once per registry; an untrusted certificate is ``registry.tls_untrusted``, never a reason to
  fall back). Authentication is in ``app.oci.auth``.

Every failure is a ``RegistryError`` with one of the codes of ``app.oci.errors`` and a message
naming the registry, the repository and what went wrong. An invalid reference or digest given
by the caller is an ``InputError``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import random
import re
import ssl
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from app import __version__
from app.config import Settings
from app.errors import ConfigError, InputError, RegistryError
from app.oci import errors, media
from app.oci.auth import Authenticator, CredentialStore
from app.oci.descriptor import Descriptor
from app.oci.digests import compute_digest, fallback_tag, matches_digest, parse_digest
from app.oci.errors import registry_error
from app.oci.refs import DOCKER_HUB, ImageRef

__all__ = ["Descriptor", "Manifest", "RegistryClient"]

log = logging.getLogger(__name__)

_DOCKER_HUB_API = "registry-1.docker.io"
_ERROR_BODY_LIMIT = 64 * 1024
_RETRY_AFTER_CAP = 10.0
_RETRYABLE_STATUS = frozenset({429, 502, 503, 504})
_Locks = weakref.WeakValueDictionary[tuple[str, str, str], asyncio.Lock]
_NEXT_LINK = re.compile(r'<([^>]*)>\s*;\s*(?:[^,]*;\s*)*rel="?next"?')


@dataclass(frozen=True)
class Manifest:
    """A manifest or index exactly as fetched: ``raw`` hashes to ``digest``; ``json`` is parsed.

    ``ref`` is pinned to ``digest``. The descriptor properties were validated when the manifest
    was fetched, so reading them never raises.
    """

    ref: ImageRef
    digest: str
    media_type: str
    raw: bytes
    json: dict[str, Any]

    @property
    def is_index(self) -> bool:
        """Whether this lists other manifests (OCI index or Docker manifest list)."""
        return self.media_type in media.INDEX_TYPES

    @property
    def descriptor(self) -> Descriptor:
        """The descriptor pointing at this manifest (as a referrer's ``subject`` needs it)."""
        return Descriptor(media_type=self.media_type, digest=self.digest, size=len(self.raw))

    @property
    def config(self) -> Descriptor | None:
        value = self.json.get("config")
        return Descriptor.from_json(value) if value is not None else None

    @property
    def layers(self) -> list[Descriptor]:
        return [Descriptor.from_json(d) for d in self.json.get("layers") or []]

    @property
    def manifests(self) -> list[Descriptor]:
        return [Descriptor.from_json(d) for d in self.json.get("manifests") or []]

    @property
    def subject(self) -> Descriptor | None:
        value = self.json.get("subject")
        return Descriptor.from_json(value) if value is not None else None

    @property
    def artifact_type(self) -> str | None:
        value = self.json.get("artifactType")
        return value if isinstance(value, str) else None

    @property
    def annotations(self) -> dict[str, str]:
        value = self.json.get("annotations")
        return dict(value) if isinstance(value, dict) else {}


@dataclass(frozen=True)
class _Reply:
    status: int
    headers: httpx.Headers
    body: bytes
    url: httpx.URL


class RegistryClient:
    """An async client for the OCI distribution API of any number of registries.

    Build it with ``from_settings``; ``transport`` exists for tests that mount an in-process
    app. The client keeps bearer tokens and learned challenges per registry.
    """

    # Fallback-index writers without ETag support: how long to wait before re-reading the
    # index to confirm our entry survived a concurrent writer, and how often to try.
    fallback_settle_seconds = 0.2
    fallback_attempts = 5

    def __init__(
        self, *, settings: Settings, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self._settings = settings
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(settings.registry_request_timeout),
            verify=_tls_verification(settings),
            follow_redirects=True,
            transport=transport,
            headers={"User-Agent": f"sealgate/{__version__}"},
            trust_env=False,
        )
        self._auth = Authenticator(
            http=self._http,
            credentials=CredentialStore(settings=settings),
            plain_http_allowed=self.plain_http_allowed,
        )
        self._fallback_locks: _Locks = weakref.WeakValueDictionary()
        self._blob_locks: _Locks = weakref.WeakValueDictionary()
        self._schemes: dict[str, str] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> RegistryClient:
        """A client configured by ``settings`` (timeouts, limits, TLS, credentials)."""
        return cls(settings=settings)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    # -- public operations -------------------------------------------------------------------

    async def resolve_digest(self, ref: ImageRef) -> str:
        """The digest ``ref`` names: its own digest if pinned, else what its tag points at.

        A tag is resolved with HEAD (every manifest media type in ``Accept``) and, when the
        registry sends no ``Docker-Content-Digest``, with GET and the digest of the bytes.
        """
        if ref.digest:
            return ref.digest
        async with self._deadline(ref, f"resolving {ref}"):
            reply = await self._send(
                "HEAD",
                ref,
                await self._url(ref, f"manifests/{ref.reference}"),
                headers={"Accept": ", ".join(media.MANIFEST_TYPES)},
                limit=0,
                idempotent=True,
            )
            if reply.status in (405, 501):  # HEAD not supported: GET below
                reply = replace(reply, status=200, headers=httpx.Headers())
            self._check_status(reply, ref, f"manifest {ref.reference}")
            header = reply.headers.get("Docker-Content-Digest")
            if header:
                try:
                    return parse_digest(header)
                except InputError as e:
                    raise registry_error(
                        errors.PROTOCOL,
                        ref=ref,
                        problem=f"Docker-Content-Digest {header!r} is not a digest",
                    ) from e
            manifest, _ = await self._fetch_manifest(ref)
            return manifest.digest

    async def get_manifest(self, ref: ImageRef) -> Manifest:
        """The manifest or index ``ref`` names, by digest if pinned, else by tag.

        Raises ``registry.not_found``, ``registry.digest_mismatch``, ``registry.too_large``
        (over ``max_manifest_bytes``) or ``registry.invalid_manifest`` among others.
        """
        async with self._deadline(ref, f"fetching manifest {ref}"):
            manifest, _ = await self._fetch_manifest(ref)
            return manifest

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
                async with self._deadline(index.ref, f"fetching the {wanted} manifest"):
                    chosen, _ = await self._fetch_manifest(index.ref.with_digest(entry.digest))
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
        async with self._deadline(ref, f"fetching blob {digest}"):
            reply = await self._send(
                "GET",
                ref,
                await self._url(ref, f"blobs/{digest}"),
                limit=max_bytes or self._settings.max_blob_bytes,
                idempotent=True,
            )
            self._check_status(reply, ref, f"blob {digest}")
            if not matches_digest(reply.body, digest):
                raise registry_error(
                    errors.DIGEST_MISMATCH,
                    ref=ref,
                    problem=f"blob {digest} was served with content hashing to "
                    f"{compute_digest(reply.body, algorithm=digest.partition(':')[0])}",
                )
            return reply.body

    async def push_blob(self, ref: ImageRef, data: bytes, *, media_type: str) -> Descriptor:
        """Upload ``data`` to ``ref``'s repository unless it is there; return its descriptor.

        Monolithic (POST then PUT) up to ``settings.chunked_upload_threshold`` bytes, chunked
        (POST, PATCH per chunk, PUT) above it.
        """
        async with self._deadline(ref, "uploading a blob"):
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
        async with self._deadline(ref, "pushing a manifest"):
            descriptor, _ = await self._put_manifest(ref, manifest, media_type=media_type, tag=tag)
            return descriptor

    async def list_referrers(
        self, ref: ImageRef, *, artifact_type: str | None = None
    ) -> list[Descriptor]:
        """The referrers of the manifest ``ref.digest`` names, at most ``max_referrers``.

        Uses ``GET /v2/<name>/referrers/<digest>`` (following ``Link: rel="next"``); on 404 reads
        the ``<alg>-<hex>`` fallback tag (missing: no referrers; not a valid index: none, with a
        warning). ``artifact_type`` is applied here when the registry did not report applying it.
        """
        subject = _pinned(ref, "listing referrers")
        async with self._deadline(ref, f"listing referrers of {subject}"):
            return await self._list_referrers(ref, subject=subject, artifact_type=artifact_type)

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

        ``layers`` are ``(data, media_type, annotations)``. The empty config and the layers are
        uploaded first, then the manifest (``artifactType``, ``subject`` with the subject's
        media type, digest and size) by digest. Without an ``OCI-Subject`` answer the
        ``<alg>-<hex>`` fallback index is updated: no duplicates, and re-read and retried when
        another writer raced us (``registry.conflict`` if that never settles).
        """
        async with self._deadline(subject, f"pushing a referrer of {subject}"):
            target, _ = await self._fetch_manifest(subject)
            await self._push_blob(subject, media.EMPTY_CONFIG_DATA, media_type=media.OCI_EMPTY)
            layer_descriptors = []
            for data, layer_type, layer_annotations in layers:
                uploaded = await self._push_blob(subject, data, media_type=layer_type)
                layer_descriptors.append(
                    replace(uploaded, annotations=dict(layer_annotations)).to_json()
                )
            manifest: dict[str, Any] = {
                "schemaVersion": 2,
                "mediaType": media.OCI_MANIFEST,
                "artifactType": artifact_type,
                "config": media.EMPTY_CONFIG.to_json(),
                "layers": layer_descriptors,
                "subject": target.descriptor.to_json(),
            }
            if annotations:
                manifest["annotations"] = dict(annotations)
            pushed, headers = await self._put_manifest(
                subject, manifest, media_type=media.OCI_MANIFEST, tag=None
            )
            referrer = Descriptor(
                media_type=media.OCI_MANIFEST,
                digest=pushed.digest,
                size=pushed.size,
                artifact_type=artifact_type,
                annotations=dict(annotations),
            )
            if headers.get("OCI-Subject") != target.digest:
                await self._add_to_fallback_index(target, referrer)
            return referrer

    # -- transport ---------------------------------------------------------------------------

    def plain_http_allowed(self, host: str) -> bool:
        """Whether ``host`` (``name[:port]``) may be spoken to over plain HTTP."""
        if host in self._settings.insecure_registries:
            return True
        if host.startswith("["):
            name = host[1 : host.find("]")] if "]" in host else host
        else:
            name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
        if name in self._settings.insecure_registries or name.lower() == "localhost":
            return True
        try:
            return ipaddress.ip_address(name).is_loopback
        except ValueError:
            return False

    async def _url(self, ref: ImageRef, path: str) -> httpx.URL:
        host = _DOCKER_HUB_API if ref.registry == DOCKER_HUB else ref.registry
        scheme = await self._scheme(ref, host)
        return httpx.URL(f"{scheme}://{host}/v2/{ref.repository}/{path}")

    async def _scheme(self, ref: ImageRef, host: str) -> str:
        """``https``, or ``http`` for a host allowed plain HTTP that does not speak TLS.

        As Docker does for insecure registries, HTTPS is tried first (once per registry) and
        plain HTTP used only if the TLS handshake itself fails; a certificate that does not
        verify is an error, never a reason to fall back.
        """
        if not self.plain_http_allowed(ref.registry):
            return "https"
        known = self._schemes.get(ref.registry)
        if known is not None:
            return known
        try:
            await self._http.get(f"https://{host}/v2/", follow_redirects=False)
        except httpx.ConnectError as e:
            if _certificate_rejected(e):
                raise _untrusted(ref, e) from e
            if not _caused_by(e, ssl.SSLError):
                # Nothing learnt (refused, unreachable): try plain HTTP now, probe again later.
                return "http"
            scheme = "http"
        except httpx.HTTPError:
            return "http"
        else:
            scheme = "https"
        self._schemes[ref.registry] = scheme
        return scheme

    @asynccontextmanager
    async def _deadline(self, ref: ImageRef, what: str) -> AsyncIterator[None]:
        total = self._settings.registry_total_timeout
        try:
            async with asyncio.timeout(total):
                yield
        except TimeoutError as e:
            raise registry_error(
                errors.TIMEOUT, ref=ref, problem=f"{what} did not finish within {total:g} s"
            ) from e

    async def _send(
        self,
        method: str,
        ref: ImageRef,
        url: httpx.URL,
        *,
        limit: int,
        idempotent: bool,
        push: bool = False,
        headers: dict[str, str] | None = None,
        content: bytes | None = None,
    ) -> _Reply:
        """One request with authentication, bounded retries and a capped body.

        Authentication is learnt from a 401 once per call; other answers are returned to the
        caller, which maps the status to an error with ``_check_status``.
        """
        scope = f"repository:{ref.repository}:{'pull,push' if push else 'pull'}"
        attempt = 0
        challenged = False
        while True:
            request_headers = dict(headers or {})
            authorization = await self._auth.authorization(ref, scope=scope)
            if authorization:
                request_headers["Authorization"] = authorization
            try:
                reply = await self._exchange(
                    method, ref, url, headers=request_headers, content=content, limit=limit
                )
            except (httpx.ConnectError, httpx.ConnectTimeout) as e:
                if _certificate_rejected(e):
                    raise _untrusted(ref, e) from e
                if idempotent and attempt < self._settings.registry_retries:
                    attempt += 1
                    await asyncio.sleep(_backoff(attempt))
                    continue
                raise registry_error(
                    errors.UNREACHABLE,
                    ref=ref,
                    problem=f"cannot connect to {url.netloc.decode()}: {e or type(e).__name__}",
                ) from e
            except httpx.TimeoutException as e:
                raise registry_error(
                    errors.TIMEOUT,
                    ref=ref,
                    problem=f"{method} {url.path} got no answer within "
                    f"{self._settings.registry_request_timeout:g} s",
                ) from e
            except (httpx.RemoteProtocolError, httpx.ReadError) as e:
                raise registry_error(
                    errors.TRUNCATED,
                    ref=ref,
                    problem=f"{method} {url.path}: the connection broke before the whole answer "
                    f"arrived ({e or type(e).__name__})",
                ) from e
            except httpx.HTTPError as e:
                raise registry_error(
                    errors.UNREACHABLE, ref=ref, problem=f"{method} {url.path} failed: {e}"
                ) from e
            if reply.status == 401 and not challenged:
                challenged = True
                if self._auth.learn(ref, header=reply.headers.get("WWW-Authenticate"), scope=scope):
                    continue
            if (
                reply.status in _RETRYABLE_STATUS
                and idempotent
                and attempt < self._settings.registry_retries
            ):
                delay = _retry_delay(reply, attempt + 1)
                if delay is not None:
                    attempt += 1
                    await asyncio.sleep(delay)
                    continue
            return reply

    async def _exchange(
        self,
        method: str,
        ref: ImageRef,
        url: httpx.URL,
        *,
        headers: dict[str, str],
        content: bytes | None,
        limit: int,
    ) -> _Reply:
        async with self._http.stream(method, url, headers=headers, content=content) as response:
            success = 200 <= response.status_code < 300
            if success and method != "HEAD":
                declared = response.headers.get("Content-Length", "")
                if declared.isdigit() and int(declared) > limit:
                    raise _too_large(ref, url, limit)
            cap = limit if success else _ERROR_BODY_LIMIT
            body = bytearray()
            if method != "HEAD":
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > cap:
                        if success:
                            raise _too_large(ref, url, limit)
                        break
            return _Reply(
                status=response.status_code,
                headers=response.headers,
                body=bytes(body),
                url=response.url,
            )

    def _check_status(self, reply: _Reply, ref: ImageRef, what: str) -> None:
        """Raise the ``RegistryError`` matching a non-2xx answer about ``what``."""
        status = reply.status
        if 200 <= status < 300:
            return
        said = _registry_message(reply)
        if status == 401:
            hint = (
                "the credentials were refused"
                if self._auth.has_credentials(ref.registry)
                else "no credentials are configured for this registry"
            )
            raise registry_error(
                errors.UNAUTHORIZED, ref=ref, problem=f"{what}: 401 Unauthorized ({hint}){said}"
            )
        if status == 403:
            raise registry_error(errors.FORBIDDEN, ref=ref, problem=f"{what}: 403 Forbidden{said}")
        if status == 404:
            raise registry_error(errors.NOT_FOUND, ref=ref, problem=f"{what} not found{said}")
        if status == 429:
            raise registry_error(
                errors.RATE_LIMITED, ref=ref, problem=f"{what}: 429 Too Many Requests{said}"
            )
        if status >= 500:
            raise registry_error(
                errors.SERVER_ERROR, ref=ref, problem=f"{what}: server error {status}{said}"
            )
        raise registry_error(errors.PROTOCOL, ref=ref, problem=f"{what}: unexpected {status}{said}")

    # -- manifests ---------------------------------------------------------------------------

    async def _fetch_manifest(self, ref: ImageRef) -> tuple[Manifest, httpx.Headers]:
        reply = await self._send(
            "GET",
            ref,
            await self._url(ref, f"manifests/{ref.reference}"),
            headers={"Accept": ", ".join(media.MANIFEST_TYPES)},
            limit=self._settings.max_manifest_bytes,
            idempotent=True,
        )
        self._check_status(reply, ref, f"manifest {ref.reference}")
        return _parse_manifest(ref, reply), reply.headers

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
        reply = await self._send(
            "PUT",
            ref,
            await self._url(ref, f"manifests/{target}"),
            headers={"Content-Type": media_type},
            content=raw,
            limit=_ERROR_BODY_LIMIT,
            idempotent=tag is None,
            push=True,
        )
        if reply.status == 400:
            raise registry_error(
                errors.INVALID_MANIFEST,
                ref=ref,
                problem=f"the registry rejected manifest {digest}{_registry_message(reply)}",
            )
        self._check_status(reply, ref, f"pushing manifest {digest}")
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
        async with _keyed_lock(self._blob_locks, (ref.registry, ref.repository, digest)):
            exists = await self._send(
                "HEAD",
                ref,
                await self._url(ref, f"blobs/{digest}"),
                limit=0,
                idempotent=True,
                push=True,
            )
            if exists.status == 200:
                return descriptor
            started = await self._send(
                "POST",
                ref,
                await self._url(ref, "blobs/uploads/"),
                limit=_ERROR_BODY_LIMIT,
                idempotent=False,
                push=True,
            )
            self._check_status(started, ref, "starting a blob upload")
            location = _location(started, ref)
            threshold = self._settings.chunked_upload_threshold
            if len(data) > threshold:
                for start in range(0, len(data), threshold):
                    chunk = data[start : start + threshold]
                    patched = await self._send(
                        "PATCH",
                        ref,
                        location,
                        headers={
                            "Content-Type": "application/octet-stream",
                            "Content-Range": f"{start}-{start + len(chunk) - 1}",
                        },
                        content=chunk,
                        limit=_ERROR_BODY_LIMIT,
                        idempotent=False,
                        push=True,
                    )
                    self._check_status(patched, ref, f"uploading bytes {start}+ of blob {digest}")
                    location = _location(patched, ref)
                body = b""
            else:
                body = data
            finished = await self._send(
                "PUT",
                ref,
                location.copy_merge_params({"digest": digest}),
                headers={"Content-Type": "application/octet-stream"},
                content=body,
                limit=_ERROR_BODY_LIMIT,
                idempotent=False,
                push=True,
            )
            self._check_status(finished, ref, f"completing the upload of blob {digest}")
            _check_echoed_digest(finished, ref, digest)
            return descriptor

    # -- referrers ---------------------------------------------------------------------------

    async def _list_referrers(
        self, ref: ImageRef, *, subject: str, artifact_type: str | None
    ) -> list[Descriptor]:
        cap = self._settings.max_referrers
        first = await self._url(ref, f"referrers/{subject}")
        if artifact_type:
            first = first.copy_merge_params({"artifactType": artifact_type})
        url: httpx.URL | None = first
        found: list[Descriptor] = []
        seen_pages: set[str] = set()
        while url is not None:
            seen_pages.add(str(url))
            reply = await self._send(
                "GET",
                ref,
                url,
                headers={"Accept": media.OCI_INDEX},
                limit=self._settings.max_manifest_bytes,
                idempotent=True,
            )
            if reply.status == 404 and not found and len(seen_pages) == 1:
                return await self._fallback_referrers(
                    ref, subject=subject, artifact_type=artifact_type
                )
            self._check_status(reply, ref, f"referrers of {subject}")
            page = _parse_referrers_page(ref, reply)
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

    async def _add_to_fallback_index(self, target: Manifest, referrer: Descriptor) -> None:
        """Add ``referrer`` to the fallback index of ``target`` and confirm it stays there.

        With ``ETag`` the write is conditional (412 = raced, retry). Registries such as
        distribution 2.8 send an ETag but ignore ``If-Match``, so every write is also confirmed
        by re-reading after ``fallback_settle_seconds``: a concurrent writer that read before
        our write and wrote after it has dropped our entry, and we add it again. This is best
        effort against writers slower than the settle time; writers inside this process are
        serialised by a lock.
        """
        ref = target.ref
        tag = fallback_tag(target.digest)
        key = (ref.registry, ref.repository, tag)
        async with _keyed_lock(self._fallback_locks, key):
            for attempt in range(self.fallback_attempts + 1):
                entries, raw_entries, etag = await self._read_fallback_index(
                    ref, subject=target.digest
                )
                if any(d.digest == referrer.digest for d in entries):
                    return
                if attempt > 0:
                    log.info(
                        "referrers tag %s of %s lost %s to a concurrent writer; adding it again",
                        tag,
                        ref.name,
                        referrer.digest,
                    )
                if attempt == self.fallback_attempts:
                    break
                index = {
                    "schemaVersion": 2,
                    "mediaType": media.OCI_INDEX,
                    "manifests": [*raw_entries, referrer.to_json()],
                }
                raw = json.dumps(index, separators=(",", ":")).encode()
                reply = await self._send(
                    "PUT",
                    ref,
                    await self._url(ref, f"manifests/{tag}"),
                    headers={
                        "Content-Type": media.OCI_INDEX,
                        **({"If-Match": etag} if etag else {}),
                    },
                    content=raw,
                    limit=_ERROR_BODY_LIMIT,
                    idempotent=False,
                    push=True,
                )
                if reply.status != 412:
                    self._check_status(reply, ref, f"updating referrers tag {tag}")
                await asyncio.sleep(self.fallback_settle_seconds * random.uniform(1.0, 1.5))
        raise registry_error(
            errors.CONFLICT,
            ref=ref,
            problem=f"referrers tag {tag} kept changing under concurrent writers; "
            f"referrer {referrer.digest} is not listed after {self.fallback_attempts} attempts",
        )


# -- module helpers (protocol details shared by the methods above) ----------------------------


def _tls_verification(settings: Settings) -> ssl.SSLContext | bool:
    if settings.registry_ca_bundle is None:
        return True
    try:
        return ssl.create_default_context(cafile=str(settings.registry_ca_bundle))
    except (OSError, ssl.SSLError) as e:
        raise ConfigError(
            f"SEALGATE_REGISTRY_CA_BUNDLE {settings.registry_ca_bundle} is not a usable "
            f"PEM bundle: {e}"
        ) from e


def _keyed_lock(locks: _Locks, key: tuple[str, str, str]) -> asyncio.Lock:
    """The lock for ``key``; it lives as long as someone holds or awaits it."""
    lock = locks.get(key)
    if lock is None:
        lock = asyncio.Lock()
        locks[key] = lock
    return lock


def _caused_by(error: BaseException, kind: type[BaseException]) -> bool:
    """Whether ``error`` or an exception it was raised from is a ``kind``."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, kind):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _certificate_rejected(error: BaseException) -> bool:
    """Whether a connection failed because the server's certificate did not verify."""
    return _caused_by(error, ssl.SSLCertVerificationError) or (
        "CERTIFICATE_VERIFY_FAILED" in str(error)
    )


def _untrusted(ref: ImageRef, error: BaseException) -> RegistryError:
    return registry_error(
        errors.TLS_UNTRUSTED,
        ref=ref,
        problem=f"the TLS certificate of {ref.registry} is not trusted ({error}); "
        "set SEALGATE_REGISTRY_CA_BUNDLE to the CA that issued it",
    )


def _pinned(ref: ImageRef, what: str) -> str:
    if not ref.digest:
        raise InputError(f"{what} needs an image reference with a digest, not {ref}")
    return ref.digest


def _backoff(attempt: int) -> float:
    return min(0.2 * 2.0 ** (attempt - 1), 2.0) * random.uniform(0.5, 1.0)


def _retry_delay(reply: _Reply, attempt: int) -> float | None:
    """Seconds to wait before retrying, or None when ``Retry-After`` asks for too long."""
    header = reply.headers.get("Retry-After")
    if reply.status != 429 or not header:
        return _backoff(attempt)
    header = header.strip()
    if header.isdigit():
        seconds = float(header)
    else:
        try:
            import datetime

            when = parsedate_to_datetime(header)
            seconds = (when - datetime.datetime.now(datetime.UTC)).total_seconds()
        except (TypeError, ValueError):
            return _backoff(attempt)
    if seconds > _RETRY_AFTER_CAP:
        return None
    return max(seconds, 0.0)


def _too_large(ref: ImageRef, url: httpx.URL, limit: int) -> RegistryError:
    return registry_error(
        errors.TOO_LARGE, ref=ref, problem=f"{url.path} is larger than the {limit}-byte limit"
    )


def _registry_message(reply: _Reply) -> str:
    """``: CODE message`` from a distribution error body, or an empty string."""
    try:
        document = json.loads(reply.body)
        first = document["errors"][0]
        text = f"{first.get('code', '')} {first.get('message', '')}".strip()
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return ""
    return f": {text[:200]}" if text else ""


def _check_echoed_digest(reply: _Reply, ref: ImageRef, digest: str) -> None:
    echoed = reply.headers.get("Docker-Content-Digest")
    if echoed and echoed != digest:
        raise registry_error(
            errors.DIGEST_MISMATCH,
            ref=ref,
            problem=f"the registry stored {echoed} for content whose digest is {digest}",
        )


def _location(reply: _Reply, ref: ImageRef) -> httpx.URL:
    location = reply.headers.get("Location")
    if not location:
        raise registry_error(
            errors.PROTOCOL, ref=ref, problem="blob upload answer has no Location header"
        )
    return _same_origin(ref, reply, location, what="blob upload Location")


def _next_page(ref: ImageRef, reply: _Reply) -> httpx.URL | None:
    match = _NEXT_LINK.search(reply.headers.get("Link", ""))
    if not match:
        return None
    return _same_origin(ref, reply, match.group(1), what="referrers Link")


def _same_origin(ref: ImageRef, reply: _Reply, target: str, *, what: str) -> httpx.URL:
    """``target`` resolved against the answer's URL; it must stay on the same origin.

    Credentials and tokens go with every request, so a registry may not send us elsewhere.
    """
    url = reply.url.join(target)
    if url.scheme != reply.url.scheme or url.netloc != reply.url.netloc:
        raise registry_error(
            errors.PROTOCOL, ref=ref, problem=f"{what} {target} points to another host"
        )
    return url


def _parse_json_object(ref: ImageRef, body: bytes, what: str) -> dict[str, Any]:
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise registry_error(
            errors.INVALID_MANIFEST, ref=ref, problem=f"{what} is not valid JSON: {e}"
        ) from e
    if not isinstance(document, dict):
        raise registry_error(errors.INVALID_MANIFEST, ref=ref, problem=f"{what} is not an object")
    return document


def _descriptors(ref: ImageRef, values: Any, what: str) -> list[Descriptor]:
    if not isinstance(values, list):
        raise registry_error(errors.INVALID_MANIFEST, ref=ref, problem=f"{what} is not a list")
    try:
        return [Descriptor.from_json(v) for v in values]
    except InputError as e:
        raise registry_error(
            errors.INVALID_MANIFEST, ref=ref, problem=f"{what}: {e.message}"
        ) from e


def _parse_manifest(ref: ImageRef, reply: _Reply) -> Manifest:
    """Check the bytes against the expected digest, then the manifest's shape."""
    raw = reply.body
    header = reply.headers.get("Docker-Content-Digest")
    if ref.digest:
        digest = ref.digest
    elif header:
        try:
            digest = parse_digest(header)
        except InputError as e:
            raise registry_error(
                errors.PROTOCOL, ref=ref, problem=f"Docker-Content-Digest {header!r} is invalid"
            ) from e
    else:
        digest = compute_digest(raw)
    if not matches_digest(raw, digest):
        actual = compute_digest(raw, algorithm=digest.partition(":")[0])
        raise registry_error(
            errors.DIGEST_MISMATCH,
            ref=ref,
            problem=f"manifest {ref.reference} should be {digest} but the content served "
            f"hashes to {actual}",
        )
    what = f"manifest {digest}"
    document = _parse_json_object(ref, raw, what)
    if document.get("schemaVersion") != 2:
        raise registry_error(
            errors.INVALID_MANIFEST,
            ref=ref,
            problem=f"{what} has schemaVersion {document.get('schemaVersion')!r}, not 2",
        )
    content_type = reply.headers.get("Content-Type", "").split(";")[0].strip()
    media_type = document.get("mediaType") or content_type
    if media_type not in media.MANIFEST_TYPES:
        raise registry_error(
            errors.INVALID_MANIFEST,
            ref=ref,
            problem=f"{what} has unsupported media type {media_type!r}",
        )
    if media_type in media.INDEX_TYPES:
        _descriptors(ref, document.get("manifests"), f"{what} manifests")
    else:
        _descriptors(ref, [document.get("config")], f"{what} config")
        _descriptors(ref, document.get("layers", []), f"{what} layers")
        if document.get("subject") is not None:
            _descriptors(ref, [document["subject"]], f"{what} subject")
    return Manifest(
        ref=ref.with_digest(digest), digest=digest, media_type=media_type, raw=raw, json=document
    )


def _parse_referrers_page(ref: ImageRef, reply: _Reply) -> list[Descriptor]:
    document = _parse_json_object(ref, reply.body, "referrers response")
    if document.get("mediaType", media.OCI_INDEX) != media.OCI_INDEX:
        raise registry_error(
            errors.INVALID_MANIFEST, ref=ref, problem="referrers response is not an OCI index"
        )
    return _descriptors(ref, document.get("manifests", []), "referrers response manifests")
