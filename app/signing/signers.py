"""Key signers: the algorithms Sealgate signs with, how each one signs bytes, and how a
signature made that way is verified.

Algorithms and their signature schemes are those cosign and sigstore-go pick by default for a
key of that type (sigstore ``signature.GetDefaultAlgorithmDetails``; the sigstore algorithm
registry names them ``ECDSA_SHA2_256_NISTP256`` and so on):

============  ===============================================================
ecdsa-p256    ECDSA over SHA-256, ASN.1 DER signature (cosign's default key)
ecdsa-p384    ECDSA over SHA-384, ASN.1 DER signature
ed25519       pure Ed25519 (the message itself, no pre-hash)
rsa-2048/3072/4096  RSASSA-PKCS1-v1_5 over SHA-256 (import only for 2048)
============  ===============================================================

A key's *id* is the lowercase hex SHA-256 of its DER SubjectPublicKeyInfo. cosign's
``SignerVerifierKeypair.GetHint`` (``internal/key/svkeypair.go``) puts the *standard base64*
of that same hash into a bundle's ``verificationMaterial.publicKey.hint``; ``public_key_hint``
gives that form. Verifiers match either form against a configured public key.

``verify_signature`` is the one place where a signature is checked with a public key: trusted
keys (``app.verify.trusted_keys``), transparency-log keys and Fulcio certificates
(``app.verify.transparency``, ``app.verify.keyless_legacy``) and ``KeySigner.made`` all call
it. It lives here, beside the signing schemes it mirrors, because the signing side needs it
too and ``app.signing`` sits below ``app.verify``.

Interoperability note: npm ``@sigstore/verify`` 4.1.3 checks every ECDSA signature with
SHA-256, so it rejects P-384 signatures made (as cosign and sigstore-go make them) with
SHA-384; cosign, sigstore-go, openssl and Sealgate's own verifier accept them.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils

from app.errors import InputError, VerificationError

PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey
PublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | rsa.RSAPublicKey


class Algorithm(StrEnum):
    """The key algorithms Sealgate generates or accepts on import."""

    ecdsa_p256 = "ecdsa-p256"
    ecdsa_p384 = "ecdsa-p384"
    ed25519 = "ed25519"
    rsa_2048 = "rsa-2048"
    rsa_3072 = "rsa-3072"
    rsa_4096 = "rsa-4096"


# ``key generate`` offers these; RSA 2048 is accepted on import only (NIST still allows it,
# but a new key should be stronger).
GENERATABLE = (
    Algorithm.ecdsa_p256,
    Algorithm.ecdsa_p384,
    Algorithm.ed25519,
    Algorithm.rsa_3072,
    Algorithm.rsa_4096,
)

_CURVES: dict[str, Algorithm] = {
    "secp256r1": Algorithm.ecdsa_p256,
    "secp384r1": Algorithm.ecdsa_p384,
}
_RSA_SIZES: dict[int, Algorithm] = {
    2048: Algorithm.rsa_2048,
    3072: Algorithm.rsa_3072,
    4096: Algorithm.rsa_4096,
}


def parse_algorithm(text: str) -> Algorithm:
    """The ``Algorithm`` named ``text``; ``InputError`` listing the choices otherwise."""
    try:
        return Algorithm(text)
    except ValueError:
        raise InputError(
            f"unknown key algorithm {text!r}; choose one of "
            + ", ".join(a.value for a in GENERATABLE),
            code="input.key_algorithm",
        ) from None


def algorithm_of(key: PrivateKey | PublicKey | object) -> Algorithm:
    """The algorithm of a private or public key; ``InputError`` for unsupported types.

    Refused: DSA, Ed448, X25519/X448, EC curves other than P-256 and P-384 (cosign signs
    P-521 with SHA-512 but the verifiers we interoperate with disagree on it), RSA keys
    shorter than 2048 bits or of unusual sizes.
    """
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        algorithm = _CURVES.get(key.curve.name)
        if algorithm is None:
            raise InputError(
                f"EC keys on curve {key.curve.name} are not supported; use P-256 or P-384",
                code="input.key_unsupported",
            )
        return algorithm
    if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return Algorithm.ed25519
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        if key.key_size < 2048:
            raise InputError(
                f"RSA keys of {key.key_size} bits are too weak; use at least 2048 bits",
                code="input.key_unsupported",
            )
        size_algorithm = _RSA_SIZES.get(key.key_size)
        if size_algorithm is None:
            raise InputError(
                f"RSA keys of {key.key_size} bits are not supported; use 2048, 3072 or 4096",
                code="input.key_unsupported",
            )
        return size_algorithm
    kind = type(key).__name__.lstrip("_").replace("PrivateKey", "").replace("PublicKey", "")
    raise InputError(
        f"{kind or 'this'} keys are not supported; use ECDSA P-256/P-384, Ed25519 or RSA",
        code="input.key_unsupported",
    )


def generate_private_key(algorithm: Algorithm) -> PrivateKey:
    """A fresh private key of ``algorithm`` (RSA with public exponent 65537)."""
    if algorithm is Algorithm.ecdsa_p256:
        return ec.generate_private_key(ec.SECP256R1())
    if algorithm is Algorithm.ecdsa_p384:
        return ec.generate_private_key(ec.SECP384R1())
    if algorithm is Algorithm.ed25519:
        return ed25519.Ed25519PrivateKey.generate()
    bits = int(algorithm.value.removeprefix("rsa-"))
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def public_key_der(key: PublicKey) -> bytes:
    """The DER SubjectPublicKeyInfo of ``key``."""
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def public_key_pem(key: PublicKey) -> str:
    """The PEM ``PUBLIC KEY`` (SubjectPublicKeyInfo) form, usable as a ``cosign.pub``."""
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def key_id(key: PublicKey) -> str:
    """Hex SHA-256 of the DER SubjectPublicKeyInfo."""
    return hashlib.sha256(public_key_der(key)).hexdigest()


def public_key_hint(key: PublicKey) -> str:
    """cosign's bundle ``publicKey.hint``: standard base64 of SHA-256 of the DER SPKI."""
    return base64.b64encode(hashlib.sha256(public_key_der(key)).digest()).decode()


