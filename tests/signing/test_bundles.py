"""Key-signed Sigstore bundles, checked by npm ``@sigstore/verify`` and by DSSE's own rules."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from app.signing.bundles import key_dsse_bundle
from app.signing.payloads import cosign_statement
from app.signing.signers import (
    GENERATABLE,
    Algorithm,
    KeySigner,
    generate_private_key,
    public_key_pem,
)
from tests.signing.sigstore_js import verify_key_bundle

DIGEST = "sha256:" + "5e" * 32


def _signer(algorithm: Algorithm) -> KeySigner:
    return KeySigner(name="t", algorithm=algorithm, private_key=generate_private_key(algorithm))


def _bundle(signer: KeySigner) -> dict[str, object]:
    statement = cosign_statement(digest=DIGEST, repository="127.0.0.1:5000/a/b")
    loaded: dict[str, object] = json.loads(key_dsse_bundle(statement=statement, signer=signer))
    return loaded


def _node_verify(tmp_path: Path, bundle: dict[str, object], signer: KeySigner) -> dict[str, Any]:
    return verify_key_bundle(
        json.dumps(bundle).encode(), public_pem=public_key_pem(signer.public_key), workdir=tmp_path
    )


def test_bundle_v03_shape() -> None:
    signer = _signer(Algorithm.ecdsa_p256)
    bundle = _bundle(signer)
    assert bundle["mediaType"] == "application/vnd.dev.sigstore.bundle.v0.3+json"
    assert bundle["verificationMaterial"] == {"publicKey": {"hint": signer.hint}}
    envelope = bundle["dsseEnvelope"]
    assert isinstance(envelope, dict)
    assert envelope["payloadType"] == "application/vnd.in-toto+json"
    statement = json.loads(base64.b64decode(envelope["payload"]))
    assert statement["subject"][0]["digest"] == {"sha256": "5e" * 32}
    assert statement["predicateType"] == "https://sigstore.dev/cosign/sign/v1"


def test_signature_is_over_the_dsse_pae_written_from_the_spec() -> None:
    # DSSE protocol.md, written out here rather than calling Sealgate's dsse_pae.
    signer = _signer(Algorithm.ecdsa_p256)
    envelope = _bundle(signer)["dsseEnvelope"]
    assert isinstance(envelope, dict)
    payload = base64.b64decode(envelope["payload"])
    kind = envelope["payloadType"].encode()
    pae = b"DSSEv1 " + str(len(kind)).encode() + b" " + kind + b" "
    pae += str(len(payload)).encode() + b" " + payload
    public = signer.public_key
    assert isinstance(public, ec.EllipticCurvePublicKey)
    signature = base64.b64decode(envelope["signatures"][0]["sig"])
    public.verify(signature, pae, ec.ECDSA(hashes.SHA256()))
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    hint = _bundle(signer)["verificationMaterial"]["publicKey"]["hint"]  # type: ignore[index]
    assert base64.b64decode(hint) == hashlib.sha256(der).digest()


# @sigstore/verify 4.1.3 verifies every ECDSA signature with SHA-256 (node's default digest),
# while sigstore-go, cosign and Sealgate sign P-384 with SHA-384 (ECDSA_SHA2_384_NISTP384 in
# the sigstore algorithm registry), so P-384 is checked with openssl in test_signers instead.
NODE_ALGORITHMS = [a for a in GENERATABLE if a is not Algorithm.ecdsa_p384]


@pytest.mark.parametrize("algorithm", NODE_ALGORITHMS)
def test_sigstore_js_verifies_our_key_bundle(algorithm: Algorithm, tmp_path: Path) -> None:
    signer = _signer(algorithm)
    result = _node_verify(tmp_path, _bundle(signer), signer)
    assert result["ok"] is True
    assert result["payloadType"] == "application/vnd.in-toto+json"


def test_sigstore_js_refuses_a_tampered_payload(tmp_path: Path) -> None:
    signer = _signer(Algorithm.ecdsa_p256)
    bundle = _bundle(signer)
    envelope = bundle["dsseEnvelope"]
    assert isinstance(envelope, dict)
    statement = json.loads(base64.b64decode(envelope["payload"]))
    statement["subject"][0]["digest"]["sha256"] = "00" * 32
    envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    assert _node_verify(tmp_path, bundle, signer)["ok"] is False


def test_sigstore_js_refuses_another_key(tmp_path: Path) -> None:
    bundle = _bundle(_signer(Algorithm.ecdsa_p256))
    assert _node_verify(tmp_path, bundle, _signer(Algorithm.ecdsa_p256))["ok"] is False
