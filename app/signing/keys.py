"""Keys held by Sealgate: generate, import, list, disable, and load one to sign.

Private keys are stored as unencrypted PKCS#8 DER sealed with AES-256-GCM under the
key-encryption key (``Settings.kek()``): a fresh random 96-bit nonce per key, and the key's
name and algorithm as associated data, so a ciphertext moved to another row (or relabelled
with another algorithm) no longer decrypts. The stored blob is ``0x01 || nonce || ciphertext``.

A private key never leaves this module except as a ``KeySigner`` handed to the signing code:
``KeyInfo`` (what lists and APIs show) carries only public material, and no error message or
log line here contains key bytes. Without a KEK, keys can be listed but not created or used,
and ``check_kek_for_stored_keys`` stops the service from starting when keys exist.

Each key has image scopes (``app.oci.globs`` globs) and signs only images they cover,
whoever asks: a ``sign:`` token picks among the keys that cover its image, never beyond
them. A new key must be given at least one scope (``**`` for every image on purpose); keys
stored before keys had scopes have none and still sign everywhere until
``set_key_scopes`` gives them some, and ``unscoped_keys`` names them for the start-up warning.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
from collections.abc import Sequence
from typing import Any

from cryptography.exceptions import InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import BaseModel, ConfigDict
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from app.audit.changes import record_change
from app.audit.entry import CLI_ACTOR, AuditKind
from app.auth.scopes import required_globs
from app.config import KEK_SETUP, Settings
from app.db.base import utcnow
from app.db.models import KeyStatus, SigningKey
from app.errors import ConfigError, ConflictError, InputError, NotFoundError, SigningError
from app.limits import MAX_PEM_BYTES
from app.oci.globs import glob_matches
from app.signing.signers import (
    Algorithm,
    KeySigner,
    PrivateKey,
    algorithm_of,
    generate_private_key,
    key_id,
    public_key_pem,
)

log = logging.getLogger("sealgate.keys")

_BLOB_VERSION = b"\x01"
_NONCE_BYTES = 12
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class KeyInfo(BaseModel):
    """What Sealgate shows about a key: public material, scopes and status only.

    ``scopes`` is None for a key stored before keys had scopes: it signs every image.
    """

    model_config = ConfigDict(frozen=True)

    name: str
    algorithm: str
    key_id: str
    public_key_pem: str
    scopes: list[str] | None
    status: str
    created_at: dt.datetime
    disabled_at: dt.datetime | None = None

    @classmethod
    def from_row(cls, row: SigningKey) -> KeyInfo:
        return cls(
            name=row.name,
            algorithm=row.algorithm,
            key_id=row.key_id,
            public_key_pem=row.public_key_pem,
            scopes=list(row.scopes) if row.scopes is not None else None,
            status=row.status.value,
            created_at=row.created_at,
            disabled_at=row.disabled_at,
        )


def validate_key_name(name: str) -> str:
    """Return ``name`` if usable as a key name (1-128 of letters, digits, ``._-``)."""
    if not _NAME.match(name):
        raise InputError(
            f"key name {name[:140]!r} is not valid: use 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit",
            code="input.key_name",
        )
    return name


def _require_kek(settings: Settings) -> bytes:
    kek = settings.kek()
    if kek is None:
        raise SigningError(
            f"no key-encryption key is configured: {KEK_SETUP}",
            code="config.no_kek",
        )
    return kek


def _associated_data(name: str, algorithm: str) -> bytes:
    return f"sealgate/signing-key/v1\x00{name}\x00{algorithm}".encode()


def seal_private_key(key: PrivateKey, *, kek: bytes, name: str, algorithm: Algorithm) -> bytes:
    """Encrypt ``key`` (as PKCS#8 DER) under ``kek`` bound to ``name`` and ``algorithm``."""
    plaintext = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    nonce = os.urandom(_NONCE_BYTES)
    sealed = AESGCM(kek).encrypt(nonce, plaintext, _associated_data(name, algorithm.value))
    return _BLOB_VERSION + nonce + sealed


def open_private_key(blob: bytes, *, kek: bytes, name: str, algorithm: str) -> PrivateKey:
    """Decrypt a blob from ``seal_private_key``; ``SigningError`` when it does not open."""
    if len(blob) < 1 + _NONCE_BYTES + 16 or blob[:1] != _BLOB_VERSION:
        raise SigningError(f"stored key {name!r} is corrupt", code="signing.key_corrupt")
    nonce, sealed = blob[1 : 1 + _NONCE_BYTES], blob[1 + _NONCE_BYTES :]
    try:
        plaintext = AESGCM(kek).decrypt(nonce, sealed, _associated_data(name, algorithm))
    except InvalidTag:
        raise SigningError(
            f"stored key {name!r} does not decrypt with the configured key-encryption key "
            "(wrong KEK, or the row was altered)",
            code="signing.key_decrypt",
        ) from None
    key = serialization.load_der_private_key(plaintext, password=None)
    if algorithm_of(key).value != algorithm:
        raise SigningError(f"stored key {name!r} is not {algorithm}", code="signing.key_corrupt")
    return key  # type: ignore[return-value]  # algorithm_of accepted it: a supported type


def _key_scopes(scopes: Sequence[str] | None) -> list[str]:
    return list(required_globs(scopes, what="a signing key", code="input.key_scope"))


def _store(
    session: Session, *, settings: Settings, name: str, key: PrivateKey, scopes: list[str]
) -> KeyInfo:
    kek = _require_kek(settings)
    algorithm = algorithm_of(key)
    public = key.public_key()
    row = SigningKey(
        name=name,
        algorithm=algorithm.value,
        key_id=key_id(public),
        public_key_pem=public_key_pem(public),
        encrypted_private_key=seal_private_key(key, kek=kek, name=name, algorithm=algorithm),
        scopes=scopes,
        status=KeyStatus.active,
        created_at=utcnow(),
    )
    session.add(row)
    try:
        session.flush()
    except IntegrityError as e:
        raise ConflictError(f"a key named {name!r} already exists", code="conflict.key") from e
    log.info(
        "signing key stored",
        extra={"key_name": name, "algorithm": algorithm.value, "key_id": row.key_id},
    )
    return KeyInfo.from_row(row)


def _ensure_new_name(session: Session, name: str) -> None:
    if session.scalar(select(SigningKey.id).where(SigningKey.name == name)) is not None:
        raise ConflictError(f"a key named {name!r} already exists", code="conflict.key")


def generate_key(
    session: Session,
    *,
    settings: Settings,
    name: str,
    algorithm: Algorithm,
    scopes: Sequence[str] | None,
    actor: str = CLI_ACTOR,
) -> KeyInfo:
    """Generate a key named ``name`` that signs images matching ``scopes``, and store it
    encrypted; return its public information.

    Raises ``InputError`` for a bad name or no (or a bad) scope, ``ConflictError`` when the
    name is taken and ``SigningError`` (503) when no key-encryption key is configured.
    """
    validate_key_name(name)
    checked = _key_scopes(scopes)
    _require_kek(settings)
    _ensure_new_name(session, name)
    info = _store(
        session, settings=settings, name=name, key=generate_private_key(algorithm), scopes=checked
    )
    _audit(session, AuditKind.key_create, info, actor)
    return info


def import_key(
    session: Session,
    *,
    settings: Settings,
    name: str,
    pem: bytes,
    scopes: Sequence[str] | None,
    password: bytes | None = None,
    actor: str = CLI_ACTOR,
) -> KeyInfo:
    """Import a PEM private key (PKCS#8, encrypted or not) that signs images matching
    ``scopes``, and store it encrypted.

    Raises ``InputError`` when no (or a bad) scope is given, the PEM cannot be read, needs a
    password that was not given, the password is wrong, or the key type is unsupported (see
    ``algorithm_of``). Messages never quote the PEM.
    """
    validate_key_name(name)
    checked = _key_scopes(scopes)
    _require_kek(settings)
    if len(pem) > MAX_PEM_BYTES:
        raise InputError(f"the PEM is larger than {MAX_PEM_BYTES} bytes", code="input.key_pem")
    if b"-----BEGIN" not in pem:
        raise InputError("the key is not PEM (no '-----BEGIN' line)", code="input.key_pem")
    try:
        key = serialization.load_pem_private_key(pem, password=password or None)
    except TypeError:
        # cryptography: TypeError when a password is missing for an encrypted key or given
        # for an unencrypted one.
        if password:
            raise InputError(
                "the key is not encrypted but a password was given", code="input.key_password"
            ) from None
        raise InputError(
            "the key is encrypted: give its password (--password-env VAR, or 'password')",
            code="input.key_password",
        ) from None
    except UnsupportedAlgorithm:
        raise InputError(
            "the key's type or encryption is not supported; use ECDSA P-256/P-384, Ed25519 or RSA",
            code="input.key_unsupported",
        ) from None
    except ValueError:
        # Wrong password and malformed PEM are indistinguishable here by design (OpenSSL).
        raise InputError(
            "the PEM private key could not be read: it is malformed, or the password is wrong",
            code="input.key_pem",
        ) from None
    algorithm_of(key)
    _ensure_new_name(session, name)
    info = _store(session, settings=settings, name=name, key=key, scopes=checked)  # type: ignore[arg-type]
    _audit(session, AuditKind.key_import, info, actor)
    return info


def _audit(
    session: Session,
    kind: AuditKind,
    info: KeyInfo,
    actor: str,
    *,
    details: dict[str, Any] | None = None,
) -> None:
    """Record a key change in the audit trail (public facts only, with ``details`` of the
    change), in the same transaction."""
    record_change(
        session,
        kind=kind,
        actor=actor,
        object=f"key/{info.name}",
        details={
            "algorithm": info.algorithm,
            "key_id": info.key_id,
            "status": info.status,
            **(details or {}),
        },
    )


def _row(session: Session, name: str) -> SigningKey:
    row = session.scalar(select(SigningKey).where(SigningKey.name == name))
    if row is None:
        raise NotFoundError(f"no key named {name[:140]!r}", code="not_found.key")
    return row


def list_keys(session: Session) -> list[KeyInfo]:
    """Every stored key's public information, by name."""
    return [
        KeyInfo.from_row(r) for r in session.scalars(select(SigningKey).order_by(SigningKey.name))
    ]


def get_key(session: Session, *, name: str) -> KeyInfo:
    """One key's public information; ``NotFoundError`` when there is no such key."""
    return KeyInfo.from_row(_row(session, name))


def set_key_scopes(
    session: Session, *, name: str, scopes: Sequence[str] | None, actor: str = CLI_ACTOR
) -> KeyInfo:
    """Replace the image scopes of key ``name`` (at least one; ``**`` for every image), and
    audit the change with the scopes before and after (setting the same ones is no change
    and records nothing).

    How a key stored before keys had scopes is narrowed without new key material.
    Raises ``NotFoundError`` for an unknown key and ``InputError`` for no or a bad scope.
    """
    checked = _key_scopes(scopes)
    row = _row(session, name)
    previous = row.scopes
    if previous != checked:
        row.scopes = checked
        log.info("signing key scopes set", extra={"key_name": name, "scopes": checked})
        _audit(
            session,
            AuditKind.key_scopes,
            KeyInfo.from_row(row),
            actor,
            # None: a key stored before keys had scopes, which signed everywhere.
            details={"scopes": checked, "previous_scopes": previous},
        )
    return KeyInfo.from_row(row)


def disable_key(session: Session, *, name: str, actor: str = CLI_ACTOR) -> KeyInfo:
    """Stop ``name`` from signing. Its public key stays available for verification."""
    row = _row(session, name)
    if row.status is KeyStatus.active:
        row.status = KeyStatus.disabled
        row.disabled_at = utcnow()
        log.info("signing key disabled", extra={"key_name": name, "key_id": row.key_id})
        _audit(session, AuditKind.key_disable, KeyInfo.from_row(row), actor)
    return KeyInfo.from_row(row)


def load_signer(session: Session, *, settings: Settings, name: str, image_name: str) -> KeySigner:
    """The signer for the active key ``name``, to sign the repository ``image_name``
    (normalised ``registry/repository``).

    Raises ``NotFoundError`` for an unknown key, ``SigningError`` for a disabled or retired
    key, a key whose scopes do not cover ``image_name`` (403, ``signing.key_out_of_scope``),
    a missing key-encryption key, or a row that does not decrypt.
    """
    row = _row(session, name)
    if row.status is not KeyStatus.active:
        raise SigningError(
            f"key {name!r} is {row.status.value} and no longer signs", code="signing.key_disabled"
        )
    # A NULL scope list is a key from before keys had scopes: it signs everywhere (warned
    # about at start-up). An empty list cannot be stored.
    if row.scopes is not None and not any(glob_matches(g, image_name) for g in row.scopes):
        raise SigningError(
            f"key {name!r} may not sign {image_name}: its scopes are {', '.join(row.scopes)}",
            code="signing.key_out_of_scope",
        )
    kek = _require_kek(settings)
    key = open_private_key(
        row.encrypted_private_key, kek=kek, name=row.name, algorithm=row.algorithm
    )
    return KeySigner(name=row.name, algorithm=Algorithm(row.algorithm), private_key=key)


def check_kek_for_stored_keys(session: Session, *, settings: Settings) -> None:
    """Refuse to run (``ConfigError``) when keys are stored and no KEK is configured, or
    when the configured KEK does not open a stored key.

    A database that cannot be queried (not migrated, unreachable) is logged and passed over:
    without a usable KEK nothing can be signed anyway, and the health endpoint reports the
    database. Called from the application's lifespan before it serves.
    """
    try:
        count = session.scalar(select(func.count()).select_from(SigningKey)) or 0
        sample = session.scalar(select(SigningKey).order_by(SigningKey.id).limit(1))
    except SQLAlchemyError as e:
        log.warning(
            "could not check stored signing keys at start-up", extra={"error": type(e).__name__}
        )
        return
    if count == 0 or sample is None:
        return
    kek = settings.kek()
    if kek is None:
        raise ConfigError(
            f"{count} signing key(s) are stored but no key-encryption key is configured: "
            f"{KEK_SETUP}",
            code="config.no_kek",
        )
    try:
        open_private_key(
            sample.encrypted_private_key, kek=kek, name=sample.name, algorithm=sample.algorithm
        )
    except SigningError as e:
        raise ConfigError(
            f"the configured key-encryption key does not open stored key {sample.name!r}",
            code="config.wrong_kek",
        ) from e


def unscoped_keys(session: Session) -> list[str]:
    """Names of stored keys without scopes (from before keys had scopes): they sign every
    image a ``sign:`` token may name. Listed in a warning at start-up."""
    query = select(SigningKey.name).where(SigningKey.scopes.is_(None)).order_by(SigningKey.name)
    return list(session.scalars(query))