def _scheme_hash(key: PrivateKey | PublicKey) -> hashes.HashAlgorithm:
    """The hash the key's algorithm signs with (see the module table)."""
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return hashes.SHA384() if key.curve.name == "secp384r1" else hashes.SHA256()
    return hashes.SHA256()


def verify_signature(
    key: object,
    *,
    signature: bytes,
    data: bytes,
    hash_algorithms: Sequence[hashes.HashAlgorithm] = (),
    prehashed: bool = False,
) -> None:
    """Return if ``signature`` is ``key``'s signature over ``data``; raise otherwise.

    ``key`` is a ``cryptography`` public key. ECDSA (ASN.1 DER) and RSA (PKCS#1 v1.5)
    signatures are tried with each of ``hash_algorithms`` in turn, by default the one the
    key's algorithm signs with (the module table); with ``prehashed``, ``data`` is a digest
    already computed with one of them. Ed25519 signs ``data`` itself and never a digest.

    Raises ``VerificationError``: ``verify.bad_signature`` when the signature does not
    verify, ``verify.unsupported_key`` for an Ed25519 key asked to verify a digest or for a
    key type Sealgate does not sign with.
    """
    if isinstance(key, ed25519.Ed25519PublicKey) and prehashed:
        raise VerificationError(
            "an Ed25519 key cannot verify a signature over a digest "
            "(message-signature bundles need ECDSA or RSA keys)",
            code="verify.unsupported_key",
        )
    if not isinstance(key, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | rsa.RSAPublicKey):
        raise VerificationError(
            f"{type(key).__name__} keys cannot verify signatures here",
            code="verify.unsupported_key",
        )
    for algorithm in hash_algorithms or (_scheme_hash(key),):
        chosen = utils.Prehashed(algorithm) if prehashed else algorithm
        try:
            if isinstance(key, ec.EllipticCurvePublicKey):
                key.verify(signature, data, ec.ECDSA(chosen))
            elif isinstance(key, rsa.RSAPublicKey):
                key.verify(signature, data, padding.PKCS1v15(), chosen)
            else:
                key.verify(signature, data)
            return
        except (InvalidSignature, ValueError):
            continue
    raise VerificationError(
        f"signature does not verify with key {key_id(key)[:16]}", code="verify.bad_signature"
    )


@dataclass(frozen=True)
class KeySigner:
    """A private key ready to sign, with the name it is stored under.

    The private key is never part of ``repr`` or of any serialised form.
    """

    name: str
    algorithm: Algorithm
    private_key: PrivateKey = field(repr=False)

    @property
    def public_key(self) -> PublicKey:
        return self.private_key.public_key()

    @property
    def key_id(self) -> str:
        return key_id(self.public_key)

    @property
    def hint(self) -> str:
        return public_key_hint(self.public_key)

    def sign(self, data: bytes) -> bytes:
        """Sign ``data`` with the scheme of the key's algorithm (see the module table)."""
        key = self.private_key
        if isinstance(key, ec.EllipticCurvePrivateKey):
            return key.sign(data, ec.ECDSA(_scheme_hash(key)))
        if isinstance(key, ed25519.Ed25519PrivateKey):
            return key.sign(data)
        return key.sign(data, padding.PKCS1v15(), _scheme_hash(key))

    def made(self, *, data: bytes, signature: bytes) -> bool:
        """Whether ``signature`` over ``data`` was made by this key.

        Used only to avoid publishing a duplicate legacy layer (ECDSA signatures differ on
        every run); it is not a verification of evidence and grants no trust.
        """
        try:
            verify_signature(self.public_key, signature=signature, data=data)
        except VerificationError:
            return False
        return True
