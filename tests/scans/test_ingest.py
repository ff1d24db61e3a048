"""Ingesting reports against a real registry and database, and collecting an image's scans."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from app.db.models import ScanRecord
from app.db.session import session_scope
from app.errors import RegistryError, ScanError
from app.oci.refs import ImageRef
from app.scans.ingest import (
    CYCLONEDX_MEDIA_TYPE,
    SCAN_ARTIFACT_TYPE,
    collect_scans,
    ingest_scan,
)
from app.scans.model import ScanSource
from app.services import Services
from tests.fixtures.images import copy_image, push_multiplatform_index, push_random_image
from tests.scans import parts

Asset = Callable[[str], Path]
# A Trivy v2 report that names no image (no ImageID, no RepoDigests): 5 findings.
UNBOUND_TRIVY = "trivy/dd_trivy_schema2_image_os_and_jar.json"


def scan_count(services: Services) -> int:
    with session_scope(services.sessions) as session:
        return session.scalar(select(func.count()).select_from(ScanRecord)) or 0


def trivy_naming(
    asset: Asset, *, image_id: str | None = None, repo_digest: str | None = None
) -> bytes:
    """The unbound Trivy sample, edited to name an image config and/or a repo digest."""
    document: dict[str, Any] = json.loads(asset(UNBOUND_TRIVY).read_bytes())
    if image_id is not None:
        document["Metadata"]["ImageID"] = image_id
    if repo_digest is not None:
        document["Metadata"]["RepoDigests"] = [f"example.com/app@{repo_digest}"]
    return json.dumps(document).encode()


async def scan_referrers(services: Services, pinned: ImageRef) -> list[Any]:
    return [
        d
        for d in await services.registry.list_referrers(pinned)
        if d.artifact_type == SCAN_ARTIFACT_TYPE
    ]


class TestIngest:
    async def test_tag_is_resolved_report_stored_and_attached(
        self, services: Services, unique_repo: Callable[[str], str], asset: Asset
    ) -> None:
        repo = unique_repo("app")
        pinned, _ = await push_random_image(services.registry, repo, tag="v1")
        raw = asset(UNBOUND_TRIVY).read_bytes()

        stored = await ingest_scan(
            **parts(services), image=f"{repo}:v1", report=raw, uploaded_by="ci"
        )

        assert stored.digest == pinned.digest
        assert stored.source is ScanSource.authenticated_upload
        assert stored.counts["critical"] == 1 and stored.counts["medium"] == 3
        assert stored.total == 5
        with session_scope(services.sessions) as session:
            row = session.scalars(select(ScanRecord)).one()
            assert row.raw_report == raw
            assert row.digest == pinned.digest
            assert row.uploaded_by == "ci"
            assert len(row.vulnerabilities) == 5
        (referrer,) = await scan_referrers(services, pinned)
        assert referrer.digest == stored.referrer_digest
        artifact = await services.registry.get_manifest(pinned.with_digest(referrer.digest))
        (layer,) = artifact.layers
        assert layer.media_type == "application/json"
        assert await services.registry.get_blob(pinned, layer.digest) == raw
        assert artifact.subject is not None and artifact.subject.digest == pinned.digest

    async def test_report_naming_the_image_config_is_accepted(
        self, services: Services, unique_repo: Callable[[str], str], asset: Asset
    ) -> None:
        pinned, manifest = await push_random_image(services.registry, unique_repo("app"))
        assert manifest.config is not None
        report = trivy_naming(asset, image_id=manifest.config.digest)
        stored = await ingest_scan(**parts(services), image=pinned, report=report, uploaded_by="ci")
        assert stored.digest == pinned.digest

    async def test_report_naming_the_manifest_digest_is_accepted(
        self, services: Services, unique_repo: Callable[[str], str], asset: Asset
    ) -> None:
        pinned, _ = await push_random_image(services.registry, unique_repo("app"))
        assert pinned.digest is not None
        report = trivy_naming(asset, repo_digest=pinned.digest)
        stored = await ingest_scan(**parts(services), image=pinned, report=report, uploaded_by="ci")
        assert stored.digest == pinned.digest

    async def test_platform_of_an_index_is_accepted(
        self, services: Services, unique_repo: Callable[[str], str], asset: Asset
    ) -> None:
        registry = services.registry
        index_ref, index = await push_multiplatform_index(registry, unique_repo("multi"))
        arm = await registry.get_manifest(index_ref.with_digest(index.manifests[1].digest))
        assert arm.config is not None
        report = trivy_naming(asset, image_id=arm.config.digest)
        stored = await ingest_scan(
            **parts(services), image=index_ref, report=report, uploaded_by="ci"
        )
        assert stored.digest == index.digest

    @pytest.mark.parametrize("claim", ["image_id", "repo_digest"])
    async def test_report_for_another_image_is_refused_and_nothing_stored(
        self,
        services: Services,
        unique_repo: Callable[[str], str],
        asset: Asset,
        claim: str,
    ) -> None:
        pinned, _ = await push_random_image(services.registry, unique_repo("app"))
        other = "sha256:" + "ab" * 32
        report = trivy_naming(asset, **{claim: other})
        with pytest.raises(ScanError) as err:
            await ingest_scan(**parts(services), image=pinned, report=report, uploaded_by="ci")
        assert err.value.code == "scan.wrong_image"
        assert other in err.value.message
        assert scan_count(services) == 0
        assert await scan_referrers(services, pinned) == []

    async def test_a_report_naming_only_a_local_name_is_accepted_with_a_warning(
        self, services: Services, unique_repo: Callable[[str], str], asset: Asset
    ) -> None:
        # The case: ArtifactName and RepoTags "trivy-unittest:latest", no digest.
        pinned, _ = await push_random_image(services.registry, unique_repo("app"))
        report = asset("trivy/dd_trivy_schema2_image_no_vuln.json").read_bytes()
        stored = await ingest_scan(**parts(services), image=pinned, report=report, uploaded_by="ci")
        (warning,) = stored.warnings
        assert "names only 'trivy-unittest:latest' (a tag or a local name" in warning
        with session_scope(services.sessions) as session:
            row = session.scalars(select(ScanRecord)).one()
            assert row.summary["warnings"] == [warning]
            assert row.summary["image_names"] == ["trivy-unittest:latest"]

    async def test_a_report_naming_another_repository_is_refused(
        self, services: Services, unique_repo: Callable[[str], str], asset: Asset
    ) -> None:
        pinned, _ = await push_random_image(services.registry, unique_repo("app"))
        other = f"{ImageRef.parse(unique_repo('other')).name}:v1"
        document = json.loads(asset(UNBOUND_TRIVY).read_bytes())
        document["Metadata"]["RepoTags"] = [other]
        with pytest.raises(ScanError) as err:
            await ingest_scan(
                **parts(services),
                image=pinned,
                report=json.dumps(document).encode(),
                uploaded_by="ci",
            )
        assert err.value.code == "scan.wrong_image"
        assert repr(other) in err.value.message
        assert scan_count(services) == 0
        assert await scan_referrers(services, pinned) == []

    async def test_a_report_naming_the_images_repository_has_no_subject_warning(
        self, services: Services, unique_repo: Callable[[str], str], asset: Asset
    ) -> None:
        repo = unique_repo("app")
        pinned, _ = await push_random_image(services.registry, repo, tag="v1")
        document = json.loads(asset("trivy/dd_trivy_schema2_image_no_vuln.json").read_bytes())
        document["Metadata"]["RepoTags"] = [f"{repo}:v1"]
        stored = await ingest_scan(
            **parts(services), image=pinned, report=json.dumps(document).encode(), uploaded_by="ci"
        )
        assert stored.warnings == ()

    async def test_real_grype_report_for_busybox_is_refused(
        self, services: Services, unique_repo: Callable[[str], str], asset: Asset
    ) -> None:
        pinned, _ = await push_random_image(services.registry, unique_repo("app"))
        report = asset("grype/dd_grype_0.94_busybox_epss_risk.json").read_bytes()
        with pytest.raises(ScanError, match="config digest") as err:
            await ingest_scan(**parts(services), image=pinned, report=report, uploaded_by="ci")
        assert err.value.code == "scan.wrong_image"
        assert scan_count(services) == 0

    @pytest.mark.parametrize(
        ("report", "code"),
        [(b"{not json", "scan.malformed"), (b'{"hello": 1}', "scan.unknown_format")],
    )
    async def test_bad_report_stores_nothing(
        self,
        services: Services,
        unique_repo: Callable[[str], str],
        report: bytes,
        code: str,
    ) -> None:
        pinned, _ = await push_random_image(services.registry, unique_repo("app"))
        with pytest.raises(ScanError) as err:
            await ingest_scan(**parts(services), image=pinned, report=report, uploaded_by="ci")
        assert err.value.code == code
        assert scan_count(services) == 0
        assert await scan_referrers(services, pinned) == []

    async def test_missing_image_stores_nothing(
        self, services: Services, unique_repo: Callable[[str], str], asset: Asset
    ) -> None:
        with pytest.raises(RegistryError) as err:
            await ingest_scan(
                **parts(services),
                image=f"{unique_repo('none')}:v1",
                report=asset(UNBOUND_TRIVY).read_bytes(),
                uploaded_by="ci",
            )
        assert err.value.code == "registry.not_found"
        assert scan_count(services) == 0

    async def test_attestation_hook_is_called_with_the_pinned_image(
        self, services: Services, unique_repo: Callable[[str], str], asset: Asset
    ) -> None:
        pinned, _ = await push_random_image(services.registry, unique_repo("app"))
        calls: list[tuple[ImageRef, int, bytes]] = []

        async def fake_attester(image: ImageRef, report: Any, raw: bytes) -> str:
            calls.append((image, len(report.vulnerabilities), raw))
            return "sha256:" + "cd" * 32

        raw = asset(UNBOUND_TRIVY).read_bytes()
        stored = await ingest_scan(
            **parts(services), image=pinned, report=raw, uploaded_by="ci", attest=fake_attester
        )
        assert calls == [(pinned, 5, raw)]
        assert stored.attestation_digest == "sha256:" + "cd" * 32


class TestCollect:
    async def test_uploads_and_unsigned_referrers(
        self, services: Services, unique_repo: Callable[[str], str], asset: Asset
    ) -> None:
        registry = services.registry
        pinned, _ = await push_random_image(registry, unique_repo("app"))
        await ingest_scan(
            **parts(services),
            image=pinned,
            report=asset(UNBOUND_TRIVY).read_bytes(),
            uploaded_by="ci",
        )
        # Another tool attaches a CycloneDX report (its own artifact type), and a broken one.
        cdx = asset("cyclonedx/trivy_npm_cdx1.7_with_vulnerabilities.json").read_bytes()
        await registry.push_referrer(
            pinned,
            artifact_type=CYCLONEDX_MEDIA_TYPE,
            layers=[(cdx, CYCLONEDX_MEDIA_TYPE, {})],
            annotations={},
        )
        await registry.push_referrer(
            pinned,
            artifact_type=CYCLONEDX_MEDIA_TYPE,
            layers=[(b"{broken", CYCLONEDX_MEDIA_TYPE, {})],
            annotations={},
        )

        scans = await collect_scans(**parts(services), image=pinned)

        assert [s.source for s in scans] == [
            ScanSource.authenticated_upload,
            ScanSource.unsigned_referrer,
        ]
        uploaded, found = scans
        assert uploaded.uploaded_by == "ci"
        assert uploaded.report.counts == {
            "critical": 1,
            "high": 1,
            "medium": 3,
            "low": 0,
            "negligible": 0,
            "unknown": 0,
        }
        assert found.report.format.value == "cyclonedx"
        assert found.report.counts["medium"] == 1
        assert found.uploaded_by is None

    async def test_referrer_naming_another_image_is_skipped(
        self, services: Services, unique_repo: Callable[[str], str], asset: Asset
    ) -> None:
        registry = services.registry
        pinned, _ = await push_random_image(registry, unique_repo("app"))
        wrong = trivy_naming(asset, image_id="sha256:" + "ef" * 32)
        await registry.push_referrer(
            pinned,
            artifact_type=SCAN_ARTIFACT_TYPE,
            layers=[(wrong, "application/json", {})],
            annotations={},
        )
        assert await collect_scans(**parts(services), image=pinned) == []

    async def test_upload_for_another_repository_of_the_same_digest_is_not_listed(
        self, services: Services, unique_repo: Callable[[str], str], asset: Asset
    ) -> None:
        """Fails if the ``ScanRecord.name == ref.name`` filter in app/scans/ingest.py
        (``collect_scans``) is removed: whoever may upload to repository A would then
        show as an authenticated upload for the same bytes in repository B."""
        registry = services.registry
        in_a, _ = await push_random_image(registry, unique_repo("a"))
        in_b = await copy_image(registry, in_a, unique_repo("b"))
        assert in_b.digest == in_a.digest
        await ingest_scan(
            **parts(services),
            image=in_a,
            report=asset(UNBOUND_TRIVY).read_bytes(),
            uploaded_by="a-ci",
        )

        assert await collect_scans(**parts(services), image=in_b) == []
        [own] = await collect_scans(**parts(services), image=in_a)
        assert own.source is ScanSource.authenticated_upload
        assert own.uploaded_by == "a-ci"
