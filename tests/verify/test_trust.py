"""Authorities: key parsing and refusal of unsupported keys, identities, trusted roots, CRUD."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, rsa, x25519
from sqlalchemy.orm import Session

from app.db.models import Authority, AuthorityKind
from app.errors import ConflictError, InputError, NotFoundError
from app.verify.identity import MATCH_REPOSITORY, IdentityMode, SignedIdentityRule
from app.verify.trust import (
    TrustedKey,
    TrustedRootRef,
    get_authority,
    key_authority,
    keyless_authority,
    list_authorities,
    matching_authorities,
    new_authority,
    parse_identity,
    remove_authority,
    save_authority,
)
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


class TestParseIdentity:
    def test_needs_one_of_each(self) -> None:
        with pytest.raises(InputError, match="issuer"):
            parse_identity(subject="a@b")
        with pytest.raises(InputError, match="subject"):
            parse_identity(subject="a@b", subject_regexp=".*", issuer="https://i")

    def test_refuses_invalid_regexp(self) -> None:
        with pytest.raises(InputError, match="not a valid regex"):
            parse_identity(subject_regexp="(", issuer="https://i")
        with pytest.raises(InputError, match="empty"):
            parse_identity(subject=" ", issuer="https://i")

    def test_maps_cosign_flags_to_the_keyless_identity(self) -> None:
        identity = parse_identity(subject_regexp="^a.*$", issuer="https://i")
        assert identity.subject_regex == "^a.*$"
        assert identity.issuer == "https://i"


class TestTrustedRoots:
    def test_builtin_roots_come_from_the_sigstore_wheel(self) -> None:
        for name in ("public-good", "staging"):
            root = TrustedRootRef.resolve(name)
            assert json.loads(root.content)["mediaType"].startswith(
                "application/vnd.dev.sigstore.trustedroot+json"
            )
            assert root.stored == name

    def test_custom_root_is_stored_by_content(self, asset: Callable[[str], Path]) -> None:
        text = asset("sigstore/trusted-roots/cosign.trusted_root_pgi.json").read_text()
        root = TrustedRootRef.resolve(
            str(asset("sigstore/trusted-roots/cosign.trusted_root_pgi.json"))
        )
        assert root.name == "custom"
        assert root.stored == text
        assert root.describe() == "custom sha256:" + hashlib.sha256(text.encode()).hexdigest()

    @pytest.mark.parametrize("value", ["/nonexistent/root.json", "{not json", '{"mediaType": "x"}'])
    def test_refuses_unusable_roots(self, value: str) -> None:
        with pytest.raises(InputError):
            TrustedRootRef.resolve(value)

    def test_refuses_paths_when_only_content_is_allowed(self, asset: Callable[[str], Path]) -> None:
        with pytest.raises(InputError, match="file"):
            TrustedRootRef.resolve(
                str(asset("sigstore/trusted-roots/cosign.trusted_root_pgi.json")), allow_path=False
            )


class TestAuthorityStore:
    def test_crud(self, db_session: Session) -> None:
        key = wire.new_key()
        saved = save_authority(
            db_session,
            key_authority(
                name="team", keys=[wire.public_pem(key)], scopes=["127.0.0.1:5000/team/*"]
            ),
        )
        save_authority(
            db_session,
            keyless_authority(
                name="ci",
                identity=parse_identity(subject="a@b", issuer="https://i"),
                trusted_root=TrustedRootRef.resolve("staging"),
                scopes=["**"],
                signed_identity=SignedIdentityRule.parse("any"),
            ),
        )

        assert [a.name for a in list_authorities(db_session)] == ["ci", "team"]
        loaded = get_authority(db_session, "team")
        assert loaded.keys[0].key_id == saved.keys[0].key_id
        assert loaded.scopes == ("127.0.0.1:5000/team/*",)
        ci = get_authority(db_session, "ci")
        assert ci.kind is AuthorityKind.keyless
        assert ci.trusted_root is not None and ci.trusted_root.name == "staging"
        assert ci.to_json()["identity"] == {"subject": "a@b", "issuer": "https://i"}
        assert "pem" in loaded.to_json()["keys"][0]
        assert loaded.signed_identity == MATCH_REPOSITORY
        assert loaded.to_json()["signed_identity"] == "match-repository"
        assert ci.signed_identity.mode is IdentityMode.any

        remove_authority(db_session, "team")
        with pytest.raises(NotFoundError):
            get_authority(db_session, "team")
        with pytest.raises(NotFoundError):
            remove_authority(db_session, "team")

    def test_duplicate_name_conflicts(self, db_session: Session) -> None:
        pem = wire.public_pem(wire.new_key())
        save_authority(db_session, key_authority(name="dup", keys=[pem], scopes=["**"]))
        with pytest.raises(ConflictError):
            save_authority(db_session, key_authority(name="dup", keys=[pem], scopes=["**"]))

    @pytest.mark.parametrize("scopes", [None, []])
    def test_an_authority_without_scopes_is_not_stored(
        self, db_session: Session, scopes: list[str] | None
    ) -> None:
        pem = wire.public_pem(wire.new_key())
        with pytest.raises(InputError) as e:
            new_authority(name="open", keys=[pem], scopes=scopes)
        assert e.value.code == "input.authority_scope"
        assert "'**'" in e.value.message
        # The lower-level constructor (one-off trust) has no scopes; it is still not stored.
        with pytest.raises(InputError):
            save_authority(db_session, key_authority(name="open", keys=[pem], scopes=scopes))
        assert list_authorities(db_session) == []

    def test_matching_uses_scope_globs_and_no_scope_matches_all(self, db_session: Session) -> None:
        pem = wire.public_pem(wire.new_key())
        # A row from before scopes were required (no scope): it still covers every image.
        db_session.add(Authority(name="all", kind=AuthorityKind.key, public_keys=[pem], scopes=[]))
        db_session.flush()
        save_authority(
            db_session, key_authority(name="acme", keys=[pem], scopes=["ghcr.io/acme/*"])
        )
        save_authority(
            db_session, key_authority(name="deep", keys=[pem], scopes=["ghcr.io/acme/**"])
        )

        names = lambda image: [a.name for a in matching_authorities(db_session, image)]  # noqa: E731
        assert names("ghcr.io/acme/api") == ["acme", "all", "deep"]
        assert names("ghcr.io/acme/team/api") == ["all", "deep"]
        assert names("ghcr.io/other/api") == ["all"]

    @pytest.mark.parametrize("scope", ["ghcr.io/acme/api:v1", "ghcr.io/acme/api@sha256:00", " "])
    def test_refuses_bad_scopes(self, scope: str) -> None:
        with pytest.raises(InputError):
            key_authority(name="x", keys=[wire.public_pem(wire.new_key())], scopes=[scope])

    @pytest.mark.parametrize("name", ["", "a b", "-x", "x" * 129, "a/b"])
    def test_refuses_bad_names(self, name: str) -> None:
        with pytest.raises(InputError):
            key_authority(name=name, keys=[wire.public_pem(wire.new_key())])
