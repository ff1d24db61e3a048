"""Scans signed as in-toto vulnerability attestations, checked with Sealgate's verifier."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import func, select

from app.db.models import ScanRecord
from app.db.session import session_scope
from app.errors import NotFoundError, ScanError, SigningError, VerificationError
from app.oci.media import SIGSTORE_BUNDLE_V03
from app.scans.attestation import (
    VULN_PREDICATE_TYPE,
    key_scan_attester,
    report_from_vuln_predicate,
)
from app.scans.ingest import SCAN_ARTIFACT_TYPE, ingest_scan
from app.services import Services
from app.signing.keys import KeyInfo, generate_key
from app.signing.payloads import parse_statement
from app.signing.signers import Algorithm
from app.verify.bundle import parse_bundle, verify_key_bundle
from app.verify.trusted_keys import TrustedKey
from tests.fixtures.images import push_random_image
from tests.scans import parts

Asset = Callable[[str], Path]
REPORT = "trivy/dd_trivy_schema2_image_os_and_jar.json"


def stored_key(
    services: Services, name: str = "scans", scopes: tuple[str, ...] = ("**",)
) -> KeyInfo:
    with session_scope(services.sessions) as session:
        return generate_key(
            session,
            settings=services.settings,
            name=name,
            algorithm=Algorithm.ecdsa_p256,
            scopes=list(scopes),
        )


class TestVulnAttestation:
    async def test_scan_is_signed_and_verifies(
        self, services: Services, unique_repo: Callable[[str], str], asset: Asset
    ) -> None:
        registry = services.registry
        pinned, _ = await push_random_image(registry, unique_repo("app"))
        assert pinned.digest is not None
        key = stored_key(services)
        raw = asset(REPORT).read_bytes()

        stored = await ingest_scan(
            **parts(services),
            image=pinned,
            report=raw,
            uploaded_by="ci",
            attest=key_scan_attester(
                key_name="scans", **parts(services), settings=services.settings
            ),
        )

        bundles = [
            d
            for d in await registry.list_referrers(pinned)
            if d.artifact_type == SIGSTORE_BUNDLE_V03
        ]
        assert [d.digest for d in bundles] == [stored.attestation_digest]
        artifact = await registry.get_manifest(pinned.with_digest(bundles[0].digest))
        bundle = parse_bundle(await registry.get_blob(pinned, artifact.layers[0].digest))
        verified = verify_key_bundle(
            bundle, keys=(TrustedKey.from_pem(key.public_key_pem),), expected_digest=pinned.digest
        )
        assert verified.predicate_type == VULN_PREDICATE_TYPE
        assert bundle.dsse is not None
        assert parse_statement(bundle.dsse.payload).names_digest(pinned.digest)
        payload = json.loads(bundle.dsse.payload)
        assert payload["predicate"]["scanner"]["result"] == json.loads(raw)
        assert report_from_vuln_predicate(payload["predicate"]).counts == stored.counts

    @pytest.mark.parametrize("predicate", [None, {}, {"scanner": {}}, {"scanner": {"result": 5}}])
    def test_predicate_without_a_report_is_refused(self, predicate: object) -> None:
        with pytest.raises(ScanError):
            report_from_vuln_predicate(predicate)

    async def test_another_key_does_not_verify(
        self, services: Services, unique_repo: Callable[[str], str], asset: Asset
    ) -> None:
        registry = services.registry
        pinned, _ = await push_random_image(registry, unique_repo("app"))
        assert pinned.digest is not None
        stored_key(services, "scans")
        stranger = stored_key(services, "stranger")
        stored = await ingest_scan(
            **parts(services),
            image=pinned,
            report=asset(REPORT).read_bytes(),
            uploaded_by="ci",
            attest=key_scan_attester(
                key_name="scans", **parts(services), settings=services.settings
            ),
        )
        assert stored.attestation_digest is not None
        artifact = await registry.get_manifest(pinned.with_digest(stored.attestation_digest))
        bundle = parse_bundle(await registry.get_blob(pinned, artifact.layers[0].digest))
        with pytest.raises(VerificationError):
            verify_key_bundle(
                bundle,
                keys=(TrustedKey.from_pem(stranger.public_key_pem),),
                expected_digest=pinned.digest,
            )

    async def test_unknown_key_stops_ingestion_before_anything_is_pushed(
        self, services: Services, unique_repo: Callable[[str], str], asset: Asset
    ) -> None:
        registry = services.registry
        pinned, _ = await push_random_image(registry, unique_repo("app"))
        with pytest.raises(NotFoundError):
            await ingest_scan(
                **parts(services),
                image=pinned,
                report=asset(REPORT).read_bytes(),
                uploaded_by="ci",
                attest=key_scan_attester(
                    key_name="missing", **parts(services), settings=services.settings
                ),
            )
        with session_scope(services.sessions) as session:
            assert session.scalar(select(func.count()).select_from(ScanRecord)) == 0
        kinds = {d.artifact_type for d in await registry.list_referrers(pinned)}
        assert SCAN_ARTIFACT_TYPE not in kinds and SIGSTORE_BUNDLE_V03 not in kinds

    async def test_a_key_scoped_elsewhere_does_not_attest_and_nothing_is_stored(
        self, services: Services, unique_repo: Callable[[str], str], asset: Asset
    ) -> None:
        registry = services.registry
        pinned, _ = await push_random_image(registry, unique_repo("app"))
        stored_key(services, scopes=(f"{pinned.registry}/elsewhere/*",))
        with pytest.raises(SigningError) as e:
            await ingest_scan(
                **parts(services),
                image=pinned,
                report=asset(REPORT).read_bytes(),
                uploaded_by="ci",
                attest=key_scan_attester(
                    key_name="scans", **parts(services), settings=services.settings
                ),
            )
        assert e.value.code == "signing.key_out_of_scope"
        with session_scope(services.sessions) as session:
            assert session.scalar(select(func.count()).select_from(ScanRecord)) == 0
        kinds = {d.artifact_type for d in await registry.list_referrers(pinned)}
        assert SCAN_ARTIFACT_TYPE not in kinds and SIGSTORE_BUNDLE_V03 not in kinds
