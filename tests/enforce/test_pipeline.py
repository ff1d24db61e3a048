"""The decision flow end to end: real registry, real database, the default policy library.

Images are pushed to the registry process, signed by Sealgate's own sign flow, scanned by
ingesting real third-party reports; the decision is made by the embedded OPA engine over
``policies/`` and recorded.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, select

from app.auth.scopes import Scope
from app.auth.tokens import Principal, create_token
from app.db.models import Decision, ScanRecord
from app.db.session import session_scope
from app.enforce.deadline import Deadline
from app.enforce.outcome import DecisionRequest, Outcome
from app.enforce.pipeline import decide_and_store
from app.enforce.scans import upload_scan
from app.enforce.sign import sign_image
from app.enforce.verify import verify_image
from app.oci.refs import ImageRef
from app.policy.engines import EmbeddedOpaEngine, build_engine
from app.policy.input import Entrypoint
from app.policy.replay import replay_decisions
from app.scans.attestation import VULN_PREDICATE_TYPE
from app.services import Services
from app.signing.keys import get_key
from tests.conftest import Cli
from tests.enforce.conftest import recorded_input, trust_new_key
from tests.fixtures.images import push_random_image, push_random_image_sync
from tests.fixtures.registry import RegistryProcess

ADMIN = Principal(name="test", scopes=(Scope.parse("admin"),))
# A Trivy report (schema 2) that names no image digest and has a critical finding.
CRITICAL_REPORT = "trivy/dd_trivy_schema2_image_os_and_jar.json"


def codes(findings: list[Any]) -> set[str]:
    return {f.code for f in findings}


@pytest.fixture
def trusted_key(services: Services, registry: RegistryProcess) -> str:
    """A stored key ``ci`` and an authority trusting it for every image of the registry."""
    trust_new_key(services, scope=f"{registry.host}/**")
    return "ci"


async def signed_image(services: Services, repo: str) -> ImageRef:
    """A fresh image signed with the stored key ``ci`` (see ``trusted_key``)."""
    image, _ = await push_random_image(services.registry, repo)
    await sign_image(services, image=str(image), principal=ADMIN, key_name="ci")
    return image


async def decide_image(
    services: Services, image: str, entrypoint: Entrypoint, *, seconds: float = 10.0
) -> tuple[Outcome, int | None]:
    """One decision through the pipeline, waiting for its record."""
    request = DecisionRequest(image=image, entrypoint=entrypoint, deadline=Deadline(seconds))
    return await decide_and_store(request, services.decisions)


def decisions(services: Services) -> list[Decision]:
    """The recorded decisions, without the sign gate's (signing decides first)."""
    recorder = services.decisions.recorder
    if recorder is not None:
        recorder.close()  # write what is queued
    with session_scope(services.sessions) as session:
        return list(
            session.scalars(
                select(Decision).where(Decision.entrypoint != "sign").order_by(Decision.id)
            )
        )


