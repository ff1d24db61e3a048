"""JSONPatch (RFC 6902) that pins container images to the digests they were decided on.

``image: repo:tag`` becomes ``repo:tag@sha256:...``: the reference as the user wrote it with the
digest appended, so the kubelet pulls exactly what was checked while ``kubectl get`` still
shows the tag. For an index (a multi-platform image) the digest is the index digest, which is
what was decided on; the node picks its platform from it. Images already carrying a digest
are left as written. The API server wants the patch as base64 of its JSON
(``patchType: JSONPatch``).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence

from app.k8s.images import ContainerImage
from app.oci.digests import parse_digest

PATCH_TYPE = "JSONPatch"


def is_pinned(image: str) -> bool:
    """Whether ``image`` already names a digest (``name@sha256:...``)."""
    return "@" in image


def pinned(image: str, digest: str) -> str:
    """``image`` with ``@digest`` appended (``digest`` is validated first)."""
    return f"{image}@{parse_digest(digest)}"


def pin_images(
    entries: Sequence[ContainerImage], *, digests: Mapping[str, str]
) -> list[dict[str, str]]:
    """One ``replace`` operation per container whose image is not pinned yet and has a digest
    in ``digests`` (image string as written → manifest or index digest). Images without a
    digest there are left alone; raises ``InputError`` for a malformed digest."""
    operations: list[dict[str, str]] = []
    for entry in entries:
        digest = digests.get(entry.image)
        if digest is None or is_pinned(entry.image):
            continue
        operations.append(
            {"op": "replace", "path": entry.path, "value": pinned(entry.image, digest)}
        )
    return operations


def encode_patch(operations: Sequence[Mapping[str, str]]) -> str:
    """The base64 text of the patch's JSON, as ``AdmissionResponse.patch`` carries it."""
    text = json.dumps(list(operations), separators=(",", ":"))
    return base64.b64encode(text.encode("utf-8")).decode("ascii")
