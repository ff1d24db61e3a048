"""Evidence: the candidate signatures a registry holds for one image digest, never trusted.

Two places are read, as cosign v3 and older cosign write them, in the repository that keeps
the image's evidence (``RegistryClient.evidence_home``: the image's own, or its signature
repository):

- OCI 1.1 referrers of the digest whose ``artifactType`` is a Sigstore bundle (cosign v3
  image signatures and attestations both use ``application/vnd.dev.sigstore.bundle.v0.3+json``);
  each referrer manifest must name the digest as its ``subject``, and its bundle layer is
  fetched;
- the legacy ``sha256-<hex>.sig`` tag: one simple-signing layer per signature, the
  signature and certificate in layer annotations.

Everything here is capped so a hostile registry cannot make verification slow or big:
referrers listed (the client's ``max_referrers``), candidate signatures per image
(``max_signatures``), bytes per bundle or payload (``max_bundle_bytes``), and concurrent
fetches. A candidate that cannot be fetched or is too large is recorded as a rejection,
not raised; a registry that cannot list referrers at all raises ``RegistryError``, so the
caller fails closed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from app.errors import Error, EvidenceError, RegistryError
from app.limits import MAX_BUNDLE_BYTES, MAX_SIGNATURES
from app.oci import media
from app.oci.client import RegistryClient
from app.oci.descriptor import Descriptor
from app.oci.digests import fallback_tag
from app.oci.errors import NOT_FOUND
from app.oci.refs import ImageRef
from app.verify.bundle import BUNDLE_MEDIA_TYPES
from app.verify.model import Rejection

BUNDLE_ARTIFACT_TYPES = (
    media.SIGSTORE_BUNDLE_V03,
    "application/vnd.dev.sigstore.bundle+json;version=0.3",
)
REFERRER_SOURCE = "referrer"
LEGACY_SOURCE = "legacy-sig"


@dataclass(frozen=True)
class EvidenceLimits:
    """How much evidence is read for one image (defaults suit every signer we know)."""

    max_signatures: int = MAX_SIGNATURES
    max_bundle_bytes: int = MAX_BUNDLE_BYTES
    concurrency: int = 8


@dataclass(frozen=True)
class BundleCandidate:
    """A Sigstore bundle found as a referrer; ``signature_digest`` is the referrer manifest."""

    signature_digest: str
    bundle: bytes = field(repr=False)
    source: str = REFERRER_SOURCE


@dataclass(frozen=True)
class LegacyCandidate:
    """One simple-signing layer of the ``.sig`` manifest ``signature_digest``."""

    signature_digest: str
    layer_digest: str
    payload: bytes = field(repr=False)
    annotations: dict[str, str] = field(default_factory=dict)
    source: str = LEGACY_SOURCE


Candidate = BundleCandidate | LegacyCandidate


@dataclass(frozen=True)
class Evidence:
    """What was found for ``digest``: candidates to verify and why others were dropped."""

    digest: str
    candidates: tuple[Candidate, ...]
    problems: tuple[Rejection, ...]


def _dropped(source: str, digest: str | None, error: Error) -> Rejection:
    return Rejection(source=source, signature_digest=digest, code=error.code, reason=error.message)


async def collect_evidence(
    client: RegistryClient, image: ImageRef, *, limits: EvidenceLimits | None = None
) -> Evidence:
    """Collect candidate signatures for ``image`` (which must be pinned to a digest).

    Returns the candidates (at most ``limits.max_signatures``) and the problems met on the
    way. Raises ``RegistryError`` when the registry cannot be asked at all.
    """
    assert image.digest is not None, "collect_evidence needs a digest-pinned reference"
    return await evidence_from_referrers(
        client, image, await client.list_referrers(image), limits=limits
    )


def is_bundle_referrer(descriptor: Descriptor) -> bool:
    """Whether a referrer descriptor announces a Sigstore bundle (signature or attestation)."""
    return descriptor.artifact_type in BUNDLE_ARTIFACT_TYPES


async def evidence_from_referrers(
    client: RegistryClient,
    image: ImageRef,
    listed: Sequence[Descriptor],
    *,
    limits: EvidenceLimits | None = None,
    legacy: bool = True,
) -> Evidence:
    """``collect_evidence`` over a referrer listing the caller already has (one listing
    serves signatures, attestations and scans); descriptors of other artifact types are
    ignored. Also reads the legacy ``.sig`` tag, unless ``legacy`` is false (the caller
    then reads it with ``legacy_evidence`` only if the referrers did not suffice)."""
    limits = limits or EvidenceLimits()
    assert image.digest is not None, "evidence needs a digest-pinned reference"
    # Where the evidence is kept (a signature repository, or the image's own); the digest
    # and the identity stay the image's.
    home = client.evidence_home(image)
    gate = asyncio.Semaphore(limits.concurrency)
    problems: list[Rejection] = []

    descriptors: dict[str, Descriptor] = {}
    for descriptor in listed:
        if is_bundle_referrer(descriptor):
            descriptors.setdefault(descriptor.digest, descriptor)
    referrers = list(descriptors.values())
    if len(referrers) > limits.max_signatures:
        problems.append(
            Rejection(
                source=REFERRER_SOURCE,
                code="evidence.too_many",
                reason=f"{len(referrers)} signature referrers found; only the first "
                f"{limits.max_signatures} are read",
            )
        )
        referrers = referrers[: limits.max_signatures]

    async def bounded(fetch: Awaitable[list[Candidate]]) -> list[Candidate]:
        async with gate:
            return await fetch

    async def one_referrer(descriptor: Descriptor) -> list[Candidate]:
        try:
            return [await _fetch_bundle(client, home, descriptor, limits)]
        except Error as e:
            problems.append(_dropped(REFERRER_SOURCE, descriptor.digest, e))
            return []

    legacy_read = [_legacy_candidates(client, home, limits, problems, bounded)] if legacy else []
    results = await asyncio.gather(*(bounded(one_referrer(d)) for d in referrers), *legacy_read)
    candidates = [c for group in results for c in group][: limits.max_signatures]
    return Evidence(digest=image.digest, candidates=tuple(candidates), problems=tuple(problems))


async def legacy_evidence(
    client: RegistryClient, image: ImageRef, *, limits: EvidenceLimits | None = None
) -> Evidence:
    """The candidates of the legacy ``.sig`` tag of ``image`` (digest-pinned) alone."""
    return await evidence_from_referrers(client, image, (), limits=limits, legacy=True)


async def _fetch_bundle(
    client: RegistryClient, image: ImageRef, descriptor: Descriptor, limits: EvidenceLimits
) -> BundleCandidate:
    manifest = await client.get_manifest(image.with_digest(descriptor.digest))
    subject = manifest.subject
    if subject is None or subject.digest != image.digest:
        raise EvidenceError(
            f"referrer {descriptor.digest} does not name {image.digest} as its subject",
            code="evidence.wrong_subject",
        )
    layers = [layer for layer in manifest.layers if layer.media_type in BUNDLE_MEDIA_TYPES]
    if len(layers) != 1:
        raise EvidenceError(
            f"referrer {descriptor.digest} has {len(layers)} Sigstore bundle layers, not one",
            code="evidence.malformed_referrer",
        )
    layer = layers[0]
    if layer.size > limits.max_bundle_bytes:
        raise EvidenceError(
            f"bundle {layer.digest} is {layer.size} bytes, over the cap of "
            f"{limits.max_bundle_bytes}",
            code="evidence.too_large",
        )
    data = await client.get_blob(image, layer.digest, max_bytes=limits.max_bundle_bytes)
    return BundleCandidate(signature_digest=manifest.digest, bundle=data)


async def _legacy_candidates(
    client: RegistryClient,
    image: ImageRef,
    limits: EvidenceLimits,
    problems: list[Rejection],
    bounded: Callable[[Awaitable[list[Candidate]]], Awaitable[list[Candidate]]],
) -> list[Candidate]:
    assert image.digest is not None
    tag = fallback_tag(image.digest) + ".sig"
    try:
        manifest = await client.get_manifest(image.with_tag(tag))
    except RegistryError as e:
        if e.code == NOT_FOUND:
            return []
        problems.append(_dropped(LEGACY_SOURCE, None, e))
        return []
    layers = [m for m in manifest.layers if m.media_type == media.COSIGN_SIMPLESIGNING]
    if len(layers) > limits.max_signatures:
        problems.append(
            Rejection(
                source=LEGACY_SOURCE,
                signature_digest=manifest.digest,
                code="evidence.too_many",
                reason=f"{len(layers)} legacy signature layers; only the first "
                f"{limits.max_signatures} are read",
            )
        )
        layers = layers[: limits.max_signatures]

    async def one_layer(layer: Descriptor) -> list[Candidate]:
        try:
            if layer.size > limits.max_bundle_bytes:
                raise EvidenceError(
                    f"signature payload {layer.digest} is {layer.size} bytes, over the cap",
                    code="evidence.too_large",
                )
            payload = await client.get_blob(image, layer.digest, max_bytes=limits.max_bundle_bytes)
        except Error as e:
            problems.append(_dropped(LEGACY_SOURCE, manifest.digest, e))
            return []
        return [
            LegacyCandidate(
                signature_digest=manifest.digest,
                layer_digest=layer.digest,
                payload=payload,
                annotations=dict(layer.annotations),
            )
        ]

    groups = await asyncio.gather(*(bounded(one_layer(d)) for d in layers))
    return [c for group in groups for c in group]
