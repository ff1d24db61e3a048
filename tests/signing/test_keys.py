"""Keys held by Sealgate: generation, import, encryption at rest, disabling, the KEK check."""

from __future__ import annotations

import base64
import logging

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.config import Settings, load_settings
from app.db.models import SigningKey
from app.errors import ConfigError, ConflictError, InputError, NotFoundError, SigningError
from app.signing.keys import (
    check_kek_for_stored_keys,
    disable_key,
    generate_key,
    get_key,
    import_key,
    list_keys,
    load_signer,
    open_private_key,
    seal_private_key,
)
from app.signing.signers import GENERATABLE, Algorithm, key_id
from tests.signing.keyfiles import private_pem

OTHER_KEK = base64.b64encode(b"another-32-byte-key-encrypt-key!").decode()


@pytest.fixture
def kek_settings(test_database_url: str) -> Settings:
    return load_settings(
        database_url=test_database_url, key_encryption_key=base64.b64encode(bytes(range(1, 33)))
    )


class TestGenerate:
    @pytest.mark.parametrize("algorithm", GENERATABLE)
    def test_every_algorithm_generates_and_loads(
        self, db_session: Session, kek_settings: Settings, algorithm: Algorithm
    ) -> None:
        info = generate_key(
            db_session, settings=kek_settings, name="k1", algorithm=algorithm, scopes=["**"]
        )
        assert info.algorithm == algorithm.value
        assert info.status == "active"
        assert info.public_key_pem.startswith("-----BEGIN PUBLIC KEY-----")
        signer = load_signer(
            db_session, settings=kek_settings, name="k1", image_name="ghcr.io/acme/app"
        )
        assert signer.algorithm is algorithm
        assert signer.key_id == info.key_id == key_id(signer.public_key)

    def test_duplicate_name_conflicts(self, db_session: Session, kek_settings: Settings) -> None:
        generate_key(
            db_session,
            settings=kek_settings,
            name="dup",
            algorithm=Algorithm.ed25519,
            scopes=["**"],
        )
        with pytest.raises(ConflictError):
            generate_key(
                db_session,
                settings=kek_settings,
                name="dup",
                algorithm=Algorithm.ed25519,
                scopes=["**"],
            )

    @pytest.mark.parametrize("name", ["", "-x", "a b", "x" * 129, "../etc"])
    def test_bad_names_refused(
        self, db_session: Session, kek_settings: Settings, name: str
    ) -> None:
        with pytest.raises(InputError):
            generate_key(
                db_session,
                settings=kek_settings,
                name=name,
                algorithm=Algorithm.ed25519,
                scopes=["**"],
            )

    def test_refused_without_kek(self, db_session: Session, test_database_url: str) -> None:
        no_kek = load_settings(database_url=test_database_url)
        with pytest.raises(SigningError) as e:
            generate_key(
                db_session, settings=no_kek, name="k", algorithm=Algorithm.ed25519, scopes=["**"]
            )
        assert e.value.code == "config.no_kek"
        assert e.value.http_status == 503


class TestEncryptionAtRest:
    def test_private_key_is_not_stored_in_clear(
        self, db_session: Session, kek_settings: Settings
    ) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        import_key(db_session, settings=kek_settings, name="k", pem=private_pem(key), scopes=["**"])
        row = db_session.scalar(select(SigningKey).where(SigningKey.name == "k"))
        assert row is not None
        scalar = key.private_numbers().private_value.to_bytes(32, "big")
        der = key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        assert scalar not in row.encrypted_private_key
        assert der not in row.encrypted_private_key
        assert row.encrypted_private_key[:1] == b"\x01"

    def test_nonce_is_fresh_per_key(self, db_session: Session, kek_settings: Settings) -> None:
        key = ed25519.Ed25519PrivateKey.generate()
        import_key(db_session, settings=kek_settings, name="a", pem=private_pem(key), scopes=["**"])
        import_key(db_session, settings=kek_settings, name="b", pem=private_pem(key), scopes=["**"])
        blobs = [r.encrypted_private_key for r in db_session.scalars(select(SigningKey))]
        assert blobs[0][1:13] != blobs[1][1:13]

    def test_wrong_kek_does_not_open(
        self, db_session: Session, kek_settings: Settings, test_database_url: str
    ) -> None:
        generate_key(
            db_session,
            settings=kek_settings,
            name="k",
            algorithm=Algorithm.ecdsa_p256,
            scopes=["**"],
        )
        wrong = load_settings(database_url=test_database_url, key_encryption_key=OTHER_KEK)
        with pytest.raises(SigningError) as e:
            load_signer(db_session, settings=wrong, name="k", image_name="ghcr.io/acme/app")
        assert e.value.code == "signing.key_decrypt"

    def test_ciphertext_moved_to_another_name_does_not_open(
        self, db_session: Session, kek_settings: Settings
    ) -> None:
        generate_key(
            db_session,
            settings=kek_settings,
            name="a",
            algorithm=Algorithm.ecdsa_p256,
            scopes=["**"],
        )
        row = db_session.scalar(select(SigningKey).where(SigningKey.name == "a"))
        assert row is not None
        kek = kek_settings.kek()
        assert kek is not None
        with pytest.raises(SigningError):
            open_private_key(row.encrypted_private_key, kek=kek, name="b", algorithm="ecdsa-p256")
        with pytest.raises(SigningError):
            open_private_key(row.encrypted_private_key, kek=kek, name="a", algorithm="ed25519")


