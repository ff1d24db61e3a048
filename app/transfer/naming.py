"""Where a copy lands, and the identity remap its verifying authority needs.

A site target is ``REGISTRY[/PREFIX]`` (``site.local:5000/plant7``). An image from
``registry.corp/team/app`` lands in ``site.local:5000/plant7/team/app``: the prefix, then the
source repository path without its registry. (Docker Hub images keep their ``library/``
path: ``docker.io/library/nginx`` lands in ``site.local:5000/plant7/library/nginx``.)

A signature names the repository it was made for, and an authority with signed identity
``match-repository`` (the default) refuses it under another name. ``identity_remap`` gives
the ``PREFIX=SIGNED_PREFIX`` pair (``app.verify.identity``) that makes the copy verify with
the source's signatures: the destination's prefix mapped onto the source's, found from the
longest common tail of path components (``site.local:5000/plant7=registry.corp``).
"""

from __future__ import annotations

from dataclasses import dataclass

from app.errors import InputError
from app.oci.refs import ImageRef
from app.verify.identity import IdentityRemap


@dataclass(frozen=True)
class SiteTarget:
    """``REGISTRY[/PREFIX]``, normalised."""

    registry: str
    prefix: str  # "" or "plant7/images"

    @classmethod
    def parse(cls, text: str) -> SiteTarget:
        """``site.local:5000/plant7`` -> SiteTarget; ``InputError`` naming what is wrong."""
        cleaned = text.strip().rstrip("/")
        if not cleaned or "@" in cleaned:
            raise InputError(
                f"target {text[:200]!r} is not REGISTRY[/PREFIX] (e.g. site.local:5000/plant7)",
                code="input.invalid_reference",
            )
        registry, _, prefix = cleaned.partition("/")
        try:
            probe = ImageRef.parse(f"{cleaned}/x0" if prefix else f"{registry}/x0")
        except InputError as e:
            raise InputError(
                f"target {text[:200]!r} is not REGISTRY[/PREFIX]: {e.message}",
                code="input.invalid_reference",
            ) from e
        if probe.registry != registry or probe.tag != "latest":
            raise InputError(
                f"target {text[:200]!r} must start with a registry host (with a '.' or a "
                "port, or localhost) and carry no tag",
                code="input.invalid_reference",
            )
        return cls(registry=registry, prefix=probe.repository.removesuffix("x0").rstrip("/"))

    def place(self, source: ImageRef) -> ImageRef:
        """``source`` as it is named at this target (tag and digest kept)."""
        path = f"{self.prefix}/{source.repository}" if self.prefix else source.repository
        return ImageRef(registry=self.registry, repository=path, tag=source.tag, digest=None)

    def __str__(self) -> str:
        return f"{self.registry}/{self.prefix}" if self.prefix else self.registry


def identity_remap(*, source: str, destination: str) -> IdentityRemap | None:
    """The remap under which ``destination`` (``registry/repository``) verifies with
    signatures made for ``source``; None when the names are the same.

    The longest common tail of path components is kept, the heads are mapped:
    ``site:5000/plant7/team/app`` from ``registry.corp/team/app`` gives
    ``site:5000/plant7=registry.corp``.
    """
    if source == destination:
        return None
    src, dst = source.split("/"), destination.split("/")
    common = 0
    while common < min(len(src), len(dst)) - 1 and src[-1 - common] == dst[-1 - common]:
        common += 1
    head = len(src) - common, len(dst) - common
    return IdentityRemap.of(prefix="/".join(dst[: head[1]]), signed_prefix="/".join(src[: head[0]]))
