"""Key signers, checked by independent verifiers (``openssl`` and cosign's rules in plain code)."""

from __future__ import annotations

import base64
import hashlib
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec

from app.errors import VerificationError
from app.signing.signers import (
    GENERATABLE,
    Algorithm,
    KeySigner,
    generate_private_key,
    verify_signature,
)

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


class TestVerifySignature:
    """The one public-key signature check (trusted keys, log keys, Fulcio keys, ``made``)."""

    @pytest.mark.parametrize("algorithm", list(Algorithm))
    def test_verifies_what_the_signer_signs_and_refuses_other_data(
        self, algorithm: Algorithm
    ) -> None:
        signer = _signer(algorithm)
        signature = signer.sign(b"payload")
        verify_signature(signer.public_key, signature=signature, data=b"payload")
        with pytest.raises(VerificationError) as caught:
            verify_signature(signer.public_key, signature=signature, data=b"payload ")
        assert caught.value.code == "verify.bad_signature"
        assert signer.key_id[:16] in caught.value.message

    def test_tries_each_hash_it_is_given(self) -> None:
        # cosign verifies a loaded P-384 key with SHA-256: trusted keys accept both.
        key = ec.generate_private_key(ec.SECP384R1())
        signature = key.sign(b"payload", ec.ECDSA(hashes.SHA256()))
        with pytest.raises(VerificationError):
            verify_signature(key.public_key(), signature=signature, data=b"payload")
        both = (hashes.SHA384(), hashes.SHA256())
        verify_signature(
            key.public_key(), signature=signature, data=b"payload", hash_algorithms=both
        )

    @pytest.mark.parametrize("algorithm", [Algorithm.ecdsa_p256, Algorithm.rsa_3072])
    def test_verifies_a_signature_over_a_digest(self, algorithm: Algorithm) -> None:
        signer = _signer(algorithm)
        digest = hashlib.sha256(b"payload").digest()
        verify_signature(
            signer.public_key, signature=signer.sign(b"payload"), data=digest, prehashed=True
        )

    def test_ed25519_cannot_verify_a_digest(self) -> None:
        signer = _signer(Algorithm.ed25519)
        with pytest.raises(VerificationError) as caught:
            verify_signature(
                signer.public_key,
                signature=signer.sign(b"payload"),
                data=hashlib.sha256(b"payload").digest(),
                prehashed=True,
            )
        assert caught.value.code == "verify.unsupported_key"

    def test_refuses_key_types_sealgate_does_not_sign_with(self) -> None:
        key = dsa.generate_private_key(key_size=2048)
        signature = key.sign(b"payload", hashes.SHA256())
        with pytest.raises(VerificationError) as caught:
            verify_signature(key.public_key(), signature=signature, data=b"payload")
        assert caught.value.code == "verify.unsupported_key"
