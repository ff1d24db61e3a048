"""``/v1/scans``: upload a vulnerability report for an image, and list an image's scans.

The upload body is the scanner's report itself, byte for byte (Trivy or Grype JSON,
SARIF 2.1.0 or CycloneDX JSON), with the image and format as query parameters: the raw
bytes are what is kept and attached to the image, so they are never re-serialised.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from app.api.auth import PrincipalDep
from app.api.deps import ServicesDep
from app.enforce import scans as scan_flows
from app.limits import MAX_REPORT_BYTES
from app.oci.refs import ImageRef
from app.scans.detect import AUTO, SUPPORTED_FORMATS
from app.scans.ingest import CollectedScan, StoredScan

router = APIRouter(prefix="/v1/scans", tags=["scans"])

ImageQuery = Annotated[
    str,
    Query(
        description="The scanned image: REGISTRY/REPOSITORY[:TAG][@DIGEST]; a tag is "
        "resolved to its digest in the registry.",
        examples=["registry.example.com/team/app:1.4"],
    ),
]

_REPORT_BODY = {
    "requestBody": {
        "required": True,
        "description": f"The report exactly as the scanner wrote it ({SUPPORTED_FORMATS}), "
        f"at most {MAX_REPORT_BYTES} bytes after the service's request-size limit.",
        "content": {"application/json": {"schema": {"type": ["object", "array", "null"]}}},
    }
}


@router.post(
    "",
    status_code=201,
    summary="Upload a vulnerability report for an image",
    description="Needs a token with scope `scan:REGISTRY/REPOSITORY` (globs allowed). The "
    "report is checked against the image (400 malformed or unknown format, 413 too large, "
    "422 for another image), attached to the image as an OCI referrer (and signed as a cosign "
    "vulnerability attestation when SEALGATE_SCAN_ATTESTATION_KEY names a stored key) and "
    "stored; on any error nothing is stored.",
    openapi_extra=_REPORT_BODY,
)
async def upload_scan(
    request: Request,
    services: ServicesDep,
    principal: PrincipalDep,
    image: ImageQuery,
    format: Annotated[
        str, Query(description=f"The report's format: {AUTO} (detected), {SUPPORTED_FORMATS}.")
    ] = AUTO,
) -> StoredScan:
    ref = ImageRef.parse(image)
    principal.authorize("scan", ref.name)
    report = await request.body()
    return await scan_flows.upload_scan(
        services, image=ref, report=report, format=format, uploaded_by=principal.name
    )


@router.get(
    "",
    summary="List the scans of an image",
    description="Uploaded scans (source `authenticated_upload`) and scan reports found as "
    "referrers in the registry (source `unsigned_referrer`), newest first. Needs a token "
    "with scope `scan:` or `verify:` on the image.",
)
async def list_scans(
    services: ServicesDep, principal: PrincipalDep, image: ImageQuery
) -> list[CollectedScan]:
    ref = ImageRef.parse(image)
    if not principal.allows("scan", ref.name):
        principal.authorize("verify", ref.name)
    return await scan_flows.image_scans(services, ref)
