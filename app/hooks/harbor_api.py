"""A Harbor scan, stored for the push gate: the full report from Harbor's API, else the summary.

With ``SEALGATE_HARBOR_URL``, ``SEALGATE_HARBOR_USERNAME`` and ``SEALGATE_HARBOR_PASSWORD``
set, a SCANNING_COMPLETED event makes Sealgate read the artifact's report,
``GET {url}/api/v2.0/projects/{project}/repositories/{repository}/artifacts/{digest}``
``/additions/vulnerabilities`` (the repository path inside the project URL-encoded twice, as
Harbor requires for names with ``/``), parsed by ``app.scans.harbor``. Without them, the
event's ``scan_overview`` is stored: counts per severity, no findings (``summary_only``; the
default policy says how far that is trusted, see ``policies/README.md``). Either is a scan
with source ``registry_webhook`` for the event's (repository, digest), stored once per event
(a retry finds it).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import quote

import httpx
from sqlalchemy import select

from app.db.base import utcnow
from app.db.models import ScanRecord
from app.db.session import session_scope
from app.errors import HarborError, ScanError
from app.hooks.events import RegistryEvent, ScanOverview
from app.limits import MAX_REPORT_BYTES
from app.scans.document import parse_timestamp
from app.scans.harbor import parse_harbor_report
from app.scans.model import ReportFormat, ScanReport, ScanSource
from app.services import Services

REPORT_MEDIA_TYPE = "application/vnd.security.vulnerability.report; version=1.1"


def report_path(repository: str, digest: str) -> str:
    project, _, name = repository.partition("/")
    if not name:
        raise ScanError(f"the Harbor repository {repository!r} names no project")
    encoded = quote(quote(name, safe=""), safe="")
    return (
        f"/api/v2.0/projects/{quote(project, safe='')}/repositories/{encoded}"
        f"/artifacts/{digest}/additions/vulnerabilities"
    )


async def fetch_report(services: Services, event: RegistryEvent) -> tuple[bytes, ScanReport]:
    settings = services.settings
    if not (settings.harbor_url and settings.harbor_username and settings.harbor_password):
        raise HarborError("Harbor's API is not configured")
    url = settings.harbor_url.rstrip("/") + report_path(event.repository, event.digest or "")
    auth = (settings.harbor_username, settings.harbor_password.get_secret_value())
    verify: Any = str(settings.registry_ca_bundle) if settings.registry_ca_bundle else True
    try:
        async with httpx.AsyncClient(
            timeout=settings.registry_request_timeout, verify=verify, follow_redirects=False
        ) as client:
            reply = await client.get(
                url, auth=auth, headers={"X-Accept-Vulnerabilities": REPORT_MEDIA_TYPE}
            )
    except httpx.HTTPError as e:
        raise HarborError(f"Harbor at {settings.harbor_url}: {type(e).__name__}") from e
    if reply.status_code != 200:
        raise HarborError(f"Harbor answered {reply.status_code} for the report of {event.image}")
    if len(reply.content) > MAX_REPORT_BYTES:
        raise HarborError(f"Harbor's report of {event.image} is larger than {MAX_REPORT_BYTES}")
    return reply.content, await asyncio.to_thread(parse_harbor_report, reply.content)


def _marker(event: RegistryEvent) -> str:
    return f"{event.source.value}-webhook"[:128]


async def store_registry_scan(services: Services, event: RegistryEvent) -> int:
    """Store the event's scan (once); return the scan row's id."""
    settings = services.settings
    referrer = f"event:{event.event_id}"[:100]

    def _existing() -> int | None:
        with session_scope(services.sessions) as session:
            return session.scalar(
                select(ScanRecord.id).where(
                    ScanRecord.name == event.name,
                    ScanRecord.digest == event.digest,
                    ScanRecord.source == ScanSource.registry_webhook.value,
                    ScanRecord.referrer_digest == referrer,
                )
            )

    found = await asyncio.to_thread(_existing)
    if found is not None:
        return found
    if settings.harbor_url:
        raw, report = await fetch_report(services, event)
        row = _full_row(event, raw, report)
    else:
        row = _summary_row(event, event.scan)
    row.referrer_digest = referrer

    def _store() -> int:
        with session_scope(services.sessions) as session:
            session.add(row)
            session.flush()
            return row.id

    return await asyncio.to_thread(_store)


def _full_row(event: RegistryEvent, raw: bytes, report: ScanReport) -> ScanRecord:
    scanned_at = min(report.scanned_at or utcnow(), utcnow())
    return ScanRecord(
        name=event.name,
        image=event.image[:512],
        digest=event.digest or "",
        scanner=report.scanner,
        format=ReportFormat.harbor.value,
        source=ScanSource.registry_webhook.value,
        scanned_at=scanned_at,
        summary={
            "scanner_version": report.scanner_version,
            "counts": report.counts,
            "suppressed": report.suppressed,
            "total": len(report.vulnerabilities),
            "warnings": list(report.warnings),
        },
        vulnerabilities=[v.model_dump(mode="json") for v in report.vulnerabilities],
        raw_report=raw,
        raw_media_type=REPORT_MEDIA_TYPE,
        uploaded_by=_marker(event),
    )


def _summary_row(event: RegistryEvent, overview: ScanOverview | None) -> ScanRecord:
    if overview is None:
        raise ScanError(
            f"the scan event for {event.image} carries no scan_overview and Harbor's API is not "
            "configured",
            code="scan.malformed",
        )
    finished = parse_timestamp(overview.finished_at) or event.occurred_at or utcnow()
    raw = json.dumps(overview.model_dump(mode="json"), sort_keys=True).encode()
    return ScanRecord(
        name=event.name,
        image=event.image[:512],
        digest=event.digest or "",
        scanner=(overview.scanner or "harbor").lower()[:64],
        format=ReportFormat.harbor.value,
        source=ScanSource.registry_webhook.value,
        scanned_at=min(finished, utcnow()),
        summary={
            "summary_only": True,
            "scanner_version": overview.scanner_version,
            "counts": overview.counts,
            "fixable": overview.fixable,
            "total": overview.total,
            "severity": overview.severity,
        },
        vulnerabilities=[],
        raw_report=raw,
        raw_media_type=overview.report_media_type[:128],
        uploaded_by=_marker(event),
    )
