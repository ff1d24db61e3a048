"""Registry mirrors: which endpoints serve reads for an upstream registry, in which order.

The map is the setting ``registry_mirrors``. In the TOML settings file::

    [registry_mirrors."docker.io"]
    upstream = true                      # then docker.io itself (false: the mirrors only)
    [[registry_mirrors."docker.io".mirror]]
    location = "harbor.corp/dockerhub"   # host[:port][/path-prefix] (a Harbor proxy project)
    ca = "/etc/sealgate/harbor-ca.pem"   # trusted for this endpoint, on top of the system's
    credentials = "harbor.corp"          # the Docker config ``auths`` entry to send
    [[registry_mirrors."docker.io".mirror]]
    location = "mirror.corp:5000"
    capabilities = ["pull"]              # digests only: never asked what a tag points at

and as ``SEALGATE_REGISTRY_MIRRORS="UPSTREAM=ENDPOINT[,ENDPOINT...][;UPSTREAM=...]"``.

A reference keeps its upstream name everywhere (policy input, authority scopes, the signed
``docker-reference``, decision records); only the bytes are read elsewhere. An endpoint
``host/prefix`` serves ``UPSTREAM/REPO`` as ``host/prefix/REPO`` (``docker.io/library/nginx``
through ``harbor.corp/dockerhub`` is ``harbor.corp/dockerhub/library/nginx``), as Docker's
``registry-mirrors``, containerd's ``hosts.toml`` and Harbor proxy projects do.

``route`` lists the locations a read goes to: the mirrors in order (for a tag of the image
only those with the ``resolve`` capability, since whoever resolves a tag chooses the digest
that is then verified), then the upstream unless ``upstream = false``. The evidence tags
(``sha256-<hex>`` fallback indexes, ``.sig`` and ``.att``) are read through every mirror:
what they point at is verified against the digest, so a mirror can only withhold it.

``check_map`` refuses at start-up what cannot work: an upstream mirroring to itself, and a
loop (an endpoint that is itself an upstream whose mirrors lead back).

``served_from`` collects, for one piece of work, the repositories that actually served its
reads (the pipeline puts them into the policy input and the decision record).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.errors import InputError
from app.oci.refs import ImageRef, parse_location

Capability = Literal["pull", "resolve"]
_EVIDENCE_TAG = re.compile(r"^[a-z0-9]+-[0-9a-f]{32,}(\.[a-z]+)?$")


class MirrorEndpoint(BaseModel):
    """One mirror of an upstream registry (containerd ``[host."..."]``, registries.conf
    ``[[registry.mirror]]``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    location: str = Field(description="host[:port][/path-prefix]")
    capabilities: tuple[Capability, ...] = ("pull", "resolve")
    ca: Path | None = None
    credentials: str | None = None

    @field_validator("location")
    @classmethod
    def _location(cls, value: str) -> str:
        try:
            host, path = parse_location(value, what="mirror location")
        except InputError as e:
            raise ValueError(e.message) from e
        return f"{host}/{path}" if path else host

    @field_validator("capabilities")
    @classmethod
    def _pulls(cls, value: tuple[Capability, ...]) -> tuple[Capability, ...]:
        if "pull" not in value:
            raise ValueError("a mirror must have the 'pull' capability (it serves content)")
        return tuple(dict.fromkeys(value))

    @field_validator("ca")
    @classmethod
    def _ca_file(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"ca {value} is not a file")
        return value

    @field_validator("credentials")
    @classmethod
    def _credentials_host(cls, value: str | None) -> str | None:
        if value is not None and (not value or "/" in value or any(c.isspace() for c in value)):
            raise ValueError(f"credentials {value!r} must name a Docker config auths host")
        return value

    @property
    def host(self) -> str:
        return self.location.partition("/")[0]

    @property
    def prefix(self) -> str:
        return self.location.partition("/")[2]

    @property
    def resolves(self) -> bool:
        return "resolve" in self.capabilities


class UpstreamMirrors(BaseModel):
    """The mirrors of one upstream registry, and whether the upstream itself is asked last."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    mirrors: tuple[MirrorEndpoint, ...] = Field(default=(), alias="mirror")
    upstream: bool = True


MirrorMap = dict[str, UpstreamMirrors]


def parse_mirror_env(text: str) -> dict[str, Any]:
    """``UPSTREAM=ENDPOINT[,ENDPOINT...][;UPSTREAM=...]`` as the TOML form's dict.

    Raises ``ValueError`` naming the entry that is malformed."""
    found: dict[str, Any] = {}
    for entry in (e.strip() for e in text.split(";")):
        if not entry:
            continue
        upstream, sep, endpoints = entry.partition("=")
        locations = [e.strip() for e in endpoints.split(",") if e.strip()]
        if not sep or not upstream.strip() or not locations:
            raise ValueError(
                f"entry {entry!r} must be UPSTREAM=ENDPOINT[,ENDPOINT...], e.g. "
                "docker.io=harbor.corp/dockerhub,mirror.corp:5000"
            )
        key = upstream.strip()
        if key in found:
            raise ValueError(f"upstream {key!r} is named twice")
        found[key] = {"mirror": [{"location": location} for location in locations]}
    return found


def check_map(mirror_map: MirrorMap) -> MirrorMap:
    """``mirror_map`` with normalised upstream hosts; ``ValueError`` for a bad host, an
    upstream named twice, an upstream mirroring to itself, or a loop."""
    normalised: MirrorMap = {}
    for upstream, entry in mirror_map.items():
        try:
            host, path = parse_location(upstream, what="upstream registry")
        except InputError as e:
            raise ValueError(e.message) from e
        if path:
            raise ValueError(f"upstream {upstream!r} must be a registry host[:port], not a path")
        if host in normalised:
            raise ValueError(f"upstream {host!r} is named twice")
        if not entry.mirrors:
            raise ValueError(f"upstream {host!r} lists no mirror")
        for endpoint in entry.mirrors:
            if endpoint.host == host:
                raise ValueError(
                    f"upstream {host!r} names itself ({endpoint.location}) as its mirror"
                )
        normalised[host] = entry
    for start in normalised:
        _refuse_loop(normalised, start)
    by_host: dict[str, MirrorEndpoint] = {}
    for entry in normalised.values():
        for endpoint in entry.mirrors:
            seen = by_host.setdefault(endpoint.host, endpoint)
            if (seen.ca, seen.credentials) != (endpoint.ca, endpoint.credentials):
                raise ValueError(
                    f"mirrors {seen.location} and {endpoint.location} are on one host but name "
                    "different ca or credentials; one host has one of each"
                )
    return normalised


def _refuse_loop(mirror_map: MirrorMap, start: str) -> None:
    """Raise when following mirrors from ``start`` comes back to a host on the path."""

    def walk(host: str, path: list[str]) -> None:
        entry = mirror_map.get(host)
        if entry is None:
            return
        for endpoint in entry.mirrors:
            if endpoint.host in path:
                cycle = " -> ".join([*path[path.index(endpoint.host) :], endpoint.host])
                raise ValueError(f"mirror loop: {cycle}")
            walk(endpoint.host, [*path, endpoint.host])

    walk(start, [start])


@dataclass(frozen=True)
class Location:
    """Where one read goes: ``ref`` at the endpoint (its registry and path), and ``mirror``
    (None for the upstream itself)."""

    ref: ImageRef
    mirror: MirrorEndpoint | None = None

    @property
    def endpoint(self) -> str:
        return self.mirror.location if self.mirror is not None else self.ref.registry


class Mirrors:
    """The mirror map of the settings, answering where each read goes."""

    def __init__(self, mirror_map: MirrorMap) -> None:
        self._map = dict(mirror_map)

    def __bool__(self) -> bool:
        return bool(self._map)

    def endpoints(self) -> Iterator[MirrorEndpoint]:
        for entry in self._map.values():
            yield from entry.mirrors

    def route(self, ref: ImageRef) -> tuple[Location, ...]:
        """The locations to read ``ref`` from, in order (see the module doc).

        Empty when the upstream is switched off and no mirror may resolve ``ref``'s tag."""
        entry = self._map.get(ref.registry)
        if entry is None:
            return (Location(ref),)
        resolving = ref.digest is None and not _EVIDENCE_TAG.match(ref.tag or "")
        locations = [
            Location(at_endpoint(ref, endpoint), endpoint)
            for endpoint in entry.mirrors
            if endpoint.resolves or not resolving
        ]
        if entry.upstream:
            locations.append(Location(ref))
        return tuple(locations)


def at_endpoint(ref: ImageRef, endpoint: MirrorEndpoint) -> ImageRef:
    """``ref`` as ``endpoint`` serves it: its host, the prefix before the repository."""
    prefix = endpoint.prefix
    repository = f"{prefix}/{ref.repository}" if prefix else ref.repository
    return ImageRef(registry=endpoint.host, repository=repository, tag=ref.tag, digest=ref.digest)


# -- which repositories served a piece of work -------------------------------------------

_served: ContextVar[list[str] | None] = ContextVar("sealgate_served_from", default=None)


@contextmanager
def served_from() -> Iterator[list[str]]:
    """Collect, in first-use order, the repositories (``host/path``) that served the reads
    made inside the block (tasks started inside it included)."""
    sources: list[str] = []
    token = _served.set(sources)
    try:
        yield sources
    finally:
        _served.reset(token)


def note_served(ref: ImageRef) -> None:
    """Record that ``ref``'s repository served a read, when someone is collecting."""
    sources = _served.get()
    if sources is not None and ref.name not in sources:
        sources.append(ref.name)
