"""Publishing signatures to the registry next to the image they sign, or to the signature
repository configured for it (``RegistryClient.evidence_home``).

Two layouts, both read by cosign, Kyverno, policy-controller and Harbor:

- **bundle** (cosign v3, ``pkg/oci/remote/write.go`` ``WriteAttestationNewBundleFormat``): an
  OCI 1.1 referrer manifest whose ``artifactType`` and single layer are
  ``application/vnd.dev.sigstore.bundle.v0.3+json``, with the empty config, ``subject`` = the
  image, and the annotations ``dev.sigstore.bundle.content: dsse-envelope``,
  ``dev.sigstore.bundle.predicateType: https://sigstore.dev/cosign/sign/v1`` and
  ``org.opencontainers.image.created``. The registry client maintains the ``sha256-<hex>``
  fallback index on registries without the referrers API.
- **legacy** (cosign ``sha256-<hex>.sig`` tag): an image manifest whose layers are
  simple-signing payloads (``application/vnd.dev.cosign.simplesigning.v1+json``), each with the
  signature in the ``dev.cosignproject.cosign/signature`` annotation (keyless adds certificate,
  chain and bundle annotations). A new signature is appended to the existing manifest; a layer
  with the same payload already signed by the same key is not added again. The
  read-modify-write of the tag holds the registry client's index lock for it, so Sealgate's
  own concurrent signings of one image (in process, and across replicas on PostgreSQL) take
  turns; a writer outside Sealgate (cosign) can still race it, as cosign races itself.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable

from app.errors import InputError, RegistryError
from app.oci.client import RegistryClient
from app.oci.descriptor import Descriptor
from app.oci.digests import compute_digest, fallback_tag
from app.oci.media import COSIGN_SIMPLESIGNING, OCI_IMAGE_CONFIG, OCI_MANIFEST, SIGSTORE_BUNDLE_V03
from app.oci.refs import ImageRef
from app.signing.payloads import COSIGN_SIGN_PREDICATE

SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
CERTIFICATE_ANNOTATION = "dev.sigstore.cosign/certificate"
CHAIN_ANNOTATION = "dev.sigstore.cosign/chain"
BUNDLE_ANNOTATION = "dev.sigstore.cosign/bundle"
BUNDLE_CONTENT_ANNOTATION = "dev.sigstore.bundle.content"
BUNDLE_PREDICATE_ANNOTATION = "dev.sigstore.bundle.predicateType"
CREATED_ANNOTATION = "org.opencontainers.image.created"


def _now_rfc3339() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def publish_bundle(
    registry: RegistryClient,
    *,
    image: ImageRef,
    bundle: bytes,
    predicate_type: str = COSIGN_SIGN_PREDICATE,
) -> str:
    """Push ``bundle`` as a referrer of ``image`` (pinned to a digest); return its digest."""
    descriptor = await registry.push_referrer(
        image,
        artifact_type=SIGSTORE_BUNDLE_V03,
        layers=[(bundle, SIGSTORE_BUNDLE_V03, {})],
        annotations={
            BUNDLE_CONTENT_ANNOTATION: "dsse-envelope",
            BUNDLE_PREDICATE_ANNOTATION: predicate_type,
            CREATED_ANNOTATION: _now_rfc3339(),
        },
    )
    return descriptor.digest


def legacy_signature_tag(digest: str) -> str:
    """cosign's signature tag for ``digest``: ``sha256-<hex>.sig``."""
    return f"{fallback_tag(digest)}.sig"


def _signature_config(layers: list[Descriptor]) -> bytes:
    # The config cosign writes for a signature "image" (go-containerregistry's empty image
    # plus one diff_id per layer). Readers ignore it; registries only need it to exist.
    config = {
        "architecture": "",
        "created": "0001-01-01T00:00:00Z",
        "history": [{"created": "0001-01-01T00:00:00Z"} for _ in layers],
        "os": "",
        "rootfs": {"type": "layers", "diff_ids": [layer.digest for layer in layers]},
        "config": {},
    }
    return json.dumps(config, separators=(",", ":")).encode()


async def _existing_signature_layers(
    registry: RegistryClient, sig_ref: ImageRef
) -> list[Descriptor]:
    try:
        manifest = await registry.get_manifest(sig_ref, mirrors=False)
    except RegistryError as e:
        if e.code == "registry.not_found":
            return []
        raise
    raw_layers = manifest.json.get("layers")
    if not isinstance(raw_layers, list):
        raise RegistryError(
            f"{sig_ref} is not a signature manifest (no layers); refusing to overwrite it",
            code="registry.invalid_manifest",
        )
    layers = []
    for raw in raw_layers:
        try:
            layers.append(Descriptor.from_json(raw))
        except InputError as e:
            raise RegistryError(
                f"{sig_ref} has a malformed layer; refusing to overwrite it: {e}",
                code="registry.invalid_manifest",
            ) from e
    return layers


async def publish_legacy(
    registry: RegistryClient,
    *,
    image: ImageRef,
    payload: bytes,
    annotations: dict[str, str],
    is_duplicate: Callable[[dict[str, str]], bool] | None = None,
) -> str:
    """Append a simple-signing layer to ``image``'s ``.sig`` manifest; return its digest.

    ``image`` must be pinned to a digest. ``annotations`` are the layer's (at least
    ``dev.cosignproject.cosign/signature``). ``is_duplicate(layer_annotations) -> bool`` is
    asked about every existing layer with the same payload; when it says yes, nothing is
    pushed and the current manifest's digest is returned.
    """
    if image.digest is None:
        raise InputError(f"{image} is not pinned to a digest; only digests are signed")
    tag = legacy_signature_tag(image.digest)
    sig_ref = registry.evidence_home(image).with_tag(tag)
    async with registry.hold_tag(sig_ref, tag):
        return await _append_signature_layer(
            registry,
            sig_ref=sig_ref,
            payload=payload,
            annotations=annotations,
            is_duplicate=is_duplicate,
        )


async def _append_signature_layer(
    registry: RegistryClient,
    *,
    sig_ref: ImageRef,
    payload: bytes,
    annotations: dict[str, str],
    is_duplicate: Callable[[dict[str, str]], bool] | None,
) -> str:
    """The read-modify-write of ``publish_legacy``; the caller holds the tag's lock."""
    layers = await _existing_signature_layers(registry, sig_ref)
    payload_digest = compute_digest(payload)
    if is_duplicate is not None and any(
        layer.digest == payload_digest and is_duplicate(layer.annotations) for layer in layers
    ):
        return await registry.resolve_digest(sig_ref, mirrors=False)
    layer = await registry.push_blob(sig_ref, payload, media_type=COSIGN_SIMPLESIGNING)
    layers.append(
        Descriptor(
            media_type=COSIGN_SIMPLESIGNING,
            digest=layer.digest,
            size=layer.size,
            annotations=dict(annotations),
        )
    )
    config = await registry.push_blob(
        sig_ref, _signature_config(layers), media_type=OCI_IMAGE_CONFIG
    )
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_IMAGE_CONFIG, "digest": config.digest, "size": config.size},
        "layers": [d.to_json() for d in layers],
    }
    pushed = await registry.push_manifest(
        sig_ref, manifest, media_type=OCI_MANIFEST, tag=sig_ref.tag
    )
    return pushed.digest
