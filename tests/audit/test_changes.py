"""Every change that is not a decision is audited in the transaction that makes it: keys,
authorities, tokens, policy versions, signings; over the API the actor is the token's name."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.audit.verification import verify_chain
from app.auth.scopes import Scope
from app.auth.tokens import Principal, create_token
from app.db.models import AuditRecord, SigningKey
from app.db.session import session_scope
from app.enforce.sign import sign_image
from app.errors import ConflictError
from app.policy.bundle import PolicyBundle
from app.policy.versions import activate_version, publish_bundle
from app.services import Services
from app.signing.keys import generate_key
from app.signing.signers import Algorithm, public_key_pem
from tests.conftest import Cli
from tests.fixtures.images import push_random_image

MINIMAL_POLICY = PolicyBundle.from_files(
    {"sealgate/main.rego": "package sealgate.main\n\ndefault allow := true\n"}
)


def _records(services: Services) -> list[AuditRecord]:
    with session_scope(services.sessions) as session:
        assert verify_chain(session, key=None).ok
        return list(session.scalars(select(AuditRecord).order_by(AuditRecord.seq)))


def _admin(services: Services, name: str = "ops-admin") -> dict[str, str]:
    with session_scope(services.sessions) as session:
        issued = create_token(session, name=name, scopes=["admin"])
    return {"Authorization": f"Bearer {issued.token}"}


class TestOverTheApi:
    def test_key_changes_name_the_token_and_the_request(
        self, client: TestClient, services: Services
    ) -> None:
        admin = _admin(services)
        created = client.post("/v1/keys", json={"name": "release", "scopes": ["**"]}, headers=admin)
        assert created.status_code == 201
        client.post("/v1/keys/release/disable", headers=admin)
        client.post("/v1/keys/release/disable", headers=admin)  # no change: no record
        records = _records(services)
        assert [(r.kind, r.actor, r.object) for r in records] == [
            ("token.create", "cli", "token/ops-admin"),
            ("key.create", "ops-admin", "key/release"),
            ("key.disable", "ops-admin", "key/release"),
        ]
        assert records[1].source.startswith("request:")
        assert records[1].details["key_id"] == created.json()["key_id"]
        assert "private" not in str(records[1].details).lower()

    def test_key_scope_changes_are_audited_with_the_scopes_before_and_after(
        self, client: TestClient, services: Services
    ) -> None:
        admin = _admin(services)
        client.post("/v1/keys", json={"name": "k", "scopes": ["ghcr.io/**"]}, headers=admin)
        narrowed = {"scopes": ["ghcr.io/ops/**"]}
        assert client.put("/v1/keys/k/scopes", json=narrowed, headers=admin).status_code == 200
        client.put("/v1/keys/k/scopes", json=narrowed, headers=admin)  # no change: no record
        refused = client.put("/v1/keys/k/scopes", json={"scopes": []}, headers=admin)
        assert refused.status_code == 400  # refused: no record
        records = _records(services)
        assert [(r.kind, r.actor, r.object) for r in records[1:]] == [
            ("key.create", "ops-admin", "key/k"),
            ("key.scopes", "ops-admin", "key/k"),
        ]
        changed = records[-1]
        assert changed.source.startswith("request:")
        assert changed.details["scopes"] == ["ghcr.io/ops/**"]
        assert changed.details["previous_scopes"] == ["ghcr.io/**"]
        assert changed.details["key_id"] == records[1].details["key_id"]

    def test_authority_add_and_remove(self, client: TestClient, services: Services) -> None:
        admin = _admin(services)
        pem = public_key_pem(ec.generate_private_key(ec.SECP256R1()).public_key())
        body = {"name": "team", "keys": [pem], "scopes": ["r.test/**"]}
        assert client.post("/v1/authorities", json=body, headers=admin).status_code == 201
        assert client.delete("/v1/authorities/team", headers=admin).status_code == 204
        added, removed = _records(services)[-2:]
        assert (added.kind, added.actor, added.object) == (
            "authority.add",
            "ops-admin",
            "authority/team",
        )
        assert added.details["scopes"] == ["r.test/**"] and len(added.details["key_ids"]) == 1
        assert (removed.kind, removed.object) == ("authority.remove", "authority/team")

    def test_a_refused_change_records_nothing(self, client: TestClient, services: Services) -> None:
        admin = _admin(services)
        client.post("/v1/keys", json={"name": "k", "scopes": ["**"]}, headers=admin)
        assert (
            client.post("/v1/keys", json={"name": "k", "scopes": ["**"]}, headers=admin).status_code
            == 409
        )
        assert [r.kind for r in _records(services)] == ["token.create", "key.create"]


class TestInProcess:
    def test_a_change_and_its_record_commit_together(self, services: Services) -> None:
        with pytest.raises(RuntimeError), session_scope(services.sessions) as session:
            generate_key(
                session,
                settings=services.settings,
                name="k",
                algorithm=Algorithm.ed25519,
                scopes=["**"],
            )
            raise RuntimeError("the transaction fails after the change")
        with session_scope(services.sessions) as session:
            assert session.scalar(select(SigningKey)) is None
        assert _records(services) == []

    def test_a_duplicate_token_records_nothing(self, services: Services) -> None:
        with session_scope(services.sessions) as session:
            create_token(session, name="t", scopes=["sign:**"])
        with pytest.raises(ConflictError), session_scope(services.sessions) as session:
            create_token(session, name="t", scopes=["sign:**"])
        assert [r.kind for r in _records(services)] == ["token.create"]

    def test_policy_publish_activate_and_roll_back(self, services: Services) -> None:
        with session_scope(services.sessions) as session:
            publish_bundle(session, bundle=MINIMAL_POLICY, author="alice")
            publish_bundle(session, bundle=MINIMAL_POLICY, author="bob", activate=False)
            activate_version(session, version=2, actor="carol")
            activate_version(session, version=1, actor="dave")
        assert [(r.kind, r.actor, r.policy_version) for r in _records(services)] == [
            ("policy.publish", "alice", 1),
            ("policy.activate", "alice", 1),
            ("policy.publish", "bob", 2),
            ("policy.activate", "carol", 2),
            ("policy.rollback", "dave", 1),
        ]

    def test_token_creation_from_the_cli(self, sealgate: Cli) -> None:
        result = sealgate("token", "create", "deployer", "--scope", "sign:r.test/*")
        assert result.exit_code == 0, result.output
        shown = sealgate("audit", "export")
        assert '"kind": "token.create"' in shown.stdout and '"actor": "cli"' in shown.stdout
        assert "sgt_" not in shown.stdout  # the secret is never audited


class TestSigning:
    async def test_a_signing_is_audited_with_its_image_and_digest(
        self, services: Services, unique_repo: Callable[[str], str]
    ) -> None:
        with session_scope(services.sessions) as session:
            generate_key(
                session,
                settings=services.settings,
                name="ci",
                algorithm=Algorithm.ed25519,
                scopes=["**"],
            )
        image, _ = await push_random_image(services.registry, unique_repo("app"))
        signer = Principal(name="ci-token", scopes=(Scope.parse("sign:**"),))
        result = await sign_image(services, image=str(image), principal=signer, key_name="ci")
        record = next(r for r in reversed(_records(services)) if r.kind == "sign")
        assert (record.kind, record.actor) == ("sign", "ci-token")
        assert record.images == [result.image] and record.digests == [result.digest]
        assert record.details["key_name"] == "ci"
        assert record.details["signatures"] == [s.signature_digest for s in result.signatures]
