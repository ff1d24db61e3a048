"""Registry authentication: credentials, ``WWW-Authenticate`` challenges and bearer tokens.

``CredentialStore`` finds a username and password for a registry, first in
``settings.registry_username``/``registry_password`` (only for the one registry named by
``settings.registry_credentials_host``: a caller chooses which registry an image reference
names, so credentials must never follow it elsewhere) and then in a Docker ``config.json``
(``settings.docker_config``, else ``$DOCKER_CONFIG/config.json``, else
``~/.docker/config.json``; ``auths.<host>.auth`` as base64 ``user:password`` or
``username``/``password``; credential helpers are not run).

``Authenticator`` answers "which ``Authorization`` header goes with a request for this
repository and scope". It learns each registry's challenge from its first 401 and then:

1. for ``Basic``, sends the stored credentials (or none, and the caller reports 401);
2. for ``Bearer realm=...,service=...,scope=...`` (the distribution token spec), asks the
   realm for a token with ``service`` and ``scope`` (sending basic credentials when known),
   caches it per registry and scope until ``expires_in`` (60 s when absent) has passed.

A realm on plain HTTP is refused unless its host is one where plain HTTP is allowed
(loopback, or listed in ``settings.insecure_registries``): a token request can carry passwords.
A realm that cannot be reached reads like any unreachable host (``app.oci.egress``).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from app.errors import ConfigError
from app.limits import MAX_TOKEN_RESPONSE_BYTES
from app.oci import errors
from app.oci.egress import AddressRefused, unanswered
from app.oci.errors import registry_error
from app.oci.refs import DOCKER_HUB, ImageRef
from app.oci.settings import RegistrySettings

log = logging.getLogger(__name__)

_DOCKER_HUB_KEYS = ("docker.io", "index.docker.io", "registry-1.docker.io")
_DEFAULT_TOKEN_LIFETIME = 60
_TOKEN_MARGIN = 5
_PARAM = re.compile(r'([A-Za-z][A-Za-z0-9_-]*)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)')


@dataclass(frozen=True)
class Credentials:
    """A username and password for one registry (the password is never shown in ``repr``)."""

    username: str
    password: str = field(repr=False)

    def basic_header(self) -> str:
        pair = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(pair).decode("ascii")


@dataclass(frozen=True)
class Challenge:
    """A parsed ``WWW-Authenticate`` header: the scheme (lowercase) and its parameters."""

    scheme: str
    params: dict[str, str]

    @classmethod
    def parse(cls, header: str | None) -> Challenge | None:
        """Parse ``Bearer realm="...",service="..."`` or ``Basic realm="..."``; None if absent."""
        if not header:
            return None
        scheme, _, rest = header.strip().partition(" ")
        params = {}
        for key, value in _PARAM.findall(rest):
            if value.startswith('"'):
                value = re.sub(r"\\(.)", r"\1", value[1:-1])
            params[key.lower()] = value
        return cls(scheme=scheme.lower(), params=params)


class CredentialStore:
    """Looks up credentials for a registry host (``127.0.0.1:5000``, ``docker.io``)."""

    def __init__(
        self, *, settings: RegistrySettings, aliases: dict[str, str] | None = None
    ) -> None:
        self._settings = settings
        self._docker_auths: dict[str, Credentials] | None = None
        # Mirror endpoints whose credentials are another Docker config entry's.
        self._aliases = dict(aliases or {})

    def lookup(self, registry: str) -> Credentials | None:
        """Credentials for ``registry``, or None for anonymous access. A mirror endpoint
        with ``credentials = "ENTRY"`` uses the Docker config entry ``ENTRY``."""
        settings = self._settings
        if (
            settings.registry_username
            and settings.registry_password is not None
            and settings.registry_credentials_host is not None
            and _same_registry(settings.registry_credentials_host, registry)
        ):
            return Credentials(
                settings.registry_username, settings.registry_password.get_secret_value()
            )
        if self._docker_auths is None:
            self._docker_auths = self._load_docker_config()
        entry = self._aliases.get(registry, registry)
        keys = _DOCKER_HUB_KEYS if entry == DOCKER_HUB else (entry,)
        for key in keys:
            if key in self._docker_auths:
                return self._docker_auths[key]
        return None

    def _load_docker_config(self) -> dict[str, Credentials]:
        explicit = self._settings.docker_config
        if explicit is not None:
            path = explicit
        elif os.environ.get("DOCKER_CONFIG"):
            path = Path(os.environ["DOCKER_CONFIG"]) / "config.json"
        else:
            path = Path.home() / ".docker" / "config.json"
        try:
            document = json.loads(path.read_text())
            return parse_docker_config(document)
        except FileNotFoundError as e:
            if explicit is not None:
                raise ConfigError(f"SEALGATE_DOCKER_CONFIG {path} does not exist") from e
            return {}
        except (OSError, ValueError) as e:
            if explicit is not None:
                raise ConfigError(f"SEALGATE_DOCKER_CONFIG {path} is not usable: {e}") from e
            log.warning("ignoring unreadable Docker config %s: %s", path, e)
            return {}


def _same_registry(configured: str, registry: str) -> bool:
    """Whether ``registry`` (as in an ``ImageRef``) is the lowercase ``configured`` host."""
    if registry == DOCKER_HUB:
        return configured in _DOCKER_HUB_KEYS
    return configured == registry.lower()


def parse_docker_config(document: Any) -> dict[str, Credentials]:
    """The ``auths`` of a Docker ``config.json`` as host -> credentials.

    Keys are normalised to a bare host (``https://index.docker.io/v1/`` -> ``index.docker.io``).
    Raises ``ValueError`` naming the entry when the file's shape is wrong.
    """
    if not isinstance(document, dict):
        raise ValueError("the Docker config is not a JSON object")
    auths = document.get("auths") or {}
    if not isinstance(auths, dict):
        raise ValueError("'auths' is not an object")
    found: dict[str, Credentials] = {}
    for key, entry in auths.items():
        host = re.sub(r"^[a-z]+://", "", str(key)).split("/", 1)[0]
        if not isinstance(entry, dict):
            raise ValueError(f"auths entry {key!r} is not an object")
        if isinstance(entry.get("auth"), str) and entry["auth"]:
            try:
                pair = base64.b64decode(entry["auth"], validate=True).decode()
            except (binascii.Error, UnicodeDecodeError) as e:
                raise ValueError(f"auths entry {key!r}: 'auth' is not base64 user:password") from e
            username, sep, password = pair.partition(":")
            if not sep:
                raise ValueError(
                    f"auths entry {key!r}: 'auth' has no ':' between user and password"
                )
            found[host] = Credentials(username, password)
        elif isinstance(entry.get("username"), str) and isinstance(entry.get("password"), str):
            found[host] = Credentials(entry["username"], entry["password"])
    return found


class Authenticator:
    """Chooses the ``Authorization`` header of each request and fetches bearer tokens."""

    def __init__(
        self,
        *,
        http: httpx.AsyncClient,
        credentials: CredentialStore,
        plain_http_allowed: Callable[[str], bool],
        http_for: Callable[[str], httpx.AsyncClient] | None = None,
    ) -> None:
        self._http = http
        self._http_for = http_for
        self._credentials = credentials
        self._plain_http_allowed = plain_http_allowed
        self._challenges: dict[str, Challenge] = {}
        self._tokens: dict[tuple[str, str], tuple[str, float]] = {}

    def has_credentials(self, registry: str) -> bool:
        return self._credentials.lookup(registry) is not None

    async def authorization(self, ref: ImageRef, *, scope: str) -> str | None:
        """The header value for a request on ``ref`` needing ``scope``, or None (anonymous)."""
        challenge = self._challenges.get(ref.registry)
        if challenge is None:
            return None
        if challenge.scheme == "basic":
            creds = self._credentials.lookup(ref.registry)
            return creds.basic_header() if creds else None
        if challenge.scheme == "bearer":
            cached = self._tokens.get((ref.registry, scope))
            if cached is not None and cached[1] > time.monotonic():
                return f"Bearer {cached[0]}"
            token, lifetime = await self._fetch_token(ref, challenge=challenge, scope=scope)
            self._tokens[(ref.registry, scope)] = (token, time.monotonic() + lifetime)
            return f"Bearer {token}"
        return None

    def learn(self, ref: ImageRef, *, header: str | None, scope: str) -> bool:
        """Record the challenge of a 401; True when retrying with new credentials can help."""
        challenge = Challenge.parse(header)
        if challenge is None or challenge.scheme not in ("basic", "bearer"):
            return False
        known = self._challenges.get(ref.registry)
        self._challenges[ref.registry] = challenge
        if challenge.scheme == "basic":
            # Retrying helps only if we have credentials and did not send them already.
            return self.has_credentials(ref.registry) and (known is None or known != challenge)
        # A rejected or missing token: drop it so the retry fetches a fresh one.
        self._tokens.pop((ref.registry, scope), None)
        return True

    async def _fetch_token(
        self, ref: ImageRef, *, challenge: Challenge, scope: str
    ) -> tuple[str, float]:
        realm = challenge.params.get("realm", "")
        url = httpx.URL(realm) if realm else None
        if url is None or url.scheme not in ("http", "https") or not url.host:
            raise registry_error(
                errors.PROTOCOL, ref=ref, problem=f"bearer challenge has no usable realm {realm!r}"
            )
        netloc = url.netloc.decode("ascii")
        if url.scheme == "http" and not self._plain_http_allowed(netloc):
            raise registry_error(
                errors.UNAUTHORIZED,
                ref=ref,
                problem=f"token realm {realm} uses plain HTTP; refusing to ask it for a token "
                "(list the host in SEALGATE_INSECURE_REGISTRIES only if that is intended)",
            )
        params = {"scope": scope}
        if "service" in challenge.params:
            params["service"] = challenge.params["service"]
        creds = self._credentials.lookup(ref.registry)
        http = self._http_for(ref.registry) if self._http_for is not None else self._http
        try:
            async with http.stream(
                "GET",
                url,
                params=params,
                auth=(creds.username, creds.password) if creds else None,
                follow_redirects=False,
            ) as response:
                body = await _read_capped(response, limit=MAX_TOKEN_RESPONSE_BYTES)
        except (httpx.HTTPError, AddressRefused) as e:
            raise unanswered(e, ref=ref, target=f"token endpoint {netloc}") from e
        if response.status_code in (401, 403):
            who = "the configured credentials" if creds else "anonymous access"
            raise registry_error(
                errors.UNAUTHORIZED,
                ref=ref,
                problem=f"token endpoint {realm} refused {who} for scope {scope} "
                f"(HTTP {response.status_code})",
            )
        if body is None:
            raise registry_error(
                errors.TOO_LARGE,
                ref=ref,
                problem=f"token endpoint {realm} answered more than "
                f"{MAX_TOKEN_RESPONSE_BYTES} bytes",
            )
        if response.status_code != 200:
            raise registry_error(
                errors.SERVER_ERROR,
                ref=ref,
                problem=f"token endpoint {realm} answered HTTP {response.status_code}",
            )
        return _parse_token(ref, realm=realm, body=body)


def _parse_token(ref: ImageRef, *, realm: str, body: bytes) -> tuple[str, float]:
    try:
        document = json.loads(body)
    except ValueError:
        document = None
    token = None
    if isinstance(document, dict):
        token = document.get("token") or document.get("access_token")
    if not isinstance(token, str) or not token:
        raise registry_error(
            errors.PROTOCOL, ref=ref, problem=f"token endpoint {realm} answered without a token"
        )
    expires_in = document.get("expires_in") if isinstance(document, dict) else None
    if not isinstance(expires_in, int) or isinstance(expires_in, bool) or expires_in <= 0:
        expires_in = _DEFAULT_TOKEN_LIFETIME
    return token, float(max(expires_in - _TOKEN_MARGIN, 1))


async def _read_capped(response: httpx.Response, *, limit: int) -> bytes | None:
    """The body, or None when it exceeds ``limit`` bytes (read no further than that)."""
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)
