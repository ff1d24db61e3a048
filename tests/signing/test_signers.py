"""Key signers, checked by independent verifiers (``openssl`` and cosign's rules in plain code)."""

from __future__ import annotations

import base64
import hashlib
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from app.signing.signers import GENERATABLE, Algorithm, KeySigner, generate_private_key

# openssl dgst digest per algorithm, from cosign/sigstore defaults (Ed25519 is pure: no digest).
OPENSSL_DIGEST = {
    Algorithm.ecdsa_p256: ["-sha256"],
    Algorithm.ecdsa_p384: ["-sha384"],
    Algorithm.rsa_3072: ["-sha256"],
    Algorithm.rsa_4096: ["-sha256"],
}


def _signer(algorithm: Algorithm) -> KeySigner:
    return KeySigner(name="t", algorithm=algorithm, private_key=generate_private_key(algorithm))


@pytest.mark.parametrize("algorithm", GENERATABLE)
def test_openssl_verifies_every_algorithm(algorithm: Algorithm, tmp_path: Path) -> None:
    signer = _signer(algorithm)
    data = b'{"critical":{"image":{"docker-manifest-digest":"sha256:00"}}}'
    (tmp_path / "data").write_bytes(data)
    (tmp_path / "sig").write_bytes(signer.sign(data))
    (tmp_path / "pub.pem").write_bytes(
        signer.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    if algorithm is Algorithm.ed25519:
        command = ["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", "pub.pem", "-rawin"]
        command += ["-in", "data", "-sigfile", "sig"]
    else:
        command = ["openssl", "dgst", *OPENSSL_DIGEST[algorithm], "-verify", "pub.pem"]
        command += ["-signature", "sig", "data"]
    ok = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr + ok.stdout
    (tmp_path / "data").write_bytes(data + b" ")
    tampered = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True)
    assert tampered.returncode != 0


def test_key_id_and_hint_are_the_same_hash_of_the_spki() -> None:
    signer = _signer(Algorithm.ecdsa_p256)
    der = signer.public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert signer.key_id == hashlib.sha256(der).hexdigest()
    assert base64.b64decode(signer.hint) == hashlib.sha256(der).digest()


def test_repr_hides_the_private_key() -> None:
    assert "private_key" not in repr(_signer(Algorithm.ed25519))


def test_made_recognises_own_signatures_only() -> None:
    one, other = _signer(Algorithm.ecdsa_p256), _signer(Algorithm.ecdsa_p256)
    sig = one.sign(b"x")
    assert one.made(data=b"x", signature=sig)
    assert not other.made(data=b"x", signature=sig)
    assert not one.made(data=b"y", signature=sig)
