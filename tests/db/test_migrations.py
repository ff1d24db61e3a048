"""Migrations run on SQLite and PostgreSQL, match the models exactly, and keep old rows working."""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient
from sqlalchemy import inspect

from app.audit.canonical import canonical_json, content_hash
from app.audit.chain import GENESIS, record_hash
from app.audit.inputs import FINDINGS_KEY, InputBody, load_input, store_inputs
from app.audit.query import get_record
from app.audit.verification import verify_chain
from app.auth.scopes import Scope
from app.auth.tokens import Principal
from app.config import load_settings
from app.db.base import Base, UTCDateTime, utcnow
from app.db.migrate import alembic_config, upgrade
from app.db.models import Decision, StoredInput
from app.db.session import make_engine, make_session_factory, session_scope
from app.enforce.sign import parse_formats, sign_image
from app.enforce.startup import warn_about_open_trust
from app.enforce.verify import verification_report_for_policy
from app.main import create_app
from app.policy.bundle import PolicyBundle
from app.policy.engines import EmbeddedOpaEngine
from app.policy.input import Entrypoint, ImageFacts, build_input
from app.policy.replay import replay_decisions
from app.services import Services
from app.signing.keys import generate_key, seal_private_key
from app.signing.signers import Algorithm, key_id, public_key_pem
from app.verify.identity import IdentityMode
from app.verify.trust import list_authorities, new_authority, save_authority
from tests.conftest import TEST_KEK
from tests.fixtures.images import push_random_image
from tests.fixtures.registry import RegistryProcess
from tests.policy.conftest import POLICIES


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


class TestDecisionInputsByHash:
    """Revision 0007 moves each decision's input into the stored inputs the audit trail
    uses, once per distinct content (the trail's own row where it already has one); replay
    and ``audit show`` read them whole; a downgrade puts every input back whole."""

    def test_inputs_move_once_read_back_whole_and_go_back(self, database_url: str) -> None:
        upgrade(database_url, "0006")
        first = _policy_input("registry.example/team/a:1")
        # The same content with its keys in another order: the same input.
        same = dict(reversed(list(first.items())))
        other = _policy_input("registry.example/team/b:1")
        engine = make_engine(database_url)
        try:
            with engine.begin() as conn:
                for document in (first, same, other):
                    conn.execute(sa.insert(_DECISIONS_0006).values(**_decision_0006(document)))
                # The audit trail already holds the first input, as the recorder stored it.
                conn.execute(sa.insert(_STORED_INPUTS_0006).values(**_stored_0006(first)))
                conn.execute(sa.insert(_AUDIT_RECORDS_0006).values(**_record_0006(first)))

            upgrade(database_url)

            sessions = make_session_factory(engine)
            with session_scope(sessions) as session:
                rows = list(session.scalars(sa.select(Decision).order_by(Decision.id)))
                names = [r.input_hash for r in rows]
                assert names[0] == names[1] == content_hash(canonical_json(first))
                assert [load_input(session, name) for name in names] == [first, first, other]
                stored = {s.hash: s for s in session.scalars(sa.select(StoredInput))}
                assert set(stored) == set(names)
                assert stored[names[0]].created_at == LONG_AGO  # the trail's row, kept
                # ``sealgate audit show`` and replay read the inputs as they were.
                _, shown = get_record(session, seq=1)
                assert shown == first
                assert verify_chain(session, key=None).ok
                replay = EmbeddedOpaEngine(PolicyBundle.from_directory(POLICIES))
                try:
                    report = replay_decisions(session, engine=replay, since=dt.timedelta(days=1))
                finally:
                    replay.close()
                assert report.replayed == 3
                # A decision recorded since, its findings stored apart.
                findings = canonical_json([{"id": "CVE-1", "severity": "high"}])
                named = content_hash(findings)
                document = {**other, "scan": {"vulnerabilities": {FINDINGS_KEY: named}}}
                (split,) = store_inputs(
                    session,
                    [InputBody(canonical_json(document), findings=findings, findings_name=named)],
                )
                session.add(Decision(**_decision_0006(other, input=None), input_hash=split))

            command.downgrade(alembic_config(database_url), "0006")

            with engine.connect() as conn:
                restored = list(
                    conn.scalars(sa.select(_DECISIONS_0006.c.input).order_by(_DECISIONS_0006.c.id))
                )
            whole = {**other, "scan": {"vulnerabilities": [{"id": "CVE-1", "severity": "high"}]}}
            assert restored == [first, first, other, whole]
            upgrade(database_url)
        finally:
            engine.dispose()


LONG_AGO = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _policy_input(reference: str) -> dict[str, Any]:
    digest = "sha256:" + "a" * 64
    return build_input(
        entrypoint=Entrypoint.admission,
        image=ImageFacts.from_reference(reference, digest=digest),
        evaluated_at=utcnow(),
    ).to_rego()


def _decision_0006(document: dict[str, Any] | None, **values: Any) -> dict[str, Any]:
    row = {
        "entrypoint": "admission",
        "image": document["image"]["reference"] if document else "registry.example/x",
        "allowed": False,
        "result": {"allow": False},
        "input": document,
        "created_at": utcnow(),
    }
    row.update(values)
    return {k: v for k, v in row.items() if k != "input" or v is not None}


def _stored_0006(document: dict[str, Any]) -> dict[str, Any]:
    body = canonical_json(document)
    return {"hash": content_hash(body), "body": body, "size": len(body), "created_at": LONG_AGO}


def _record_0006(document: dict[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = {
        "seq": 1,
        "time": LONG_AGO,
        "kind": "admission.decision",
        "source": "uid-1",
        "actor": "alice",
        "namespace": None,
        "object": None,
        "images": [document["image"]["reference"]],
        "digests": [],
        "decision": "denied",
        "reasons": [],
        "policy_version": None,
        "policy_revision": None,
        "latency_ms": None,
        "input_hash": content_hash(canonical_json(document)),
        "details": {},
        "prev_hash": GENESIS,
    }
    values["hash"] = record_hash(values)
    return values


_DECISIONS_0006 = sa.table(
    "decisions",
    sa.column("id", sa.Integer),
    sa.column("entrypoint", sa.String),
    sa.column("image", sa.String),
    sa.column("allowed", sa.Boolean),
    sa.column("result", sa.JSON),
    sa.column("input", sa.JSON),
    sa.column("created_at", UTCDateTime()),
)
_STORED_INPUTS_0006 = sa.table(
    "stored_inputs",
    sa.column("hash", sa.String),
    sa.column("body", sa.LargeBinary),
    sa.column("size", sa.Integer),
    sa.column("created_at", UTCDateTime()),
)
_AUDIT_RECORDS_0006 = sa.table(
    "audit_records",
    *(
        sa.column(name, sa.JSON if name in {"images", "digests", "reasons", "details"} else None)
        for name in (
            "seq",
            "kind",
            "source",
            "actor",
            "namespace",
            "object",
            "images",
            "digests",
            "decision",
            "reasons",
            "policy_version",
            "policy_revision",
            "latency_ms",
            "input_hash",
            "details",
            "prev_hash",
            "hash",
        )
    ),
    sa.column("time", UTCDateTime()),
)
