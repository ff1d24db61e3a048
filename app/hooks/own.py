"""Recognising pushes that are signatures, attestations or referrers, not images to gate.

Sealgate's own signing pushes (and cosign's, and scan reports) must not be decided as if
they were images: they are recognised by what they are, not by who pushed them.

- by tag: cosign's ``sha256-<hex>.sig`` / ``.att`` / ``.sbom`` tags and the OCI referrers
  fallback index tag ``sha256-<hex>`` (an event with such a tag is ignored);
- by media type: a manifest whose ``artifactType``, config media type or any layer media
  type is a Sigstore bundle, a cosign simple-signing payload, an in-toto statement, a DSSE
  envelope or a Sealgate scan report (distribution reports layers in ``references``);
- by shape (the worker, which fetches the manifest): a manifest with a ``subject`` is a
  referrer of another artifact.

Consequence: an image pushed under a tag like ``sha256-<hex>`` gets no verdict, hence no
"gate passed" attestation; admission that requires one still refuses it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from app.oci import media

SCAN_ARTIFACT_TYPE = "application/vnd.sealgate.scan.v1+json"  # app.scans.ingest writes it

SIGNATURE_MEDIA_TYPES = frozenset(
    {
        media.SIGSTORE_BUNDLE_V03,
        "application/vnd.dev.sigstore.bundle+json;version=0.3",
        media.COSIGN_SIMPLESIGNING,
        media.IN_TOTO,
        media.DSSE_ENVELOPE,
        SCAN_ARTIFACT_TYPE,
    }
)

_OWN_TAG = re.compile(r"^sha256-[0-9a-f]{64}(\.(sig|att|sbom))?$")


def is_own_tag(tag: str | None) -> bool:
    """Whether ``tag`` is a cosign signature/attestation tag or a referrers fallback tag."""
    return tag is not None and _OWN_TAG.match(tag) is not None


def names_signature_type(types: Iterable[str | None]) -> bool:
    """Whether any of ``types`` (artifact type, config and layer media types) is one of the
    signature, attestation or scan-report media types."""
    return any(t is not None and t.split(";")[0].strip() in _BASE_TYPES for t in types)


_BASE_TYPES = frozenset(t.split(";")[0] for t in SIGNATURE_MEDIA_TYPES)


def is_referrer_manifest(document: dict[str, Any]) -> bool:
    """Whether a fetched manifest is a referrer or a signature rather than an image."""
    if isinstance(document.get("subject"), dict):
        return True
    types: list[str | None] = []
    artifact_type = document.get("artifactType")
    types.append(artifact_type if isinstance(artifact_type, str) else None)
    for item in [document.get("config"), *(document.get("layers") or [])]:
        if isinstance(item, dict) and isinstance(item.get("mediaType"), str):
            types.append(item["mediaType"])
    return names_signature_type(types)
