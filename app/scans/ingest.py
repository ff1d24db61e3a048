"""Ingesting a vulnerability report for an image, and collecting the scans an image has.

``ingest_scan`` is the one path an uploaded report takes (API and CLI alike):

1. parse the report (any supported format) — bad input stores nothing;
2. resolve the image to its digest in the registry;
3. refuse a report that names another image (``scan.wrong_image``): when the report names
   an image config digest (Trivy ``ImageID``, Grype ``imageID``) it must be the config of
   the image (or of one of its platforms, for an index); otherwise, when it names manifest
   digests (repo digests, Grype's ``manifestDigest``), one of them must be the image's or
   one of its platforms'; then its image names are checked (``app.scans.subject``): other
   repositories only, and no digest of the image, is refused; a tag or a local name only is
   accepted with a warning (in the answer and the record); a report that names no image is
   bound to the image by the upload;
4. optionally sign it as an in-toto vulnerability attestation (``attest`` hook, e.g.
   ``app.scans.attestation.key_scan_attester``) — first, so that a key problem stops
   ingestion before anything is pushed;
5. attach the raw report to the image as an OCI referrer (see ``SCAN_ARTIFACT_TYPE``), in
   the image's repository or the signature repository configured for it
   (``RegistryClient.evidence_home``), naming the image's digest as its subject;
6. store a ``ScanRecord`` with the normalised findings and the raw report.

A registry or signing failure in steps 2-5 stores nothing (fail closed). If a later step
fails after something was pushed, that referrer stays in the registry: the report
referrer is unsigned, so readers treat it as an ``unsigned_referrer`` anyway.

Referrer layout (our choice, so that other tools can read it): the manifest's
``artifactType`` is ``application/vnd.sealgate.scan.v1+json`` for every format, so one
filter finds all of them; its single layer is the report byte for byte, with the
report's own media type (``application/vnd.cyclonedx+json``, ``application/sarif+json``,
``application/json`` for Trivy and Grype JSON) and the annotations
``dev.sealgate.scan.format`` and ``dev.sealgate.scan.scanner``. ``collect_scans`` also reads
CycloneDX and SARIF referrers pushed by other tools under their own artifact types.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.db.base import utcnow
from app.db.models import ScanRecord
from app.db.session import session_scope
from app.errors import Error, ScanError
from app.limits import MAX_INDEX_PLATFORMS, MAX_REPORT_BYTES, MAX_SCAN_FINDINGS, MAX_SCAN_REFERRERS
from app.oci.client import Manifest, RegistryClient
from app.oci.descriptor import Descriptor
from app.oci.refs import ImageRef
from app.scans.detect import AUTO, parse_report
from app.scans.document import parse_timestamp
from app.scans.model import ReportFormat, ScanReport, ScanSource, Vulnerability
from app.scans.subject import check_names
from app.timestamps import iso_utc

log = logging.getLogger(__name__)

SCAN_ARTIFACT_TYPE = "application/vnd.sealgate.scan.v1+json"
CYCLONEDX_MEDIA_TYPE = "application/vnd.cyclonedx+json"
SARIF_MEDIA_TYPE = "application/sarif+json"
REPORT_MEDIA_TYPES = {
    ReportFormat.trivy: "application/json",
    ReportFormat.grype: "application/json",
    ReportFormat.sarif: SARIF_MEDIA_TYPE,
    ReportFormat.cyclonedx: CYCLONEDX_MEDIA_TYPE,
    ReportFormat.harbor: "application/vnd.security.vulnerability.report; version=1.1",
}
# Artifact types whose referrers are read as scan reports.
SCAN_REFERRER_TYPES = (SCAN_ARTIFACT_TYPE, CYCLONEDX_MEDIA_TYPE, SARIF_MEDIA_TYPE)
FORMAT_ANNOTATION = "dev.sealgate.scan.format"
SCANNER_ANNOTATION = "dev.sealgate.scan.scanner"
CREATED_ANNOTATION = "org.opencontainers.image.created"

# The hook that signs a scan as an in-toto vulnerability attestation: it receives the
# pinned image, the parsed report and the raw bytes and returns the digest of the
# attestation referrer it pushed (``app.scans.attestation.key_scan_attester`` signs with a
# stored key). ``None`` pushes the report only.
ScanAttester = Callable[[ImageRef, ScanReport, bytes], Awaitable[str]]


class StoredScan(BaseModel):
    """What ingestion stored: the scan's identity, provenance and effective counts."""

    model_config = ConfigDict(frozen=True)

    id: int
    image: str
    digest: str
    scanner: str
    scanner_version: str | None
    format: ReportFormat
    source: ScanSource
    scanned_at: dt.datetime
    counts: dict[str, int]
    suppressed: int
    total: int
    referrer_digest: str | None
    attestation_digest: str | None = None
    uploaded_by: str | None
    warnings: tuple[str, ...] = ()


