"""Signatures made in tests straight from the wire formats, sharing no code with Sealgate.

Written from cosign's SIGNATURE_SPEC.md (simple-signing payload, layer annotations), the
DSSE protocol (PAE) and protobuf-specs' bundle JSON, with ``cryptography`` only: an
independent check that Sealgate's verifier reads what cosign writes. Also pushes those
signatures to a real registry as cosign v3 referrers or legacy ``.sig`` manifests.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from app.oci.client import RegistryClient
from app.oci.descriptor import Descriptor
from app.oci.refs import ImageRef

BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
SIMPLESIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
IN_TOTO = "application/vnd.in-toto+json"

PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey


def new_key(algorithm: str = "ecdsa-p256") -> PrivateKey:
    if algorithm == "ecdsa-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if algorithm == "ecdsa-p384":
        return ec.generate_private_key(ec.SECP384R1())
    if algorithm == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    return rsa.generate_private_key(public_exponent=65537, key_size=int(algorithm[4:]))


def public_pem(key: PrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def spki_sha256(key: PrivateKey) -> bytes:
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).digest()


def sign(key: PrivateKey, data: bytes) -> bytes:
    """cosign's schemes: ECDSA DER over SHA-256 (SHA-384 on P-384), RSA PKCS#1 v1.5, Ed25519."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        digest = hashes.SHA384() if key.curve.name == "secp384r1" else hashes.SHA256()
        return key.sign(data, ec.ECDSA(digest))
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    return key.sign(data)


def pae(payload_type: str, payload: bytes) -> bytes:
    return b"DSSEv1 %d %s %d %s" % (len(payload_type), payload_type.encode(), len(payload), payload)


def statement(
    digest: str, *, name: str = "repo", predicate_type: str = "https://sigstore.dev/cosign/sign/v1"
) -> bytes:
    algorithm, _, encoded = digest.partition(":")
    return json.dumps(
        {
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{"name": name, "digest": {algorithm: encoded}}],
            "predicateType": predicate_type,
            "predicate": {},
        }
    ).encode()


def bundle_certificate(data: bytes) -> x509.Certificate:
    """The signing certificate of a keyless bundle's JSON (v0.3 ``certificate`` or the first of
    an older bundle's ``x509CertificateChain``)."""
    material = json.loads(data)["verificationMaterial"]
    raw = material.get("certificate") or material["x509CertificateChain"]["certificates"][0]
    return x509.load_der_x509_certificate(base64.b64decode(raw["rawBytes"]))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def dsse_bundle(
    key: PrivateKey,
    payload: bytes,
    *,
    payload_type: str = IN_TOTO,
    signature: bytes | None = None,
    signed_payload: bytes | None = None,
    extra_signatures: int = 0,
) -> bytes:
    """A key-signed v0.3 bundle with a DSSE envelope over ``payload``.

    ``signed_payload`` signs other bytes than the ones carried (a tampered payload);
    ``signature`` replaces the signature outright.
    """
    sig = (
        signature
        if signature is not None
        else sign(key, pae(payload_type, signed_payload or payload))
    )
    signatures = [{"sig": b64(sig), "keyid": ""}] * (1 + extra_signatures)
    return json.dumps(
        {
            "mediaType": BUNDLE_MEDIA_TYPE,
            "verificationMaterial": {"publicKey": {"hint": b64(spki_sha256(key))}},
            "dsseEnvelope": {
                "payload": b64(payload),
                "payloadType": payload_type,
                "signatures": signatures,
            },
        }
    ).encode()


def message_bundle(key: PrivateKey, digest: str) -> bytes:
    """A key-signed v0.3 bundle with a message signature over the image digest."""
    raw = bytes.fromhex(digest.partition(":")[2])
    if isinstance(key, ec.EllipticCurvePrivateKey):
        from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

        sig = key.sign(raw, ec.ECDSA(Prehashed(hashes.SHA256())))
    else:
        raise ValueError("test helper signs message bundles with ECDSA only")
    return json.dumps(
        {
            "mediaType": BUNDLE_MEDIA_TYPE,
            "verificationMaterial": {"publicKey": {"hint": b64(spki_sha256(key))}},
            "messageSignature": {
                "messageDigest": {"algorithm": "SHA2_256", "digest": b64(raw)},
                "signature": b64(sig),
            },
        }
    ).encode()


def simple_signing(digest: str, reference: str, optional: dict[str, Any] | None = None) -> bytes:
    return json.dumps(
        {
            "critical": {
                "identity": {"docker-reference": reference},
                "image": {"docker-manifest-digest": digest},
                "type": "cosign container image signature",
            },
            "optional": optional,
        }
    ).encode()


async def push_bundle(
    client: RegistryClient,
    image: ImageRef,
    bundle: bytes,
    *,
    artifact_type: str = BUNDLE_MEDIA_TYPE,
) -> Descriptor:
    """Push ``bundle`` as a cosign v3 referrer of ``image`` (pinned)."""
    return await client.push_referrer(
        image,
        artifact_type=artifact_type,
        layers=[(bundle, BUNDLE_MEDIA_TYPE, {})],
        annotations={"dev.sigstore.bundle.content": "dsse-envelope"},
    )


async def push_legacy(
    client: RegistryClient, image: ImageRef, layers: list[tuple[bytes, dict[str, str]]]
) -> Descriptor:
    """Push a ``sha256-<hex>.sig`` manifest with simple-signing ``layers`` for ``image``."""
    assert image.digest is not None
    empty = await client.push_blob(image, b"{}", media_type=OCI_EMPTY)
    descriptors = []
    for payload, layer_annotations in layers:
        blob = await client.push_blob(image, payload, media_type=SIMPLESIGNING)
        descriptors.append(
            {**blob.to_json(), "mediaType": SIMPLESIGNING, "annotations": layer_annotations}
        )
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": empty.to_json(),
        "layers": descriptors,
    }
    tag = image.digest.replace(":", "-") + ".sig"
    return await client.push_manifest(image, manifest, media_type=OCI_MANIFEST, tag=tag)


def legacy_layer(key: PrivateKey, payload: bytes) -> tuple[bytes, dict[str, str]]:
    return payload, {"dev.cosignproject.cosign/signature": b64(sign(key, payload))}


async def push_signed_image(
    client: RegistryClient, repository: str, key: PrivateKey, *, legacy: bool = False
) -> ImageRef:
    """Push a fresh image to ``repository`` and sign it with ``key`` (bundle or legacy)."""
    from tests.fixtures.images import push_random_image

    image, _ = await push_random_image(client, repository)
    assert image.digest is not None
    if legacy:
        payload = simple_signing(image.digest, image.name)
        await push_legacy(client, image, [legacy_layer(key, payload)])
    else:
        await push_bundle(client, image, dsse_bundle(key, statement(image.digest, name=image.name)))
    return image


def push_signed_image_sync(
    registry: Any, repository: str, key: PrivateKey, *, legacy: bool = False
) -> ImageRef:
    """``push_signed_image`` for synchronous tests (own client and event loop)."""
    import asyncio

    from tests.fixtures.images import registry_settings

    async def _push() -> ImageRef:
        client = RegistryClient.from_settings(registry_settings(registry))
        try:
            return await push_signed_image(client, repository, key, legacy=legacy)
        finally:
            await client.aclose()

    return asyncio.run(_push())
