"""``POST /v1/scans`` and ``GET /v1/scans`` on the real app, registry and database."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.auth.tokens import create_token
from app.config import Settings
from app.db.models import ScanRecord
from app.db.session import session_scope
from app.enforce.verify import VerificationReport, verify_image
from app.limits import MAX_BODY_BYTES
from app.main import create_app
from app.scans.attestation import VULN_PREDICATE_TYPE
from app.services import Services
from app.signing.keys import generate_key
from app.signing.signers import Algorithm
from tests.fixtures.images import push_random_image_sync
from tests.fixtures.registry import RegistryProcess

Asset = Callable[[str], Path]
UNBOUND_TRIVY = "trivy/dd_trivy_schema2_image_os_and_jar.json"


def bearer(services: Services, *scopes: str, name: str = "ci") -> dict[str, str]:
    with session_scope(services.sessions) as session:
        issued = create_token(session, name=name, scopes=list(scopes))
    return {"Authorization": f"Bearer {issued.token}"}


def services_of(client: TestClient) -> Services:
    services: Services = client.app.state.services  # type: ignore[attr-defined]
    return services


def scan_count(services: Services) -> int:
    with session_scope(services.sessions) as session:
        return session.scalar(select(func.count()).select_from(ScanRecord)) or 0


@pytest.fixture
def image(registry: RegistryProcess) -> str:
    """A freshly pushed image in its own repository, by tag."""
    repository = f"scans{id(object()):x}/app"
    push_random_image_sync(registry, repository, tag="v1")
    return f"{registry.host}/{repository}:v1"


def repository_glob(image: str) -> str:
    return image.rsplit(":", 1)[0]


class TestUpload:
    def test_upload_with_scoped_token(
        self, scan_client: TestClient, image: str, asset: Asset
    ) -> None:
        headers = bearer(services_of(scan_client), f"scan:{repository_glob(image)}")
        response = scan_client.post(
            "/v1/scans",
            params={"image": image},
            content=asset(UNBOUND_TRIVY).read_bytes(),
            headers={**headers, "Content-Type": "application/json"},
        )
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["source"] == "authenticated_upload"
        assert body["uploaded_by"] == "ci"
        assert body["counts"]["critical"] == 1
        assert body["digest"].startswith("sha256:")
        assert scan_count(services_of(scan_client)) == 1

        listed = scan_client.get("/v1/scans", params={"image": image}, headers=headers)
        assert listed.status_code == 200
        assert [s["source"] for s in listed.json()] == ["authenticated_upload"]

    def test_a_local_name_only_is_accepted_with_the_warning_in_the_answer(
        self, scan_client: TestClient, image: str, asset: Asset
    ) -> None:
        headers = bearer(services_of(scan_client), f"scan:{repository_glob(image)}")
        response = scan_client.post(
            "/v1/scans",
            params={"image": image},
            content=asset("trivy/dd_trivy_schema2_image_no_vuln.json").read_bytes(),
            headers={**headers, "Content-Type": "application/json"},
        )
        assert response.status_code == 201, response.text
        (warning,) = response.json()["warnings"]
        assert "names only 'trivy-unittest:latest'" in warning

    def test_no_token_is_401(self, scan_client: TestClient, image: str) -> None:
        response = scan_client.post("/v1/scans", params={"image": image}, content=b"null")
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "auth.unauthenticated"
        assert scan_count(services_of(scan_client)) == 0

    @pytest.mark.parametrize("scope", ["scan:127.0.0.1:1/other/*", "sign:{repo}", "verify:{repo}"])
    def test_token_without_scan_scope_for_the_image_is_403(
        self, scan_client: TestClient, image: str, asset: Asset, scope: str
    ) -> None:
        headers = bearer(services_of(scan_client), scope.format(repo=repository_glob(image)))
        response = scan_client.post(
            "/v1/scans",
            params={"image": image},
            content=asset(UNBOUND_TRIVY).read_bytes(),
            headers=headers,
        )
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "auth.out_of_scope"
        assert scan_count(services_of(scan_client)) == 0

    @pytest.mark.parametrize(
        ("params", "content", "status", "code"),
        [
            ({}, b"{not json", 400, "scan.malformed"),
            ({}, b'{"kind": "AdmissionReview"}', 400, "scan.unknown_format"),
            ({"format": "clair"}, b"null", 400, "scan.unknown_format"),
            ({"format": "grype"}, b'{"SchemaVersion": 2}', 400, "scan.malformed"),
            (
                {},
                json.dumps(
                    {
                        "SchemaVersion": 2,
                        "Metadata": {"ImageID": "sha256:" + "ab" * 32},
                        "Results": [],
                    }
                ).encode(),
                422,
                "scan.wrong_image",
            ),
        ],
    )
    def test_bad_reports_are_4xx_and_store_nothing(
        self,
        scan_client: TestClient,
        image: str,
        params: dict[str, str],
        content: bytes,
        status: int,
        code: str,
    ) -> None:
        headers = bearer(services_of(scan_client), f"scan:{repository_glob(image)}")
        response = scan_client.post(
            "/v1/scans", params={"image": image, **params}, content=content, headers=headers
        )
        assert response.status_code == status, response.text
        error = response.json()["error"]
        assert error["code"] == code
        assert "Traceback" not in error["message"]
        if code == "scan.unknown_format":
            assert "trivy, grype, sarif, cyclonedx" in error["message"]
        assert scan_count(services_of(scan_client)) == 0

    def test_bad_image_reference_is_400(self, scan_client: TestClient) -> None:
        headers = bearer(services_of(scan_client), "scan:**")
        response = scan_client.post(
            "/v1/scans", params={"image": "Not::Valid"}, content=b"null", headers=headers
        )
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "input.invalid_reference"

    def test_missing_image_parameter_is_400(self, scan_client: TestClient) -> None:
        headers = bearer(services_of(scan_client), "scan:**")
        response = scan_client.post("/v1/scans", content=b"null", headers=headers)
        assert response.status_code == 400
        assert "image" in response.json()["error"]["message"]

    def test_oversized_body_is_413_and_stores_nothing(
        self, scan_client: TestClient, image: str
    ) -> None:
        headers = bearer(services_of(scan_client), f"scan:{repository_glob(image)}")
        body = b'{"SchemaVersion": 2, "pad": "' + b"x" * MAX_BODY_BYTES + b'"}'
        response = scan_client.post(
            "/v1/scans", params={"image": image}, content=body, headers=headers
        )
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "input.too_large"
        assert scan_count(services_of(scan_client)) == 0

    def test_openapi_documents_the_raw_report_body(self, scan_client: TestClient) -> None:
        operation = scan_client.get("/openapi.json").json()["paths"]["/v1/scans"]["post"]
        assert operation["requestBody"]["required"] is True
        assert "application/json" in operation["requestBody"]["content"]
        assert {p["name"] for p in operation["parameters"]} == {"image", "format"}


def upload_as_ci(client: TestClient, image: str, asset: Asset) -> Services:
    """Upload the unbound Trivy sample for ``image`` with a ``scan:`` token named ci."""
    services = services_of(client)
    response = client.post(
        "/v1/scans",
        params={"image": image},
        content=asset(UNBOUND_TRIVY).read_bytes(),
        headers=bearer(services, f"scan:{repository_glob(image)}"),
    )
    assert response.status_code == 201, response.text
    return services


class TestListingAuthorization:
    """``GET /v1/scans`` needs ``scan:`` or ``verify:`` on the image."""

    @pytest.mark.parametrize("scope", ["sign:{repo}", "scan:127.0.0.1:1/other/*", "verify:x/y"])
    def test_token_with_neither_scan_nor_verify_on_the_image_is_403(
        self, scan_client: TestClient, image: str, asset: Asset, scope: str
    ) -> None:
        """Fails if ``principal.authorize("verify", ref.name)`` in app/api/scans.py
        (``list_scans``) is removed: any token could then read any image's scans."""
        services = upload_as_ci(scan_client, image, asset)
        headers = bearer(services, scope.format(repo=repository_glob(image)), name="other")

        listed = scan_client.get("/v1/scans", params={"image": image}, headers=headers)

        assert listed.status_code == 403, listed.text
        assert listed.json()["error"]["code"] == "auth.out_of_scope"

    def test_verify_only_token_lists(
        self, scan_client: TestClient, image: str, asset: Asset
    ) -> None:
        services = upload_as_ci(scan_client, image, asset)
        headers = bearer(services, f"verify:{repository_glob(image)}", name="admission")

        listed = scan_client.get("/v1/scans", params={"image": image}, headers=headers)

        assert listed.status_code == 200, listed.text
        assert [s["uploaded_by"] for s in listed.json()] == ["ci"]