class CollectedScan(BaseModel):
    """One scan of an image digest and where it came from (``source``).

    ``authenticated_upload``: ingested through Sealgate by an authorised caller;
    ``unsigned_referrer``: found in the registry, its origin unverified.
    """

    model_config = ConfigDict(frozen=True)

    source: ScanSource
    digest: str
    report: ScanReport
    scanned_at: dt.datetime
    referrer_digest: str | None = None
    uploaded_by: str | None = None
    scan_id: int | None = None


async def ingest_scan(
    *,
    registry: RegistryClient,
    sessions: sessionmaker[Session],
    image: str | ImageRef,
    report: bytes,
    format: str = AUTO,
    uploaded_by: str,
    attest: ScanAttester | None = None,
    max_findings: int = MAX_SCAN_FINDINGS,
    forget_scans: Callable[[list[tuple[str, str]]], None] | None = None,
) -> StoredScan:
    """Parse, check, attach and store a report for ``image`` (tag or digest).

    ``registry`` resolves the image and takes the referrer, ``sessions`` stores the record;
    a report with more than ``max_findings`` findings is refused. ``forget_scans`` is told
    the (repository, digest) stored, so that cached decisions see the new scan at once.

    Raises ScanError (malformed, unknown format, too large in bytes or findings, wrong
    image), InputError for a bad image reference, RegistryError when the registry cannot
    resolve the image or take the referrer, what ``attest`` raises (SigningError,
    NotFoundError for its key), and StoreError when the database fails.
    """
    ref = image if isinstance(image, ImageRef) else ImageRef.parse(image)
    parsed = await asyncio.to_thread(  # (1)
        parse_report, report, format, max_findings=max_findings
    )
    digest = await registry.resolve_digest(ref)  # (2)
    pinned = ref.with_digest(digest)
    manifest = await registry.get_manifest(pinned)
    subject_warnings = await check_report_names_image(registry, manifest=manifest, report=parsed)
    warnings = (*subject_warnings, *parsed.warnings)  # (3)
    media_type = REPORT_MEDIA_TYPES[parsed.format]
    # A report cannot have been made after it was uploaded: a date in the future would
    # outrank every later scan and never age.
    scanned_at = min(parsed.scanned_at or utcnow(), utcnow())
    attestation = await attest(pinned, parsed, report) if attest is not None else None  # (4)
    referrer = await registry.push_referrer(  # (5)
        pinned,
        artifact_type=SCAN_ARTIFACT_TYPE,
        layers=[
            (
                report,
                media_type,
                {FORMAT_ANNOTATION: parsed.format.value, SCANNER_ANNOTATION: parsed.scanner},
            )
        ],
        annotations={
            FORMAT_ANNOTATION: parsed.format.value,
            SCANNER_ANNOTATION: parsed.scanner,
            CREATED_ANNOTATION: iso_utc(scanned_at),
        },
    )
    display = f"{ref.name}:{ref.tag}" if ref.tag else ref.name

    def _store() -> StoredScan:  # (6)
        with session_scope(sessions) as session:
            row = ScanRecord(
                name=ref.name,
                image=display,
                digest=digest,
                scanner=parsed.scanner,
                format=parsed.format.value,
                source=ScanSource.authenticated_upload.value,
                scanned_at=scanned_at,
                summary=_summary(parsed, attestation_digest=attestation, warnings=warnings),
                vulnerabilities=[v.model_dump(mode="json") for v in parsed.vulnerabilities],
                raw_report=report,
                raw_media_type=media_type,
                referrer_digest=referrer.digest,
                uploaded_by=uploaded_by[:128],
            )
            session.add(row)
            session.flush()
            return _stored(row, parsed)

    stored = await asyncio.to_thread(_store)
    if forget_scans is not None:
        # Decisions on this replica see the new scan at once; others within their refresh.
        forget_scans([(ref.name, digest)])
    log.info(
        "scan ingested",
        extra={"image": display, "digest": digest, "scan_id": stored.id, "format": parsed.format},
    )
    for warning in subject_warnings:
        log.warning("scan subject", extra={"scan_id": stored.id, "warning": warning})
    return stored


