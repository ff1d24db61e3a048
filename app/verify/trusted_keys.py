"""Trusted public keys: the keys a key authority holds, parsed, and how one verifies.

A trusted key is a PEM public key of a type the signing side also accepts (ECDSA P-256/P-384,
Ed25519, RSA 2048/3072/4096; anything else is refused with the reason). Its id is the
lowercase hex SHA-256 of its DER SubjectPublicKeyInfo; cosign's bundle
``verificationMaterial.publicKey.hint`` is the standard base64 of the same hash
(``app.signing.signers``). A hint only orders which key is tried first.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from app.errors import InputError, VerificationError
from app.signing.signers import (
    algorithm_of,
    key_id,
    public_key_hint,
    public_key_pem,
    verify_signature,
)

SUPPORTED_KEYS = "ECDSA P-256, ECDSA P-384, Ed25519 or RSA (2048, 3072, 4096 bits)"


@dataclass(frozen=True)
class TrustedKey:
    """A parsed public key an authority trusts. Build it with ``TrustedKey.from_pem``.

    ``verify`` checks a signature over data the way cosign and sigstore clients sign:
    ECDSA as ASN.1 DER over SHA-256 (P-256) or SHA-384 (P-384; SHA-256 is also accepted
    because cosign verifies loaded keys with SHA-256 whatever the curve), RSA PKCS#1 v1.5
    with SHA-256 (cosign's ``LoadVerifier`` default), Ed25519 over the data itself.
    """

    key_id: str
    hint: str
    algorithm: str
    pem: str
    public_key: Any = field(repr=False, compare=False)

    @classmethod
    def from_pem(cls, pem: str | bytes) -> TrustedKey:
        """Parse one PEM public key; raise ``InputError`` for anything not supported."""
        text = pem.decode("utf-8", "replace") if isinstance(pem, bytes) else pem
        return _parse_key(text.strip() + "\n")

    def _hashes(self) -> tuple[hashes.HashAlgorithm, ...]:
        if self.algorithm == "ecdsa-p384":
            return (hashes.SHA384(), hashes.SHA256())
        return (hashes.SHA256(),)

    def verify(self, *, signature: bytes, data: bytes) -> None:
        """Return if ``signature`` is this key's signature over ``data``; else raise
        ``VerificationError`` (``verify.bad_signature``)."""
        verify_signature(
            self.public_key, signature=signature, data=data, hash_algorithms=self._hashes()
        )

    def verify_digest(self, *, signature: bytes, digest: bytes) -> None:
        """Verify a signature over a SHA-256 digest already computed (message signatures).

        Ed25519 signs the message itself, never a digest, so it cannot verify this way
        (``verify.unsupported_key``).
        """
        verify_signature(
            self.public_key,
            signature=signature,
            data=digest,
            hash_algorithms=(hashes.SHA256(),),
            prehashed=True,
        )


def verify_with_any_key(
    keys: Iterable[TrustedKey], check: Callable[[TrustedKey], None]
) -> TrustedKey:
    """The first key for which ``check`` (a ``verify`` call) passes; else VerificationError."""
    tried = 0
    for key in keys:
        tried += 1
        try:
            check(key)
        except VerificationError:
            continue
        return key
    raise VerificationError(
        f"the signature does not verify with any of the {tried} trusted key(s)",
        code="verify.bad_signature",
    )


@lru_cache(maxsize=256)
def _parse_key(pem: str) -> TrustedKey:
    try:
        key = serialization.load_pem_public_key(pem.encode())
    except (ValueError, UnsupportedAlgorithm, TypeError) as e:
        raise InputError(
            f"not a PEM public key ({type(e).__name__}); give a 'BEGIN PUBLIC KEY' block "
            f"of {SUPPORTED_KEYS}",
            code="input.invalid_key",
        ) from e
    # The same key types the signing side accepts (DSA, Ed448, X25519, other curves, RSA
    # under 2048 bits or of unusual sizes are refused there, with the reason).
    algorithm = algorithm_of(key)
    assert isinstance(key, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | rsa.RSAPublicKey)
    return TrustedKey(
        key_id=key_id(key),
        hint=public_key_hint(key),
        algorithm=algorithm.value,
        pem=public_key_pem(key),
        public_key=key,
    )


def split_pem_keys(text: str) -> list[str]:
    """The ``BEGIN PUBLIC KEY`` blocks in ``text`` (a file may hold several keys)."""
    blocks = re.findall(
        r"-----BEGIN [A-Z ]*PUBLIC KEY-----.*?-----END [A-Z ]*PUBLIC KEY-----", text, re.S
    )
    if not blocks:
        raise InputError(
            "no PEM public key found (expected '-----BEGIN PUBLIC KEY-----')",
            code="input.invalid_key",
        )
    return blocks
