"""The scan flows: upload a report for an image, list an image's scans.

``upload_scan`` is what ``POST /v1/scans`` and ``sealgate scan upload`` both call: it ingests
the report (``app.scans.ingest.ingest_scan``) with the process's registry client and
database, signs it first when a key is named (``attest_key``, else
``SEALGATE_SCAN_ATTESTATION_KEY``; ``app.scans.attestation``), and tells this replica's
decision context about the new scan. ``image_scans`` is what ``GET /v1/scans`` and
``sealgate scan list`` call.
"""

from __future__ import annotations

from app.oci.refs import ImageRef
from app.scans.attestation import configured_attester
from app.scans.detect import AUTO
from app.scans.ingest import CollectedScan, StoredScan, collect_scans, ingest_scan
from app.services import Services


async def upload_scan(
    services: Services,
    *,
    image: str | ImageRef,
    report: bytes,
    uploaded_by: str,
    format: str = AUTO,
    attest_key: str | None = None,
) -> StoredScan:
    """Ingest ``report`` for ``image`` as ``uploaded_by``; raises what ``ingest_scan`` and
    the attester raise (nothing is stored then)."""
    attest = configured_attester(
        registry=services.registry,
        sessions=services.sessions,
        settings=services.settings,
        key_name=attest_key,
    )
    return await ingest_scan(
        registry=services.registry,
        sessions=services.sessions,
        image=image,
        report=report,
        format=format,
        uploaded_by=uploaded_by,
        attest=attest,
        max_findings=services.settings.max_scan_findings,
        forget_scans=services.decisions.context.forget_scans,
    )


async def image_scans(services: Services, image: str | ImageRef) -> list[CollectedScan]:
    """Every scan of ``image``, newest first (``collect_scans``)."""
    return await collect_scans(
        registry=services.registry,
        sessions=services.sessions,
        image=image,
        max_findings=services.settings.max_scan_findings,
    )
