"""Migrations run on SQLite and PostgreSQL, match the models exactly, and keep old rows working."""

from __future__ import annotations

import logging
import secrets

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient
from sqlalchemy import inspect

from app.auth.scopes import Scope
from app.auth.tokens import Principal
from app.config import load_settings
from app.db.base import Base, UTCDateTime, utcnow
from app.db.migrate import upgrade
from app.db.session import make_engine, session_scope
from app.enforce.sign import parse_formats, sign_image
from app.enforce.startup import warn_about_open_trust
from app.enforce.verify import verification_report_for_policy
from app.main import create_app
from app.services import Services
from app.signing.keys import generate_key, seal_private_key
from app.signing.signers import Algorithm, key_id, public_key_pem
from app.verify.identity import IdentityMode
from app.verify.trust import list_authorities, new_authority, save_authority
from tests.conftest import TEST_KEK
from tests.fixtures.images import push_random_image
from tests.fixtures.registry import RegistryProcess


class TestMigrations:
    def test_upgrade_creates_every_table(self, database_url: str) -> None:
        upgrade(database_url)
        engine = make_engine(database_url)
        tables = set(inspect(engine).get_table_names())
        engine.dispose()
        assert set(Base.metadata.tables) <= tables
        assert "alembic_version" in tables

    def test_autogenerate_finds_no_difference(self, database_url: str) -> None:
        upgrade(database_url)
        engine = make_engine(database_url)
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(context, Base.metadata)
        engine.dispose()
        assert diff == [], f"models and migrations differ: {diff}"

    def test_upgrade_is_idempotent(self, database_url: str) -> None:
        upgrade(database_url)
        upgrade(database_url)


class TestUpgradeFrom0001:
    """Rows written at revision 0001 (no key scopes, no authority scopes, no signed-identity
    rule) keep working after the upgrade, and the service names them when it starts."""

    async def test_legacy_key_and_authority_still_sign_verify_and_warn(
        self,
        database_url: str,
        registry: RegistryProcess,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        upgrade(database_url, "0001")
        settings = load_settings(
            database_url=database_url,
            insecure_registries=[registry.host],
            key_encryption_key=TEST_KEK,
        )
        private = ec.generate_private_key(ec.SECP256R1())
        public_pem = public_key_pem(private.public_key())
        engine = make_engine(database_url)
        with engine.begin() as conn:
            conn.execute(
                sa.insert(_AUTHORITIES_0001).values(
                    name="old-trust",
                    kind="key",
                    public_keys=[public_pem],
                    identity=None,
                    trusted_root=None,
                    scopes=[],
                    created_at=utcnow(),
                )
            )
            kek = settings.kek()
            assert kek is not None
            conn.execute(
                sa.insert(_SIGNING_KEYS_0001).values(
                    name="old-key",
                    algorithm=Algorithm.ecdsa_p256.value,
                    key_id=key_id(private.public_key()),
                    public_key_pem=public_pem,
                    encrypted_private_key=seal_private_key(
                        private, kek=kek, name="old-key", algorithm=Algorithm.ecdsa_p256
                    ),
                    status="active",
                    created_at=utcnow(),
                )
            )
        engine.dispose()

        upgrade(database_url)

        services = Services.from_settings(settings)
        try:
            image, _ = await push_random_image(
                services.registry, f"{registry.host}/t{secrets.token_hex(4)}/app"
            )
            anyone = Principal(name="ci", scopes=(Scope.parse("sign:**"),))
            # The key has no scopes: it still signs everywhere (today's behaviour).
            await sign_image(
                services,
                image=str(image),
                principal=anyone,
                key_name="old-key",
                formats=parse_formats("both"),
            )
            # The authority has no scope and no rule: it still covers and verifies the image.
            report = await verification_report_for_policy(services, image)
            assert sorted((s.authority, s.format.value) for s in report.signatures) == [
                ("old-trust", "bundle"),
                ("old-trust", "legacy"),
            ]
            with session_scope(services.sessions) as session:
                (old,) = list_authorities(session)
            assert old.scopes == () and old.signed_identity.mode is IdentityMode.any

            warnings = warn_about_open_trust(services)
            assert len(warnings) == 3
            assert "'old-key'" in warnings[0]
            assert all("'old-trust'" in w for w in warnings[1:])
            # The application logs the same when it starts.
            caplog.set_level(logging.WARNING, logger="sealgate.startup")
            with TestClient(create_app(services=services)) as client:
                assert client.get("/healthz").status_code == 200
                client.portal.call(services.close_registry)  # type: ignore[union-attr]
            logged = [r.getMessage() for r in caplog.records if r.name == "sealgate.startup"]
            assert logged == warnings
        finally:
            await services.aclose()

    def test_new_rows_do_not_warn(self, database_url: str) -> None:
        upgrade(database_url)
        services = Services.from_settings(
            load_settings(database_url=database_url, key_encryption_key=TEST_KEK)
        )
        try:
            with session_scope(services.sessions) as session:
                generate_key(
                    session,
                    settings=services.settings,
                    name="k",
                    algorithm=Algorithm.ed25519,
                    scopes=["**"],
                )
                save_authority(
                    session,
                    new_authority(
                        name="a",
                        keys=[public_key_pem(ec.generate_private_key(ec.SECP256R1()).public_key())],
                        scopes=["**"],
                    ),
                )
            assert warn_about_open_trust(services) == []
        finally:
            services.close()


_AUTHORITIES_0001 = sa.table(
    "authorities",
    sa.column("name", sa.String),
    sa.column("kind", sa.String),
    sa.column("public_keys", sa.JSON),
    sa.column("identity", sa.JSON),
    sa.column("trusted_root", sa.Text),
    sa.column("scopes", sa.JSON),
    sa.column("created_at", UTCDateTime()),
)
_SIGNING_KEYS_0001 = sa.table(
    "signing_keys",
    sa.column("name", sa.String),
    sa.column("algorithm", sa.String),
    sa.column("key_id", sa.String),
    sa.column("public_key_pem", sa.Text),
    sa.column("encrypted_private_key", sa.LargeBinary),
    sa.column("status", sa.String),
    sa.column("created_at", UTCDateTime()),
)
