"""Authorities: building them from keys or an identity, scopes, names, storing them (CRUD)."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from app.db.models import Authority, AuthorityKind
from app.errors import ConflictError, InputError, NotFoundError
from app.verify.identity import MATCH_REPOSITORY, IdentityMode, SignedIdentityRule
from app.verify.keyless_identity import parse_identity
from app.verify.trust import (
    get_authority,
    key_authority,
    keyless_authority,
    list_authorities,
    matching_authorities,
    new_authority,
    remove_authority,
    save_authority,
)
from app.verify.trusted_root import TrustedRootRef
from tests.verify import cosign_wire as wire


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
