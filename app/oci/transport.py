"""One request to a registry done right: scheme, egress, authentication, redirects, retries.

``RegistryTransport`` is the HTTP layer under ``RegistryClient``. ``send`` first asks
``app.oci.egress`` whether the registry may be contacted at all (``registry.not_allowed``),
then makes one request with the ``Authorization`` header ``app.oci.auth`` chooses (learning the
challenge from a 401 once), retries only idempotent requests with back-off on connection
errors, 429 (honouring ``Retry-After`` up to 10 s), 502, 503 and 504, and reads the body as a
stream up to a limit whatever ``Content-Length`` says. ``check_status`` turns any other answer
into the matching ``registry.*`` error; ``deadline`` bounds a whole operation.

Redirects are followed here, hop by hop, and only where the caller asks (manifest and blob
reads, which registries send to object storage or a CDN): at most ``MAX_REDIRECTS`` hops, never
from HTTPS to plain HTTP, to plain HTTP only on hosts where plain HTTP is allowed, and
``Authorization`` only to the registry's own scheme, host and port. Any other request answered
with a redirect (an upload, a manifest push, a referrers page) is ``registry.redirect_refused``.
An answer from a redirect target is ``foreign``: its body text is never shown to the caller.

HTTPS verifies against ``settings.registry_ca_bundle`` when set. Plain HTTP is allowed only for
``localhost``, 127.0.0.0/8, ``::1`` and ``settings.insecure_registries``, and used for those
only when they do not speak TLS: HTTPS is probed first, and a certificate that does not verify
is ``registry.tls_untrusted``, never a reason to fall back.
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import ipaddress
import json
import random
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path

import httpcore
import httpx

from app import __version__
from app.errors import ConfigError, RegistryError
from app.limits import MAX_ERROR_BODY_BYTES
from app.oci import budget, errors
from app.oci.auth import Authenticator, CredentialStore
from app.oci.egress import AddressRefused, Egress, unanswered
from app.oci.errors import registry_error
from app.oci.refs import DOCKER_HUB, ImageRef
from app.oci.settings import RegistrySettings

MAX_REDIRECTS = 5
_DOCKER_HUB_API = "registry-1.docker.io"
_RETRY_AFTER_CAP = 10.0
_RETRYABLE_STATUS = frozenset({429, 502, 503, 504})
_REDIRECT_STATUS = frozenset({301, 302, 303, 307, 308})
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class Reply:
    """An answer read in full (up to the caller's limit)."""

    status: int
    headers: httpx.Headers
    body: bytes
    url: httpx.URL
    # Answered by a redirect target, not the registry: never show its body.
    foreign: bool = False


class _Unanswered(Exception):
    """A request got no HTTP answer; ``error`` is what the caller sees."""

    def __init__(self, error: RegistryError, *, retryable: bool) -> None:
        super().__init__(error.message)
        self.error = error
        self.retryable = retryable


class _NoCookies(httpx.Cookies):
    """A cookie jar that stays empty: registry APIs set none that matter (Go's HTTP client,
    which containerd and skopeo use, keeps none either), and reading ``Set-Cookie`` into a
    jar costs httpx a ``urllib`` request built per answer, a twentieth of a copy's CPU."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None


_NO_COOKIES = _NoCookies()


class _CookielessClient(httpx.AsyncClient):
    """``httpx.AsyncClient`` with ``_NoCookies`` as its jar."""

    @property
    def cookies(self) -> httpx.Cookies:
        return _NO_COOKIES

    @cookies.setter
    def cookies(self, cookies: object) -> None:
        return None


class _GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport on a connection pool whose network backend is ``Egress``'s."""

    def __init__(self, *, verify: ssl.SSLContext, backend: httpcore.AsyncNetworkBackend):
        super().__init__(verify=verify, trust_env=False)
        # httpx offers no network_backend argument; the pool is httpcore's public API.
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=20)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=verify,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=backend,
        )


