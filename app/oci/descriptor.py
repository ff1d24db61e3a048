"""OCI content descriptors: what a manifest, index or referrers list says about one object.

``Descriptor.from_json`` checks the shape of a descriptor read from the wire (media type,
verifiable digest, non-negative size, string annotations) and raises ``InputError`` naming the
bad field; the registry client turns that into ``registry.invalid_manifest``.
``to_json`` writes the wire form back, omitting empty optional fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from app.errors import InputError
from app.oci.digests import parse_digest


@dataclass(frozen=True)
class Descriptor:
    """One OCI descriptor (``mediaType``, ``digest``, ``size`` and optional fields)."""

    media_type: str
    digest: str
    size: int
    artifact_type: str | None = None
    annotations: dict[str, str] = field(default_factory=dict)
    platform: dict[str, Any] | None = None

    @classmethod
    def from_json(cls, value: Any) -> Descriptor:
        """Parse a descriptor object; raise ``InputError`` naming the first invalid field."""
        if not isinstance(value, dict):
            raise InputError("descriptor is not a JSON object")
        media_type = value.get("mediaType")
        if not isinstance(media_type, str) or not media_type:
            raise InputError("descriptor has no mediaType string")
        digest = value.get("digest")
        if not isinstance(digest, str):
            raise InputError("descriptor has no digest string")
        parse_digest(digest)
        size = value.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise InputError(f"descriptor {digest} has no valid size")
        artifact_type = value.get("artifactType")
        if artifact_type is not None and not isinstance(artifact_type, str):
            raise InputError(f"descriptor {digest} has a non-string artifactType")
        annotations = value.get("annotations") or {}
        if not isinstance(annotations, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()
        ):
            raise InputError(f"descriptor {digest} has annotations that are not string pairs")
        platform = value.get("platform")
        if platform is not None and not isinstance(platform, dict):
            raise InputError(f"descriptor {digest} has a platform that is not an object")
        return cls(
            media_type=media_type,
            digest=digest,
            size=size,
            artifact_type=artifact_type,
            annotations=dict(annotations),
            platform=platform,
        )

    def to_json(self) -> dict[str, Any]:
        """The wire form: ``mediaType``, ``digest``, ``size`` and the optional fields set."""
        body: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.artifact_type:
            body["artifactType"] = self.artifact_type
        if self.annotations:
            body["annotations"] = dict(self.annotations)
        if self.platform is not None:
            body["platform"] = dict(self.platform)
        return body