@pytest.mark.usefixtures("trusted_key")
class TestEvaluateImage:
    async def test_signed_image_without_scan_is_allowed_with_a_warning(
        self, services: Services, unique_repo: Callable[[str], str]
    ) -> None:
        image = await signed_image(services, unique_repo("app"))

        evaluation, decision_id = await decide_image(services, str(image), Entrypoint.push)

        assert evaluation.decision.allow, evaluation.decision
        assert "scan.missing" in codes(evaluation.decision.warn)
        assert evaluation.full_input()["signatures"][0]["authority"] == "ci"
        (recorded,) = decisions(services)
        assert recorded.id == decision_id
        assert recorded.allowed is True
        assert recorded_input(services, recorded) == evaluation.full_input()

    async def test_unsigned_image_is_denied(
        self, services: Services, unique_repo: Callable[[str], str]
    ) -> None:
        image, _ = await push_random_image(services.registry, unique_repo("app"))

        evaluation, _decision_id = await decide_image(services, str(image), Entrypoint.push)

        assert not evaluation.decision.allow
        assert codes(evaluation.decision.deny) & {"signature.no_authority", "signature.missing"}
        assert decisions(services)[0].allowed is False

    async def test_critical_findings_of_an_uploaded_scan_deny(
        self, services: Services, unique_repo: Callable[[str], str], asset: Callable[[str], Path]
    ) -> None:
        image = await signed_image(services, unique_repo("app"))
        await upload_scan(
            services, image=image, report=asset(CRITICAL_REPORT).read_bytes(), uploaded_by="t"
        )

        evaluation, _decision_id = await decide_image(services, str(image), Entrypoint.push)

        assert not evaluation.decision.allow
        assert "vulnerability.severity" in codes(evaluation.decision.deny)
        assert evaluation.full_input()["scan"]["source"] == "authenticated_upload"
        assert evaluation.full_input()["scan"]["counts"]["critical"] > 0

    async def test_a_verified_vulnerability_attestation_is_the_scan(
        self, services: Services, unique_repo: Callable[[str], str], asset: Callable[[str], Path]
    ) -> None:
        image = await signed_image(services, unique_repo("app"))
        await upload_scan(
            services,
            image=image,
            report=asset(CRITICAL_REPORT).read_bytes(),
            uploaded_by="t",
            attest_key="ci",
        )
        # Forget the upload: what remains is the signed attestation in the registry.
        with session_scope(services.sessions) as session:
            session.execute(delete(ScanRecord))

        evaluation, _decision_id = await decide_image(services, str(image), Entrypoint.push)

        assert evaluation.full_input()["scan"]["source"] == "verified_attestation"
        assert "vulnerability.severity" in codes(evaluation.decision.deny)
        # The attestation is not a signature of the image.
        assert len(evaluation.full_input()["signatures"]) == 1

    async def test_a_scan_uploaded_for_another_repository_does_not_count(
        self, services: Services, unique_repo: Callable[[str], str], asset: Callable[[str], Path]
    ) -> None:
        # Mallory may scan only her repository; she copies prod's image there (same
        # digest) and uploads a clean report dated in the future.
        prod = await signed_image(services, unique_repo("prod"))
        copy = ImageRef.parse(unique_repo("mallory")).with_tag("v1")
        manifest = await services.registry.get_manifest(prod)
        for blob in (manifest.config, *manifest.layers):
            data = await services.registry.get_blob(prod, blob.digest)
            await services.registry.push_blob(copy, data, media_type=blob.media_type)
        await services.registry.push_manifest(
            copy, manifest.raw, media_type=manifest.media_type, tag="v1"
        )
        await upload_scan(
            services, image=prod, report=asset(CRITICAL_REPORT).read_bytes(), uploaded_by="ci"
        )
        clean = json.loads(asset("trivy/dd_trivy_schema2_image_no_vuln.json").read_text())
        clean["CreatedAt"] = "2099-01-01T00:00:00Z"
        stored = await upload_scan(
            services, image=copy, report=json.dumps(clean).encode(), uploaded_by="mallory"
        )

        evaluation, _decision_id = await decide_image(services, str(prod), Entrypoint.push)

        assert stored.digest == prod.digest
        assert stored.scanned_at <= dt.datetime.now(dt.UTC)
        assert evaluation.full_input()["scan"]["counts"]["critical"] > 0
        assert "vulnerability.severity" in codes(evaluation.decision.deny)

    async def test_an_attestation_alone_is_not_a_signature(
        self, services: Services, unique_repo: Callable[[str], str], asset: Callable[[str], Path]
    ) -> None:
        # The key signs scans as attestations; that must not make the image "signed".
        image, _ = await push_random_image(services.registry, unique_repo("app"))
        await upload_scan(
            services,
            image=image,
            report=asset(CRITICAL_REPORT).read_bytes(),
            uploaded_by="t",
            attest_key="ci",
        )
        with session_scope(services.sessions) as session:
            public = get_key(session, name="ci").public_key_pem

        report = await verify_image(services, image=str(image), key_pem=public)
        evaluation, _decision_id = await decide_image(services, str(image), Entrypoint.push)

        assert not report.verified
        assert [a.predicate_type for a in report.attestations] == [VULN_PREDICATE_TYPE]
        assert evaluation.full_input().get("signatures", []) == []
        assert "signature.missing" in codes(evaluation.decision.deny)

    async def test_an_unsigned_scan_referrer_is_used_and_flagged(
        self, services: Services, unique_repo: Callable[[str], str], asset: Callable[[str], Path]
    ) -> None:
        image = await signed_image(services, unique_repo("app"))
        await upload_scan(
            services, image=image, report=asset(CRITICAL_REPORT).read_bytes(), uploaded_by="t"
        )
        with session_scope(services.sessions) as session:
            session.execute(delete(ScanRecord))

        evaluation, _decision_id = await decide_image(services, str(image), Entrypoint.push)

        assert evaluation.full_input()["scan"]["source"] == "unsigned_referrer"
        assert "scan.unverified" in codes(evaluation.decision.warn)

    async def test_unreachable_registry_denies_and_is_recorded(self, services: Services) -> None:
        evaluation, _decision_id = await decide_image(
            services, "127.0.0.1:1/nowhere/app:v1", Entrypoint.admission
        )

        assert not evaluation.decision.allow
        assert codes(evaluation.decision.deny) == {"registry.unreachable"}
        assert evaluation.failure == "registry.unreachable"
        (denial,) = evaluation.decision.deny
        assert denial.image == "127.0.0.1:1/nowhere/app:v1" and denial.fix
        assert decisions(services)[0].allowed is False

    async def test_an_engine_that_cannot_decide_denies(
        self, services: Services, unique_repo: Callable[[str], str]
    ) -> None:
        image = await signed_image(services, unique_repo("app"))
        services._policy = EmbeddedOpaEngine()  # no policy loaded: every decision undefined

        evaluation, _decision_id = await decide_image(services, str(image), Entrypoint.push)

        assert not evaluation.decision.allow
        (denial,) = evaluation.decision.deny
        assert denial.code.startswith("policy.")

    async def test_recorded_decisions_replay_unchanged_on_the_same_policy(
        self, services: Services, unique_repo: Callable[[str], str]
    ) -> None:

        await decide_image(
            services, str(await signed_image(services, unique_repo("a"))), Entrypoint.push
        )
        unsigned, _ = await push_random_image(services.registry, unique_repo("b"))
        await decide_image(services, str(unsigned), Entrypoint.push)

        candidate = build_engine(services.settings)
        with session_scope(services.sessions) as session:
            report = replay_decisions(session, engine=candidate, since=dt.timedelta(hours=1))
        assert report.replayed == 3  # the two decisions and the sign gate's
        assert (report.newly_denied, report.newly_allowed) == ([], [])