class RegistryTransport:
    """Sends requests to any number of registries for one ``RegistryClient``."""

    def __init__(
        self, *, settings: RegistrySettings, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self._settings = settings
        self._egress = Egress(
            allowlist=settings.registry_allowlist,
            allow_link_local=settings.registry_allow_link_local,
        )
        self._transport = transport
        # What HTTPS trusts, built once: loading a CA bundle is not cheap.
        self._verify = _ssl_context(_tls_verification(settings))
        self._http = self._client(self._verify)
        # One connection pool per registry: httpcore's pool looks at every connection it
        # holds each time a request starts or ends, so one pool for every registry costs
        # each request more the more registries are in use. Mirror endpoints with their own
        # CA get a pool that trusts it (app.oci.mirrors).
        self._endpoint_http: dict[str, httpx.AsyncClient] = {}
        aliases: dict[str, str] = {}
        for entry in settings.registry_mirrors.values():
            for endpoint in entry.mirrors:
                if endpoint.ca is not None and endpoint.host not in self._endpoint_http:
                    self._endpoint_http[endpoint.host] = self._client(
                        _ssl_context(_tls_verification(settings, extra_ca=endpoint.ca))
                    )
                if endpoint.credentials is not None:
                    aliases[endpoint.host] = endpoint.credentials
        self._auth = Authenticator(
            http=self._http,
            credentials=CredentialStore(settings=settings, aliases=aliases),
            plain_http_allowed=self.plain_http_allowed,
            http_for=self.http_for,
        )
        self._schemes: dict[str, str] = {}

    def _client(self, verify: ssl.SSLContext) -> httpx.AsyncClient:
        return _CookielessClient(
            timeout=httpx.Timeout(self._settings.registry_request_timeout),
            verify=verify,
            follow_redirects=False,
            transport=self._transport
            or _GuardedTransport(verify=verify, backend=self._egress.network_backend()),
            headers={"User-Agent": f"sealgate/{__version__}"},
            trust_env=False,
        )

    def http_for(self, registry: str) -> httpx.AsyncClient:
        """The connection pool for ``registry`` (``host[:port]``), made on first use."""
        http = self._endpoint_http.get(registry)
        if http is None:
            http = self._endpoint_http[registry] = self._client(self._verify)
        return http

    async def aclose(self) -> None:
        await self._http.aclose()
        for http in self._endpoint_http.values():
            await http.aclose()

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
        """``<scheme>://<host>/v2/<repository>/<path>`` for ``ref``'s registry.

        Raises ``registry.not_allowed`` (before any probe) when the registry may not be
        contacted.
        """
        self._egress.admit(ref)
        host = _api_host(ref)
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
            await self.http_for(ref.registry).get(f"https://{host}/v2/")
        except AddressRefused as e:
            raise unanswered(e, ref=ref) from e
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
        """Bound a whole operation by ``registry_total_timeout`` (``registry.timeout``); the
        time left is published to ``app.oci.budget`` for sharing among mirrors."""
        total = self._settings.registry_total_timeout
        try:
            with budget.within(total):
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
        redirects: bool = False,
        headers: dict[str, str] | None = None,
        content: bytes | None = None,
    ) -> Reply:
        """One request with authentication, bounded retries and a capped body.

        ``redirects`` follows redirects as the module doc says (for manifest and blob reads
        only); without it a redirect is ``registry.redirect_refused``. Authentication is learnt
        from a 401 of the registry once per call; other answers are returned to the caller,
        which maps the status to an error with ``check_status``.
        """
        self._egress.admit(ref)
        scope = f"repository:{ref.repository}:{'pull,push' if push else 'pull'}"
        attempt = 0
        challenged = False
        while True:
            authorization = await self._auth.authorization(ref, scope=scope)
            try:
                reply = await self._follow(
                    method,
                    ref,
                    url,
                    headers=dict(headers or {}),
                    authorization=authorization,
                    content=content,
                    limit=limit,
                    redirects=redirects,
                )
            except _Unanswered as e:
                if e.retryable and idempotent and attempt < self._settings.registry_retries:
                    attempt += 1
                    await asyncio.sleep(_backoff(attempt))
                    continue
                raise e.error from e.__cause__
            if reply.status == 401 and not challenged and not reply.foreign:
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

    async def _follow(
        self,
        method: str,
        ref: ImageRef,
        url: httpx.URL,
        *,
        headers: dict[str, str],
        authorization: str | None,
        content: bytes | None,
        limit: int,
        redirects: bool,
    ) -> Reply:
        """The answer to ``method url``, following redirects hop by hop when allowed.

        Each hop's target is checked before it is contacted; ``Authorization`` goes only to
        the registry's own origin.
        """
        home = _home_origin(url.scheme, _api_host(ref))
        request = f"{method} {url.path}"
        current = url
        for hops in range(MAX_REDIRECTS + 1):
            foreign = _origin(current) != home
            hop_headers = dict(headers)
            if authorization and not foreign:
                hop_headers["Authorization"] = authorization
            try:
                reply = await self._exchange(
                    method,
                    ref,
                    current,
                    headers=hop_headers,
                    content=content,
                    limit=limit,
                    foreign=foreign,
                )
            except (httpx.HTTPError, AddressRefused) as e:
                raise self._unanswered(
                    e, ref=ref, request=request, url=current, foreign=foreign
                ) from e
            location = reply.headers.get("Location")
            if reply.status not in _REDIRECT_STATUS or not location:
                return reply
            current = self._redirect_target(
                ref, request=request, reply=reply, location=location, allowed=redirects, hops=hops
            )
        raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover

    def _redirect_target(
        self,
        ref: ImageRef,
        *,
        request: str,
        reply: Reply,
        location: str,
        allowed: bool,
        hops: int,
    ) -> httpx.URL:
        """Where a redirect points, once it passes every rule of the module doc."""
        try:
            target = reply.url.join(location)
        except httpx.InvalidURL as e:
            raise _redirect_refused(ref, f"{request} was redirected to an invalid URL") from e
        where = target.netloc.decode("ascii", "replace") or "nowhere"
        said = f"{request} was answered with a redirect ({reply.status}) to {where}"
        if not allowed:
            raise _redirect_refused(
                ref, f"{said}; only manifest and blob reads may be redirected, never uploads"
            )
        if hops >= MAX_REDIRECTS:
            raise _redirect_refused(
                ref, f"{request} was redirected more than {MAX_REDIRECTS} times"
            )
        if target.scheme not in _DEFAULT_PORTS or not target.host:
            raise _redirect_refused(ref, f"{said}, which is not an HTTP(S) URL")
        if target.scheme == "http" and reply.url.scheme == "https":
            raise _redirect_refused(ref, f"{said}: from HTTPS down to plain HTTP")
        if target.scheme == "http" and not self.plain_http_allowed(where):
            raise _redirect_refused(
                ref,
                f"{said} over plain HTTP, which is only allowed for loopback hosts and "
                "SEALGATE_INSECURE_REGISTRIES",
            )
        return target

    def _unanswered(
        self,
        error: httpx.HTTPError | AddressRefused,
        *,
        ref: ImageRef,
        request: str,
        url: httpx.URL,
        foreign: bool,
    ) -> _Unanswered:
        """What a request that got no answer raises, and whether retrying may help."""
        target = f"redirect target {url.netloc.decode()}" if foreign else None
        if isinstance(error, httpx.ConnectError) and _certificate_rejected(error):
            if foreign:
                return _Unanswered(unanswered(error, ref=ref, target=target), retryable=False)
            return _Unanswered(_untrusted(ref, error), retryable=False)
        if isinstance(error, httpx.PoolTimeout):  # our own connections were all busy
            return _Unanswered(
                registry_error(
                    errors.TIMEOUT,
                    ref=ref,
                    problem=f"{request} found no free connection within "
                    f"{self._settings.registry_request_timeout:g} s",
                ),
                retryable=False,
            )
        if isinstance(error, httpx.TimeoutException) and not isinstance(
            error, httpx.ConnectTimeout
        ):
            # Connected, then silence: to a caller this must read like a closed port, or the
            # difference maps which ports are open.
            return _Unanswered(unanswered(error, ref=ref, target=target), retryable=False)
        retryable = isinstance(
            error,
            (
                httpx.ConnectError,
                httpx.ConnectTimeout,
                httpx.RemoteProtocolError,
                httpx.ReadError,
                httpx.WriteError,
            ),
        )
        return _Unanswered(unanswered(error, ref=ref, target=target), retryable=retryable)

    async def _exchange(
        self,
        method: str,
        ref: ImageRef,
        url: httpx.URL,
        *,
        headers: dict[str, str],
        content: bytes | None,
        limit: int,
        foreign: bool,
    ) -> Reply:
        """One HTTP exchange; errors before the answer starts are httpx's, after it ours."""
        http = self.http_for(ref.registry)
        async with http.stream(method, url, headers=headers, content=content) as response:
            success = 200 <= response.status_code < 300
            if success and method != "HEAD":
                declared = response.headers.get("Content-Length", "")
                if declared.isdigit() and int(declared) > limit:
                    raise _too_large(ref, url, limit)
            cap = limit if success else MAX_ERROR_BODY_BYTES
            body = bytearray()
            # Read to the end even for HEAD (whose answer has no body): a response read to its
            # end is what lets httpcore keep the connection for the next request; one closed
            # half-read costs a new TCP connection, and the registry a closed one.
            try:
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > cap:
                        if success:
                            raise _too_large(ref, url, limit)
                        break
            except httpx.ReadTimeout as e:
                raise registry_error(
                    errors.TIMEOUT,
                    ref=ref,
                    problem=f"{method} {url.path}: the answer stopped arriving for "
                    f"{self._settings.registry_request_timeout:g} s",
                ) from e
            except (httpx.RemoteProtocolError, httpx.ReadError) as e:
                raise registry_error(
                    errors.TRUNCATED,
                    ref=ref,
                    problem=f"{method} {url.path}: the connection broke before the whole "
                    "answer arrived",
                ) from e
            except httpx.DecodingError as e:
                raise registry_error(
                    errors.PROTOCOL,
                    ref=ref,
                    problem=f"{method} {url.path}: the answer's content encoding is broken",
                ) from e
            return Reply(
                status=response.status_code,
                headers=response.headers,
                body=bytes(body),
                url=url,
                foreign=foreign,
            )

    def check_status(self, reply: Reply, ref: ImageRef, what: str) -> None:
        """Raise the ``RegistryError`` matching a non-2xx answer about ``what``."""
        status = reply.status
        if 200 <= status < 300:
            return
        said = registry_message(reply)
        if reply.foreign:
            # Another host's words are not the registry's: name who answered, show nothing.
            said = f" (answered by redirect target {reply.url.netloc.decode()})"
        if status == 401:
            if reply.foreign:
                hint = "the redirect target asks for credentials; none are sent to it"
            elif self._auth.has_credentials(ref.registry):
                hint = "the credentials were refused"
            else:
                hint = "no credentials are configured for this registry"
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