async def check_report_names_image(
    registry: RegistryClient, *, manifest: Manifest, report: ScanReport
) -> tuple[str, ...]:
    """Raise ``scan.wrong_image`` unless the report's claims fit the image (see step 3);
    return the warnings its image names call for."""
    manifest_digests = {manifest.digest}
    platforms: list[Manifest] = [manifest]
    if manifest.is_index:
        children = manifest.manifests[:MAX_INDEX_PLATFORMS]
        manifest_digests.update(c.digest for c in children)
        if report.image_id is not None:
            platforms = [
                await registry.get_manifest(manifest.ref.with_digest(c.digest)) for c in children
            ]
    if report.image_id is not None:
        configs = {p.config.digest for p in platforms if p.config is not None}
        if report.image_id not in configs:
            raise ScanError(
                f"the report is for image {report.image_id} (config digest), but "
                f"{manifest.ref.name}@{manifest.digest} has config "
                f"{', '.join(sorted(configs)) or 'none'}",
                code="scan.wrong_image",
            )
    elif report.artifact_digests and not manifest_digests.intersection(report.artifact_digests):
        raise ScanError(
            f"the report is for {', '.join(report.artifact_digests)}, not for "
            f"{manifest.ref.name}@{manifest.digest}",
            code="scan.wrong_image",
        )
    # Past the checks above, a digest the report names is the image's.
    digest_confirmed = report.image_id is not None or bool(report.artifact_digests)
    return check_names(
        report, image=manifest.ref.with_digest(manifest.digest), digest_confirmed=digest_confirmed
    )


def _summary(
    report: ScanReport, *, attestation_digest: str | None, warnings: tuple[str, ...]
) -> dict[str, Any]:
    return {
        "scanner_version": report.scanner_version,
        "artifact_name": report.artifact_name,
        "artifact_digests": list(report.artifact_digests),
        "image_id": report.image_id,
        "image_names": list(report.image_names),
        "counts": report.counts,
        "suppressed": report.suppressed,
        "total": len(report.vulnerabilities),
        "warnings": list(warnings),
        "attestation_digest": attestation_digest,
    }


def _stored(row: ScanRecord, report: ScanReport) -> StoredScan:
    return StoredScan(
        id=row.id,
        image=row.image,
        digest=row.digest,
        scanner=row.scanner,
        scanner_version=report.scanner_version,
        format=report.format,
        source=ScanSource(row.source),
        scanned_at=row.scanned_at,
        counts=report.counts,
        suppressed=report.suppressed,
        total=len(report.vulnerabilities),
        referrer_digest=row.referrer_digest,
        attestation_digest=row.summary.get("attestation_digest"),
        uploaded_by=row.uploaded_by,
        warnings=tuple(row.summary.get("warnings") or ()),
    )


def _report_of(row: ScanRecord) -> ScanReport:
    """The normalised report a row holds (the stored findings, not a re-parse)."""
    summary = row.summary
    return ScanReport(
        scanner=row.scanner,
        scanner_version=summary.get("scanner_version"),
        format=ReportFormat(row.format),
        artifact_name=summary.get("artifact_name"),
        artifact_digests=tuple(summary.get("artifact_digests") or ()),
        image_id=summary.get("image_id"),
        image_names=tuple(summary.get("image_names") or ()),
        scanned_at=row.scanned_at,
        vulnerabilities=tuple(Vulnerability.model_validate(v) for v in row.vulnerabilities),
        warnings=tuple(summary.get("warnings") or ()),
    )