class TestAlgorithmAfterDecryption:
    """The second line behind the associated data: the decrypted key must be of the
    row's algorithm."""

    def test_p256_key_sealed_under_the_ed25519_label_is_corrupt(
        self, db_session: Session, kek_settings: Settings
    ) -> None:
        """Fails if the ``algorithm_of(key).value != algorithm`` check after decryption in
        app/signing/keys.py (``open_private_key``) is removed.

        The row is sealed with the associated data of its own label (``ed25519``), so
        AES-GCM opens it and only the check after decryption can refuse the P-256 key.
        """
        generate_key(
            db_session, settings=kek_settings, name="k", algorithm=Algorithm.ed25519, scopes=["**"]
        )
        row = db_session.scalar(select(SigningKey).where(SigningKey.name == "k"))
        assert row is not None
        kek = kek_settings.kek()
        assert kek is not None
        row.encrypted_private_key = seal_private_key(
            ec.generate_private_key(ec.SECP256R1()), kek=kek, name="k", algorithm=Algorithm.ed25519
        )
        db_session.flush()

        with pytest.raises(SigningError) as e:
            load_signer(db_session, settings=kek_settings, name="k", image_name="ghcr.io/acme/app")
        assert e.value.code == "signing.key_corrupt"
        assert "is not ed25519" in e.value.message


