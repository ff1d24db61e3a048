"""The sign gate: the policy's ``sign`` entry point decides before anything is signed.

A critical finding in the image's uploaded scan makes the default library deny signing:
the answer is a 403 with the reasons and nothing is written to the registry; an admin's
``force`` signs anyway and the result and records say so; a non-admin cannot force.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.auth.scopes import Scope
from app.auth.tokens import Principal, create_token
from app.db.models import Decision, SignatureRecord
from app.db.session import session_scope
from app.enforce.scans import upload_scan
from app.enforce.sign import sign_image
from app.errors import ForbiddenError
from app.oci.refs import ImageRef
from app.services import Services
from app.signing.keys import generate_key
from app.signing.signers import Algorithm
from tests.fixtures.images import push_random_image

ADMIN = Principal(name="admin", scopes=(Scope.parse("admin"),))
CRITICAL_REPORT = "trivy/dd_trivy_schema2_image_os_and_jar.json"


@pytest.fixture
def key(services: Services) -> str:
    with session_scope(services.sessions) as session:
        generate_key(
            session,
            settings=services.settings,
            name="ci",
            algorithm=Algorithm.ecdsa_p256,
            scopes=["**"],
        )
    return "ci"


async def vulnerable_image(services: Services, repo: str, asset: Callable[[str], Path]) -> ImageRef:
    image, _ = await push_random_image(services.registry, repo)
    report = asset(CRITICAL_REPORT).read_bytes()
    await upload_scan(services, image=image, report=report, uploaded_by="t")
    return image


async def referrer_count(services: Services, image: ImageRef) -> int:
    return len(await services.registry.list_referrers(image))


def records(services: Services) -> list[SignatureRecord]:
    with session_scope(services.sessions) as session:
        return list(session.scalars(select(SignatureRecord)))


@pytest.mark.usefixtures("key")
class TestSignGate:
    async def test_a_denied_image_is_not_signed_and_nothing_is_written(
        self, services: Services, unique_repo: Callable[[str], str], asset: Callable[[str], Path]
    ) -> None:
        image = await vulnerable_image(services, unique_repo("app"), asset)
        before = await referrer_count(services, image)

        with pytest.raises(ForbiddenError) as refused:
            await sign_image(services, image=str(image), principal=ADMIN, key_name="ci")

        assert refused.value.code == "signing.denied_by_policy"
        assert "vulnerability.severity" in refused.value.message
        assert refused.value.details["denials"]
        assert await referrer_count(services, image) == before  # the scan referrer only
        assert records(services) == []
        services.decisions.recorder.close()  # type: ignore[union-attr]  (flush the batch)
        with session_scope(services.sessions) as session:
            (gate,) = session.scalars(select(Decision).where(Decision.entrypoint == "sign"))
            assert gate.allowed is False

    async def test_an_admin_can_force_and_it_says_so(
        self, services: Services, unique_repo: Callable[[str], str], asset: Callable[[str], Path]
    ) -> None:
        image = await vulnerable_image(services, unique_repo("app"), asset)

        result = await sign_image(
            services, image=str(image), principal=ADMIN, key_name="ci", force=True
        )

        assert result.forced is True
        assert result.gate_decision_allowed is False
        assert "vulnerability.severity" in result.gate_denials
        assert len(records(services)) == 1

    async def test_only_admins_can_force(
        self, services: Services, unique_repo: Callable[[str], str], asset: Callable[[str], Path]
    ) -> None:
        image = await vulnerable_image(services, unique_repo("app"), asset)
        ci = Principal(name="ci", scopes=(Scope.parse(f"sign:{image.name}"),))

        with pytest.raises(ForbiddenError) as refused:
            await sign_image(services, image=str(image), principal=ci, key_name="ci", force=True)

        assert refused.value.code == "auth.not_admin"
        assert records(services) == []

    async def test_a_clean_image_signs_and_is_not_forced(
        self, services: Services, unique_repo: Callable[[str], str]
    ) -> None:
        image, _ = await push_random_image(services.registry, unique_repo("app"))
        result = await sign_image(services, image=str(image), principal=ADMIN, key_name="ci")
        assert result.gate_decision_allowed is True and result.forced is False

    async def test_a_decision_right_after_signing_sees_the_signature(
        self, services: Services, unique_repo: Callable[[str], str], registry: object
    ) -> None:
        """The gate caches the image's (unsigned) evidence; signing must drop it."""
        from app.enforce.deadline import Deadline
        from app.enforce.outcome import DecisionRequest
        from app.enforce.pipeline import decide
        from app.policy.input import Entrypoint
        from app.signing.keys import get_key
        from app.verify.trust import key_authority, save_authority

        with session_scope(services.sessions) as session:
            public = get_key(session, name="ci").public_key_pem
            save_authority(session, key_authority(name="ci", keys=[public], scopes=["**"]))
        services.decisions.context.refresh()
        image, _ = await push_random_image(services.registry, unique_repo("app"))
        request = DecisionRequest(
            image=str(image), entrypoint=Entrypoint.push, deadline=Deadline(10)
        )
        assert not (await decide(request, services.decisions)).allowed

        await sign_image(services, image=str(image), principal=ADMIN, key_name="ci")

        assert (await decide(request, services.decisions)).allowed


class TestSignGateOverHttp:
    async def test_a_denial_is_a_403_with_the_reasons(
        self,
        services: Services,
        client: TestClient,
        key: str,
        unique_repo: Callable[[str], str],
        asset: Callable[[str], Path],
    ) -> None:
        image = await vulnerable_image(services, unique_repo("app"), asset)
        await services.close_registry()
        with session_scope(services.sessions) as session:
            token = create_token(session, name="ci", scopes=[f"sign:{image.name}"]).token

        response = client.post(
            "/v1/signatures",
            json={"image": str(image), "key": key},
            headers={"Authorization": f"Bearer {token}"},
        )

        assert response.status_code == 403
        error = response.json()["error"]
        assert error["code"] == "signing.denied_by_policy"
        assert error["details"]["denials"][0]["code"].startswith("vulnerability.")
        assert records(services) == []
