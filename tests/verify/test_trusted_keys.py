"""Trusted keys: key ids and hints, refusal of unsupported keys, files holding several keys."""

from __future__ import annotations

import base64
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, rsa, x25519

from app.errors import InputError
from app.verify.trust import key_authority
from app.verify.trusted_keys import TrustedKey
from tests.verify import cosign_wire as wire


def pem_of(public_key: object) -> str:
    return public_key.public_bytes(  # type: ignore[attr-defined,no-any-return]
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


class TestTrustedKey:
    def test_key_id_is_sha256_of_der_spki_and_hint_its_base64(self) -> None:
        key = wire.new_key()
        trusted = TrustedKey.from_pem(wire.public_pem(key))
        assert trusted.key_id == wire.spki_sha256(key).hex()
        assert trusted.hint == base64.b64encode(wire.spki_sha256(key)).decode()
        assert trusted.algorithm == "ecdsa-p256"

    @pytest.mark.parametrize(
        ("make", "words"),
        [
            (lambda: dsa.generate_private_key(2048).public_key(), "DSA"),
            (lambda: ec.generate_private_key(ec.SECP521R1()).public_key(), "secp521r1"),
            (lambda: ec.generate_private_key(ec.SECP256K1()).public_key(), "secp256k1"),
            (lambda: rsa.generate_private_key(65537, 1024).public_key(), "1024"),
            (lambda: ed448.Ed448PrivateKey.generate().public_key(), "Ed448"),
            (lambda: x25519.X25519PrivateKey.generate().public_key(), "X25519"),
        ],
        ids=["dsa", "p521", "secp256k1", "rsa1024", "ed448", "x25519"],
    )
    def test_refuses_unsupported_key_types(self, make: Callable[[], object], words: str) -> None:
        with pytest.raises(InputError) as e:
            TrustedKey.from_pem(pem_of(make()))
        assert words in e.value.message
        assert e.value.code == "input.key_unsupported"

    def test_refuses_text_that_is_not_a_key(self) -> None:
        with pytest.raises(InputError) as e:
            key_authority(name="x", keys=["hello"])
        assert "no PEM public key" in e.value.message

    def test_refuses_a_private_key_block(self) -> None:
        key = wire.new_key()
        private = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        with pytest.raises(InputError):
            key_authority(name="x", keys=[private])

    def test_one_file_with_several_keys_gives_several_keys(self) -> None:
        a, b = wire.new_key(), wire.new_key("ed25519")
        authority = key_authority(name="two", keys=[wire.public_pem(a) + wire.public_pem(b)])
        assert [k.algorithm for k in authority.keys] == ["ecdsa-p256", "ed25519"]