class TestImport:
    def test_unencrypted_and_encrypted_pkcs8(
        self, db_session: Session, kek_settings: Settings
    ) -> None:
        plain = ec.generate_private_key(ec.SECP384R1())
        info = import_key(
            db_session, settings=kek_settings, name="p", pem=private_pem(plain), scopes=["**"]
        )
        assert info.algorithm == "ecdsa-p384"
        locked = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        info = import_key(
            db_session,
            settings=kek_settings,
            name="r",
            pem=private_pem(locked, b"pw-1234"),
            password=b"pw-1234",
            scopes=["**"],
        )
        assert info.algorithm == "rsa-2048"
        assert info.key_id == key_id(locked.public_key())

    def test_encrypted_without_password(self, db_session: Session, kek_settings: Settings) -> None:
        pem = private_pem(ed25519.Ed25519PrivateKey.generate(), b"secret")
        with pytest.raises(InputError, match="is encrypted"):
            import_key(db_session, settings=kek_settings, name="e", pem=pem, scopes=["**"])

    def test_password_for_an_unencrypted_key(
        self, db_session: Session, kek_settings: Settings
    ) -> None:
        pem = private_pem(ed25519.Ed25519PrivateKey.generate())
        with pytest.raises(InputError, match="not encrypted but a password was given"):
            import_key(
                db_session, settings=kek_settings, name="e", pem=pem, password=b"pw", scopes=["**"]
            )

    def test_wrong_password(self, db_session: Session, kek_settings: Settings) -> None:
        pem = private_pem(ed25519.Ed25519PrivateKey.generate(), b"secret")
        with pytest.raises(InputError, match="password is wrong"):
            import_key(
                db_session,
                settings=kek_settings,
                name="e",
                pem=pem,
                password=b"nope",
                scopes=["**"],
            )

    @pytest.mark.parametrize(
        ("make", "message"),
        [
            (lambda: dsa.generate_private_key(key_size=2048), "DSA keys are not supported"),
            (lambda: ec.generate_private_key(ec.SECP521R1()), "secp521r1 are not supported"),
            (lambda: ec.generate_private_key(ec.SECP256K1()), "secp256k1 are not supported"),
            (lambda: ed448.Ed448PrivateKey.generate(), "Ed448 keys are not supported"),
            (lambda: rsa.generate_private_key(public_exponent=65537, key_size=1024), "too weak"),
        ],
    )
    def test_unsupported_types_refused(
        self, db_session: Session, kek_settings: Settings, make: object, message: str
    ) -> None:
        pem = private_pem(make())  # type: ignore[operator]
        with pytest.raises(InputError, match=message) as e:
            import_key(db_session, settings=kek_settings, name="bad", pem=pem, scopes=["**"])
        assert e.value.code == "input.key_unsupported"
        assert list_keys(db_session) == []

    @pytest.mark.parametrize(
        "pem",
        [b"", b"not a key", b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"],
    )
    def test_garbage_refused_without_echo(
        self, db_session: Session, kek_settings: Settings, pem: bytes
    ) -> None:
        with pytest.raises(InputError) as e:
            import_key(db_session, settings=kek_settings, name="bad", pem=pem, scopes=["**"])
        assert "AAAA" not in e.value.message

    def test_public_key_is_refused(self, db_session: Session, kek_settings: Settings) -> None:
        public = (
            ec.generate_private_key(ec.SECP256R1())
            .public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        with pytest.raises(InputError):
            import_key(db_session, settings=kek_settings, name="pub", pem=public, scopes=["**"])


class TestDisable:
    def test_disabled_key_no_longer_signs_but_stays_listed(
        self, db_session: Session, kek_settings: Settings
    ) -> None:
        info = generate_key(
            db_session,
            settings=kek_settings,
            name="old",
            algorithm=Algorithm.ecdsa_p256,
            scopes=["**"],
        )
        disabled = disable_key(db_session, name="old")
        assert disabled.status == "disabled"
        assert disabled.disabled_at is not None
        with pytest.raises(SigningError) as e:
            load_signer(
                db_session, settings=kek_settings, name="old", image_name="ghcr.io/acme/app"
            )
        assert e.value.code == "signing.key_disabled"
        assert get_key(db_session, name="old").public_key_pem == info.public_key_pem

    def test_unknown_key(self, db_session: Session, kek_settings: Settings) -> None:
        with pytest.raises(NotFoundError):
            disable_key(db_session, name="nope")
        with pytest.raises(NotFoundError):
            load_signer(
                db_session, settings=kek_settings, name="nope", image_name="ghcr.io/acme/app"
            )


class TestStartupCheck:
    def test_keys_without_kek_refuse(
        self, db_session: Session, kek_settings: Settings, test_database_url: str
    ) -> None:
        generate_key(
            db_session, settings=kek_settings, name="k", algorithm=Algorithm.ed25519, scopes=["**"]
        )
        with pytest.raises(ConfigError, match="no key-encryption key"):
            check_kek_for_stored_keys(
                db_session, settings=load_settings(database_url=test_database_url)
            )

    def test_keys_with_wrong_kek_refuse(
        self, db_session: Session, kek_settings: Settings, test_database_url: str
    ) -> None:
        generate_key(
            db_session, settings=kek_settings, name="k", algorithm=Algorithm.ed25519, scopes=["**"]
        )
        wrong = load_settings(database_url=test_database_url, key_encryption_key=OTHER_KEK)
        with pytest.raises(ConfigError, match="does not open"):
            check_kek_for_stored_keys(db_session, settings=wrong)

    def test_no_keys_no_kek_is_fine(self, db_session: Session, test_database_url: str) -> None:
        check_kek_for_stored_keys(
            db_session, settings=load_settings(database_url=test_database_url)
        )

    def test_right_kek_is_fine(self, db_session: Session, kek_settings: Settings) -> None:
        generate_key(
            db_session, settings=kek_settings, name="k", algorithm=Algorithm.ed25519, scopes=["**"]
        )
        check_kek_for_stored_keys(db_session, settings=kek_settings)


class TestNoSecretsInLogs:
    def test_generate_import_sign_log_no_private_material(
        self, db_session: Session, kek_settings: Settings, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.DEBUG)
        key = ec.generate_private_key(ec.SECP256R1())
        pem = private_pem(key)
        import_key(db_session, settings=kek_settings, name="imp", pem=pem, scopes=["**"])
        generate_key(
            db_session,
            settings=kek_settings,
            name="gen",
            algorithm=Algorithm.ecdsa_p256,
            scopes=["**"],
        )
        signer = load_signer(
            db_session, settings=kek_settings, name="gen", image_name="ghcr.io/acme/app"
        )
        signer.sign(b"data")
        generated = signer.private_key
        assert isinstance(generated, ec.EllipticCurvePrivateKey)
        secrets = [
            pem.decode().splitlines()[1],
            key.private_numbers().private_value.to_bytes(32, "big").hex(),
            str(key.private_numbers().private_value),
            str(generated.private_numbers().private_value),
            generated.private_numbers().private_value.to_bytes(32, "big").hex(),
        ]
        text = caplog.text + repr(signer) + repr(caplog.records)
        assert "signing key stored" in caplog.text
        for secret in secrets:
            assert secret not in text
