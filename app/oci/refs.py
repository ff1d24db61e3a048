"""Image references: parse and normalise ``[registry/]repository[:tag][@digest]`` as Docker does.

``ImageRef.parse("nginx")`` gives ``docker.io/library/nginx:latest``; ``localhost:5000/x``,
``127.0.0.1:5000/team/app@sha256:...`` and ``ghcr.io/o/r:v1@sha256:...`` keep their registry.
The grammar is the one of distribution's ``reference`` package: lowercase path components
joined by ``/`` and separated inside by ``.``, ``_``, ``__`` or dashes; a registry is the first
component only when it contains ``.`` or ``:`` or is ``localhost``; a tag is at most 128 word
characters, dots and dashes; a name is at most 255 characters. Anything else raises
``InputError`` with a message naming the problem.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, replace

from app.errors import InputError
from app.oci.digests import parse_digest

DOCKER_HUB = "docker.io"
DEFAULT_TAG = "latest"
_DOCKER_HUB_ALIASES = {"docker.io", "index.docker.io", "registry-1.docker.io"}
_MAX_NAME_LENGTH = 255

_PATH_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = re.compile(
    rf"^(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?$"
)
_TAG = re.compile(r"^\w[\w.-]{0,127}$", re.ASCII)


def _invalid(text: str, problem: str) -> InputError:
    return InputError(
        f"image reference {text!r} is not valid: {problem}", code="input.invalid_reference"
    )


@dataclass(frozen=True)
class ImageRef:
    """A normalised image reference. Build it with ``ImageRef.parse``.

    ``registry`` is the host as written in references (``docker.io``, ``127.0.0.1:5000``);
    ``repository`` the path inside it (``library/nginx``). ``tag`` and ``digest`` may both be
    set (``name:tag@digest``); the digest then wins for every fetch.
    """

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @classmethod
    def parse(cls, text: str) -> ImageRef:
        """Parse and normalise ``text``; raise ``InputError`` naming what is wrong.

        A reference with neither tag nor digest gets the tag ``latest``. Parsed references
        are remembered (they are immutable): every enforcement point parses the same few
        hundred images over and over.
        """
        if not isinstance(text, str) or not text:
            raise _invalid(str(text), "it is empty")
        return _parse(text)

    @classmethod
    def _parse(cls, text: str) -> ImageRef:
        if text != text.strip() or any(c.isspace() for c in text):
            raise _invalid(text, "it contains whitespace")
        name, at, digest = text.partition("@")
        if at:
            if "@" in digest:
                raise _invalid(text, "it contains more than one '@'")
            try:
                parse_digest(digest)
            except InputError as e:
                raise _invalid(text, e.message) from e
        tag: str | None = None
        slash = name.rfind("/")
        colon = name.rfind(":")
        if colon > slash:
            name, tag = name[:colon], name[colon + 1 :]
            if not _TAG.match(tag):
                raise _invalid(
                    text,
                    f"tag {tag!r} must be 1-128 letters, digits, '_', '.' or '-' "
                    "and not start with '.' or '-'",
                )
        registry, repository = _split_registry(text, name)
        if len(f"{registry}/{repository}") > _MAX_NAME_LENGTH:
            raise _invalid(text, f"the name is longer than {_MAX_NAME_LENGTH} characters")
        if tag is None and not at:
            tag = DEFAULT_TAG
        return cls(registry=registry, repository=repository, tag=tag, digest=digest or None)

    @property
    def name(self) -> str:
        """``registry/repository`` without tag or digest."""
        return f"{self.registry}/{self.repository}"

    @property
    def reference(self) -> str:
        """What goes after ``/manifests/`` in a request: the digest if known, else the tag."""
        if self.digest:
            return self.digest
        return self.tag or DEFAULT_TAG

    def with_digest(self, digest: str) -> ImageRef:
        """The same image pinned to ``digest`` (validated); the tag is kept for display."""
        return replace(self, digest=parse_digest(digest))

    def with_tag(self, tag: str) -> ImageRef:
        """The same repository at ``tag``, without a digest."""
        if not _TAG.match(tag):
            raise _invalid(f"{self.name}:{tag}", f"tag {tag!r} is not valid")
        return replace(self, tag=tag, digest=None)

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def parse_location(text: str, *, what: str) -> tuple[str, str]:
    """``host[:port][/path]`` (a mirror endpoint, a signature repository) as
    ``(registry, path)``: the host normalised as in references (Docker Hub's aliases are
    ``docker.io``), the path ``""`` when absent. Raises ``InputError`` naming ``what``.

    The host is always the first component here, even without ``.`` or ``:``: a location
    names where to connect, never a Docker Hub repository.
    """
    if not isinstance(text, str) or not text.strip():
        raise InputError(f"{what} is empty")
    if "://" in text:
        raise InputError(
            f"{what} {text!r} must be host[:port][/path] without a scheme (HTTPS is used, plain "
            "HTTP only for loopback and SEALGATE_INSECURE_REGISTRIES hosts)"
        )
    if any(c.isspace() for c in text) or "@" in text:
        raise InputError(f"{what} {text!r} must be host[:port][/path]")
    host, _, path = text.strip().rstrip("/").partition("/")
    if not _DOMAIN.match(host):
        raise InputError(f"{what} {text!r}: {host!r} is not a valid registry host[:port]")
    for component in path.split("/") if path else ():
        if not _PATH_COMPONENT.match(component):
            raise InputError(
                f"{what} {text!r}: path component {component!r} must be lowercase letters and "
                "digits separated by '.', '_', '__' or '-'"
            )
    host = host.lower()
    return (DOCKER_HUB if host in _DOCKER_HUB_ALIASES else host), path


# Invalid references raise, and are not remembered.
_parse = functools.lru_cache(maxsize=8192)(ImageRef._parse)


def _split_registry(text: str, name: str) -> tuple[str, str]:
    """Split ``name`` into registry and repository as Docker's ``splitDockerDomain`` does."""
    if not name:
        raise _invalid(text, "the repository name is empty")
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        registry, repository = first, rest
        if not _DOMAIN.match(registry):
            raise _invalid(text, f"registry {registry!r} is not a valid host[:port]")
        if registry.lower() in _DOCKER_HUB_ALIASES:
            registry = DOCKER_HUB
    else:
        registry, repository = DOCKER_HUB, name
    if registry == DOCKER_HUB and "/" not in repository:
        repository = f"library/{repository}"
    if repository != repository.lower():
        raise _invalid(text, f"repository name {repository!r} must be lowercase")
    for component in repository.split("/"):
        if not _PATH_COMPONENT.match(component):
            raise _invalid(
                text,
                f"repository path component {component!r} must be lowercase letters and digits "
                "separated by '.', '_', '__' or '-'",
            )
    return registry, repository