async def collect_scans(
    *,
    registry: RegistryClient,
    sessions: sessionmaker[Session],
    image: str | ImageRef,
    max_findings: int = MAX_SCAN_FINDINGS,
) -> list[CollectedScan]:
    """Every scan of ``image``'s digest, newest first: our authenticated uploads (read
    through ``sessions``), then scan reports found as referrers in the registry (unverified,
    at most ``MAX_SCAN_REFERRERS``, each of at most ``max_findings`` findings; ones we stored
    ourselves are not repeated; unreadable ones and ones naming another image are skipped
    with a log line).

    Raises RegistryError when the registry cannot resolve the image or list referrers.
    """
    ref = image if isinstance(image, ImageRef) else ImageRef.parse(image)
    digest = await registry.resolve_digest(ref)
    pinned = ref.with_digest(digest)

    def _load() -> list[CollectedScan]:
        with session_scope(sessions) as session:
            rows = session.scalars(
                select(ScanRecord)
                .where(ScanRecord.name == ref.name, ScanRecord.digest == digest)
                .order_by(ScanRecord.scanned_at.desc(), ScanRecord.id.desc())
            )
            return [
                CollectedScan(
                    source=ScanSource(row.source),
                    digest=row.digest,
                    report=_report_of(row),
                    scanned_at=row.scanned_at,
                    referrer_digest=row.referrer_digest,
                    uploaded_by=row.uploaded_by,
                    scan_id=row.id,
                )
                for row in rows
            ]

    uploaded = await asyncio.to_thread(_load)
    known = {s.referrer_digest for s in uploaded if s.referrer_digest}
    listed = await registry.list_referrers(pinned)
    found = await scan_referrers(registry, pinned, listed, skip=known, max_findings=max_findings)
    found.sort(key=lambda s: s.scanned_at, reverse=True)
    return uploaded + found


def is_scan_referrer(descriptor: Descriptor) -> bool:
    """Whether a referrer descriptor announces a scan report Sealgate reads."""
    return descriptor.artifact_type in SCAN_REFERRER_TYPES


async def scan_referrers(
    registry: RegistryClient,
    pinned: ImageRef,
    listed: Sequence[Descriptor],
    *,
    skip: set[str] | frozenset[str] = frozenset(),
    subject: Manifest | None = None,
    max_findings: int = MAX_SCAN_FINDINGS,
) -> list[CollectedScan]:
    """The scan reports among the referrers ``listed`` for ``pinned`` (at most
    ``MAX_SCAN_REFERRERS``; ``skip`` names referrers already known), parsed and checked
    against the image (``subject``, fetched here when not given and needed). Unreadable
    reports and reports naming another image are skipped with a log line."""
    referrers = [d for d in listed if is_scan_referrer(d) and d.digest not in skip][
        :MAX_SCAN_REFERRERS
    ]
    home = registry.evidence_home(pinned)  # where the reports are kept
    collected = []
    for descriptor in referrers:
        try:
            artifact = await registry.get_manifest(home.with_digest(descriptor.digest))
            layers = artifact.layers
            if not layers:
                raise ScanError("the referrer has no layer", code="scan.malformed")
            raw = await registry.get_blob(home, layers[0].digest, max_bytes=MAX_REPORT_BYTES)
            report = await asyncio.to_thread(parse_report, raw, max_findings=max_findings)
            if report.image_id is not None or report.artifact_digests:
                # Only a report that names digests needs the image's manifest to check them.
                subject = subject or await registry.get_manifest(pinned)
                await check_report_names_image(registry, manifest=subject, report=report)
            else:
                check_names(report, image=pinned, digest_confirmed=False)
        except Error as e:
            log.warning(
                "scan referrer skipped",
                extra={"referrer": descriptor.digest, "code": e.code, "error": e.message},
            )
            continue
        created = artifact.annotations.get(CREATED_ANNOTATION)
        collected.append(
            CollectedScan(
                source=ScanSource.unsigned_referrer,
                digest=pinned.digest or "",
                report=report,
                scanned_at=report.scanned_at or parse_timestamp(created) or utcnow(),
                referrer_digest=descriptor.digest,
            )
        )
    return collected