class TestConfiguredAttestationKey:
    def test_uploads_are_signed_with_the_configured_key(
        self,
        settings: Settings,
        clean_database: Any,
        image: str,
        asset: Asset,
    ) -> None:
        signing = settings.model_copy(update={"scan_attestation_key": "scans"})
        with TestClient(create_app(signing)) as client:
            services = services_of(client)
            with session_scope(services.sessions) as session:
                key = generate_key(
                    session,
                    settings=signing,
                    name="scans",
                    algorithm=Algorithm.ecdsa_p256,
                    scopes=["**"],
                )
            headers = bearer(services, f"scan:{repository_glob(image)}")
            response = client.post(
                "/v1/scans",
                params={"image": image},
                content=asset(UNBOUND_TRIVY).read_bytes(),
                headers=headers,
            )
        assert response.status_code == 201, response.text
        attestation = response.json()["attestation_digest"]
        assert attestation and attestation.startswith("sha256:")

        async def _verify() -> VerificationReport:
            checking = Services.from_settings(signing)
            try:
                return await verify_image(checking, image=image, key_pem=key.public_key_pem)
            finally:
                await checking.aclose()

        report = asyncio.run(_verify())
        predicates = {a.predicate_type for a in report.attestations}
        assert VULN_PREDICATE_TYPE in predicates

    def test_an_unknown_configured_key_stores_nothing(
        self, settings: Settings, clean_database: Any, image: str, asset: Asset
    ) -> None:
        signing = settings.model_copy(update={"scan_attestation_key": "missing"})
        with TestClient(create_app(signing)) as client:
            headers = bearer(services_of(client), f"scan:{repository_glob(image)}")
            response = client.post(
                "/v1/scans",
                params={"image": image},
                content=asset(UNBOUND_TRIVY).read_bytes(),
                headers=headers,
            )
            assert response.status_code == 404
            assert scan_count(services_of(client)) == 0


