"""Manifests as fetched from a registry: checked against their digest, then their shape.

``parse_manifest`` turns an answer into a ``Manifest`` only if its bytes hash to the digest
that was asked for (or that the registry announced) and it is a schema 2 image manifest,
index or manifest list whose descriptors are valid; ``Manifest``'s descriptor properties can
then be read without further checks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx

from app.errors import InputError
from app.oci import errors, media
from app.oci.descriptor import Descriptor
from app.oci.digests import compute_digest, matches_digest, parse_digest
from app.oci.errors import registry_error
from app.oci.refs import ImageRef


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


def parse_manifest(ref: ImageRef, *, body: bytes, headers: httpx.Headers) -> Manifest:
    """The manifest ``ref`` named, from the answer's ``body`` and ``headers``.

    First the bytes are checked against ``ref.digest``, else against the
    ``Docker-Content-Digest`` header when sent (``registry.digest_mismatch``); then the JSON
    shape (``registry.invalid_manifest``): schema version 2, a manifest media type, valid
    descriptors.
    """
    raw = body
    header = headers.get("Docker-Content-Digest")
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
    content_type = headers.get("Content-Type", "").split(";")[0].strip()
    media_type = document.get("mediaType") or content_type
    if media_type not in media.MANIFEST_TYPES:
        raise registry_error(
            errors.INVALID_MANIFEST,
            ref=ref,
            problem=f"{what} has unsupported media type {media_type!r}",
        )
    # Required by the media type, then every optional field the properties read.
    if media_type in media.INDEX_TYPES:
        _descriptors(ref, document.get("manifests"), f"{what} manifests")
    else:
        _descriptors(ref, [document.get("config")], f"{what} config")
    for key in ("manifests", "layers"):
        if document.get(key) is not None:
            _descriptors(ref, document[key], f"{what} {key}")
    for key in ("config", "subject"):
        if document.get(key) is not None:
            _descriptors(ref, [document[key]], f"{what} {key}")
    annotations = document.get("annotations")
    if annotations is not None and not (
        isinstance(annotations, dict)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in annotations.items())
    ):
        raise registry_error(
            errors.INVALID_MANIFEST, ref=ref, problem=f"{what} annotations are not string pairs"
        )
    artifact_type = document.get("artifactType")
    if artifact_type is not None and not isinstance(artifact_type, str):
        raise registry_error(
            errors.INVALID_MANIFEST, ref=ref, problem=f"{what} artifactType is not a string"
        )
    return Manifest(
        ref=ref.with_digest(digest), digest=digest, media_type=media_type, raw=raw, json=document
    )


def parse_referrers_page(ref: ImageRef, body: bytes) -> list[Descriptor]:
    """The descriptors of one page of a referrers API answer (an OCI image index)."""
    document = _parse_json_object(ref, body, "referrers response")
    if document.get("mediaType", media.OCI_INDEX) != media.OCI_INDEX:
        raise registry_error(
            errors.INVALID_MANIFEST, ref=ref, problem="referrers response is not an OCI index"
        )
    return _descriptors(ref, document.get("manifests", []), "referrers response manifests")


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