def _tls_verification(
    settings: RegistrySettings, *, extra_ca: Path | None = None
) -> ssl.SSLContext | bool:
    """What HTTPS trusts: ``registry_ca_bundle`` (else the system's roots), plus a mirror
    endpoint's own ``extra_ca`` on top of the system's and the bundle, as containerd's
    ``ca`` does."""
    if settings.registry_ca_bundle is None and extra_ca is None:
        return True
    try:
        if extra_ca is None:
            return ssl.create_default_context(cafile=str(settings.registry_ca_bundle))
        context = ssl.create_default_context()
        if settings.registry_ca_bundle is not None:
            context.load_verify_locations(cafile=str(settings.registry_ca_bundle))
    except (OSError, ssl.SSLError) as e:
        raise ConfigError(
            f"SEALGATE_REGISTRY_CA_BUNDLE {settings.registry_ca_bundle} is not a usable "
            f"PEM bundle: {e}"
        ) from e
    try:
        context.load_verify_locations(cafile=str(extra_ca))
    except (OSError, ssl.SSLError) as e:
        raise ConfigError(
            f"SEALGATE_REGISTRY_MIRRORS: ca {extra_ca} is not a usable PEM bundle: {e}"
        ) from e
    return context


def _ssl_context(verify: ssl.SSLContext | bool) -> ssl.SSLContext:
    """``verify`` as the context httpx would build from it (``True``: the system's roots)."""
    if isinstance(verify, ssl.SSLContext):
        return verify
    return httpx.create_ssl_context(verify=verify, trust_env=False)


def _api_host(ref: ImageRef) -> str:
    """The host requests for ``ref`` go to (Docker Hub's API host for ``docker.io``)."""
    return _DOCKER_HUB_API if ref.registry == DOCKER_HUB else ref.registry


@functools.lru_cache(maxsize=256)
def _home_origin(scheme: str, host: str) -> tuple[str, str, int]:
    """The origin of a registry's API host (parsed once per host: a URL parse is not cheap)."""
    return _origin(httpx.URL(f"{scheme}://{host}/"))


def _origin(url: httpx.URL) -> tuple[str, str, int]:
    """Scheme, host and port (the default one when not written): what credentials belong to."""
    return (url.scheme, url.host.lower(), url.port or _DEFAULT_PORTS.get(url.scheme, 0))


def _redirect_refused(ref: ImageRef, problem: str) -> RegistryError:
    return registry_error(errors.REDIRECT_REFUSED, ref=ref, problem=problem)


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
    """``: CODE message`` from a distribution error body, or an empty string.

    Always empty for a ``foreign`` answer (a redirect target's body is never shown).
    """
    if reply.foreign:
        return ""
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
