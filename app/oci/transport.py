"""One request to a registry done right: scheme, authentication, retries, limits, time-outs.

``RegistryTransport`` is the HTTP layer under ``RegistryClient``. ``send`` makes one request
with the ``Authorization`` header ``app.oci.auth`` chooses (learning the challenge from a 401
once), retries only idempotent requests with back-off on connection errors, 429 (honouring
``Retry-After`` up to 10 s), 502, 503 and 504, and reads the body as a stream up to a limit
whatever ``Content-Length`` says. ``check_status`` turns any other answer into the matching
``registry.*`` error; ``deadline`` bounds a whole operation.

HTTPS verifies against ``settings.registry_ca_bundle`` when set. Plain HTTP is allowed only for
``localhost``, 127.0.0.0/8, ``::1`` and ``settings.insecure_registries``, and used for those
only when they do not speak TLS: HTTPS is probed first, and a certificate that does not verify
is ``registry.tls_untrusted``, never a reason to fall back.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import random
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

import httpx

from app import __version__
from app.config import Settings
from app.errors import ConfigError, RegistryError
from app.oci import errors
from app.oci.auth import Authenticator, CredentialStore
from app.oci.errors import registry_error
from app.oci.refs import DOCKER_HUB, ImageRef

ERROR_BODY_LIMIT = 64 * 1024
_DOCKER_HUB_API = "registry-1.docker.io"
_RETRY_AFTER_CAP = 10.0
_RETRYABLE_STATUS = frozenset({429, 502, 503, 504})


@dataclass(frozen=True)
class Reply:
    """An answer read in full (up to the caller's limit)."""

    status: int
    headers: httpx.Headers
    body: bytes
    url: httpx.URL


class RegistryTransport:
    """Sends requests to any number of registries for one ``RegistryClient``."""

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
        self._schemes: dict[str, str] = {}

    async def aclose(self) -> None:
        await self._http.aclose()

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

    async def url(self, ref: ImageRef, path: str) -> httpx.URL:
        """``<scheme>://<host>/v2/<repository>/<path>`` for ``ref``'s registry."""
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
    async def deadline(self, ref: ImageRef, what: str) -> AsyncIterator[None]:
        """Bound a whole operation by ``registry_total_timeout`` (``registry.timeout``)."""
        total = self._settings.registry_total_timeout
        try:
            async with asyncio.timeout(total):
                yield
        except TimeoutError as e:
            raise registry_error(
                errors.TIMEOUT, ref=ref, problem=f"{what} did not finish within {total:g} s"
            ) from e

    async def send(
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
    ) -> Reply:
        """One request with authentication, bounded retries and a capped body.

        Authentication is learnt from a 401 once per call; other answers are returned to the
        caller, which maps the status to an error with ``check_status``.
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
    ) -> Reply:
        async with self._http.stream(method, url, headers=headers, content=content) as response:
            success = 200 <= response.status_code < 300
            if success and method != "HEAD":
                declared = response.headers.get("Content-Length", "")
                if declared.isdigit() and int(declared) > limit:
                    raise _too_large(ref, url, limit)
            cap = limit if success else ERROR_BODY_LIMIT
            body = bytearray()
            if method != "HEAD":
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > cap:
                        if success:
                            raise _too_large(ref, url, limit)
                        break
            return Reply(
                status=response.status_code,
                headers=response.headers,
                body=bytes(body),
                url=response.url,
            )

    def check_status(self, reply: Reply, ref: ImageRef, what: str) -> None:
        """Raise the ``RegistryError`` matching a non-2xx answer about ``what``."""
        status = reply.status
        if 200 <= status < 300:
            return
        said = registry_message(reply)
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


def _backoff(attempt: int) -> float:
    return min(0.2 * 2.0 ** (attempt - 1), 2.0) * random.uniform(0.5, 1.0)


def _retry_delay(reply: Reply, attempt: int) -> float | None:
    """Seconds to wait before retrying, or None when ``Retry-After`` asks for too long."""
    header = reply.headers.get("Retry-After")
    if reply.status != 429 or not header:
        return _backoff(attempt)
    header = header.strip()
    if header.isdigit():
        seconds = float(header)
    else:
        try:
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


def registry_message(reply: Reply) -> str:
    """``: CODE message`` from a distribution error body, or an empty string."""
    try:
        document = json.loads(reply.body)
        first = document["errors"][0]
        text = f"{first.get('code', '')} {first.get('message', '')}".strip()
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return ""
    return f": {text[:200]}" if text else ""


def same_origin(ref: ImageRef, reply: Reply, target: str, *, what: str) -> httpx.URL:
    """``target`` resolved against the answer's URL; it must stay on the same origin.

    Credentials and tokens go with every request, so a registry may not send us elsewhere.
    """
    url = reply.url.join(target)
    if url.scheme != reply.url.scheme or url.netloc != reply.url.netloc:
        raise registry_error(
            errors.PROTOCOL, ref=ref, problem=f"{what} {target} points to another host"
        )
    return url