def trivy_report_with(asset: Asset, findings: int) -> bytes:
    """The unbound Trivy sample with ``findings`` distinct findings (copies of its first)."""
    report = json.loads(asset(UNBOUND_TRIVY).read_text())
    template = report["Results"][0]["Vulnerabilities"][0]
    report["Results"] = [
        {
            **report["Results"][0],
            "Vulnerabilities": [
                {**template, "VulnerabilityID": f"CVE-2099-{n:05d}"} for n in range(findings)
            ],
        }
    ]
    return json.dumps(report).encode()


class TestFindingsCap:
    CAP = 50

    @pytest.fixture
    def capped_client(self, settings: Settings, clean_database: Any) -> Iterator[TestClient]:
        capped = settings.model_copy(update={"max_scan_findings": self.CAP})
        with TestClient(create_app(capped)) as client:
            yield client

    def test_a_report_over_the_cap_is_413_naming_it_and_stores_nothing(
        self, capped_client: TestClient, image: str, asset: Asset
    ) -> None:
        headers = {
            **bearer(services_of(capped_client), f"scan:{repository_glob(image)}"),
            "Content-Type": "application/json",
        }
        response = capped_client.post(
            "/v1/scans",
            params={"image": image},
            content=trivy_report_with(asset, self.CAP + 1),
            headers=headers,
        )
        assert response.status_code == 413, response.text
        error = response.json()["error"]
        assert error["code"] == "scan.too_large"
        assert f"{self.CAP + 1} findings" in error["message"]
        assert f"limit of {self.CAP}" in error["message"]
        assert "SEALGATE_MAX_SCAN_FINDINGS" in error["message"]
        assert scan_count(services_of(capped_client)) == 0

        at_cap = capped_client.post(
            "/v1/scans",
            params={"image": image},
            content=trivy_report_with(asset, self.CAP),
            headers=headers,
        )
        assert at_cap.status_code == 201, at_cap.text
        assert at_cap.json()["total"] == self.CAP

    def test_the_default_cap_is_ten_thousand(self) -> None:
        assert Settings().max_scan_findings == 10_000