class TestDecisionsApi:
    def _token(self, services: Services, scopes: list[str]) -> dict[str, str]:
        with session_scope(services.sessions) as session:
            token = create_token(
                session, name=f"t{len(scopes)}{scopes[0][:4]}", scopes=scopes
            ).token
        return {"Authorization": f"Bearer {token}"}

    def test_decision_over_http(
        self,
        services: Services,
        client: TestClient,
        registry: RegistryProcess,
        unique_repo: Callable[[str], str],
    ) -> None:
        unsigned, _ = push_random_image_sync(registry, unique_repo("app").split("/", 1)[1])
        headers = self._token(services, [f"verify:{unsigned.registry}/**"])
        ask = {"image": str(unsigned), "entrypoint": "admission", "namespace": "prod"}
        response = client.post("/v1/decisions", json=ask, headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["decision"]["allow"] is False
        assert "input" not in body  # only when asked: with a large scan it is big
        assert body["policy_revision"] and body["timings_ms"]["total"] > 0
        with_input = client.post("/v1/decisions?include_input=true", json=ask, headers=headers)
        assert with_input.json()["input"]["kubernetes"]["namespace"] == "prod"
        assert next(d.id for d in decisions(services)) == body["decision_id"]

    def test_needs_a_token_in_scope(self, services: Services, client: TestClient) -> None:
        body = {"image": "127.0.0.1:1/team/app:v1"}
        assert client.post("/v1/decisions", json=body).status_code == 401
        other = self._token(services, ["verify:127.0.0.1:1/other/*"])
        response = client.post("/v1/decisions", json=body, headers=other)
        assert response.status_code == 403
        assert decisions(services) == []

    def test_bad_input_is_400(self, services: Services, client: TestClient) -> None:
        headers = self._token(services, ["admin"])
        for body in (
            {"image": "docker.io/UPPER/case"},
            {"image": "foo::bar"},
            {"image": "a/b:v1", "entrypoint": "deploy"},
            {"image": "a/b:v1", "extra": 1},
        ):
            assert client.post("/v1/decisions", json=body, headers=headers).status_code == 400


@pytest.mark.usefixtures("trusted_key")
class TestDecideCli:
    def test_exit_code_follows_the_decision(
        self, sealgate: Cli, registry: RegistryProcess, unique_repo: Callable[[str], str]
    ) -> None:
        signed, _ = push_random_image_sync(registry, unique_repo("app").split("/", 1)[1])
        unsigned, _ = push_random_image_sync(registry, unique_repo("app").split("/", 1)[1])
        assert sealgate("sign", str(signed), "--key", "ci").exit_code == 0

        allowed = sealgate("policy", "decide", str(signed), "--entrypoint", "push")
        denied = sealgate("policy", "decide", str(unsigned), "--entrypoint", "push")

        assert allowed.exit_code == 0, allowed.output
        assert json.loads(allowed.stdout)["decision"]["allow"] is True
        assert denied.exit_code == 1
        assert json.loads(denied.stdout)["decision"]["allow"] is False

    def test_policy_input_is_the_input_decide_uses(
        self,
        sealgate: Cli,
        services: Services,
        registry: RegistryProcess,
        unique_repo: Callable[[str], str],
    ) -> None:
        signed, _ = push_random_image_sync(registry, unique_repo("app").split("/", 1)[1])
        assert sealgate("sign", str(signed), "--key", "ci").exit_code == 0

        printed = sealgate("policy", "input", str(signed), "--entrypoint", "push")
        decided = sealgate("policy", "decide", str(signed), "--entrypoint", "push")

        assert printed.exit_code == 0, printed.output
        (recorded,) = decisions(services)
        shown = json.loads(printed.stdout)
        stored = recorded_input(services, recorded)
        for document in (shown, stored):
            document.pop("evaluated_at")
        assert shown == stored
        assert decided.exit_code == 0


@pytest.mark.usefixtures("trusted_key")
class TestDecisionsAreAudited:
    async def test_each_decision_is_one_audit_record_with_its_stored_input(
        self, services: Services, unique_repo: Callable[[str], str]
    ) -> None:
        from app.audit.inputs import load_input
        from app.audit.verification import verify_chain
        from app.db.models import AuditRecord

        image = await signed_image(services, unique_repo("app"))
        outcome, _ = await decide_image(services, str(image), Entrypoint.push)

        with session_scope(services.sessions) as session:
            (record,) = session.scalars(
                select(AuditRecord).where(AuditRecord.kind == "push.verdict")
            )
            assert record.decision == "allowed"
            assert record.images == [str(image)]
            assert record.policy_revision == outcome.policy_revision
            stored = load_input(session, record.input_hash)
            assert stored is not None and stored["image"]["digest"] == image.digest
            report = verify_chain(session, key=None)
        assert report.problem is None and report.checked >= 2  # the signing and the decision

    async def test_inputs_and_the_findings_of_a_scan_are_stored_once(
        self, services: Services, unique_repo: Callable[[str], str], asset: Callable[[str], Path]
    ) -> None:
        from app.audit.inputs import load_input
        from app.db.models import AuditRecord, StoredInput

        image = await signed_image(services, unique_repo("app"))
        await upload_scan(
            services, image=image, report=asset(CRITICAL_REPORT).read_bytes(), uploaded_by="t"
        )
        # The second push decision is the first one remembered (the same input); the
        # admission decision's input differs, over the same scan.
        entrypoints = (Entrypoint.push, Entrypoint.push, Entrypoint.admission)
        outcomes = [(await decide_image(services, str(image), e))[0] for e in entrypoints]

        rows = decisions(services)
        with session_scope(services.sessions) as session:
            # Each decision's input is a stored input, shared with its audit record...
            named = list(
                session.scalars(
                    select(AuditRecord.input_hash)
                    .where(AuditRecord.kind != "sign.decision", AuditRecord.input_hash.is_not(None))
                    .order_by(AuditRecord.seq)
                )
            )
            assert named == [r.input_hash for r in rows]
            # ...the same input once for both decisions made on it...
            assert rows[0].input_hash == rows[1].input_hash != rows[2].input_hash
            # ...and the one stored copy of the scan's findings named by either input.
            documents = [session.get(StoredInput, name) for name in set(named)]
            findings = {d.findings_hash for d in documents if d is not None}
            assert len(documents) == 2 and len(findings) == 1 and None not in findings
            placeholder = b'"vulnerabilities":{"$findings":"' + next(iter(findings)).encode()
            assert all(d is not None and placeholder in d.body for d in documents)
            # Read back, each is whole: exactly the input the engine decided on.
            for row, outcome in zip(rows, outcomes, strict=True):
                assert load_input(session, row.input_hash) == outcome.full_input()
        assert len(outcomes[0].full_input()["scan"]["vulnerabilities"]) > 0
