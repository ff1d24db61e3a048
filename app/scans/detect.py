"""Which scanner format a report is in, and the one entry point that parses any of them.

Detection looks only at the document's shape (top-level keys), never at file names:
CycloneDX says ``bomFormat``, SARIF has ``runs`` and a ``version``/``$schema``, Grype has
``matches`` and ``source``, Harbor's report is keyed by its report media type, Trivy has
``SchemaVersion`` or is a (legacy) list of results or ``null``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from app.errors import ScanError
from app.limits import MAX_REPORT_BYTES, MAX_SCAN_FINDINGS
from app.scans.cyclonedx import cyclonedx_report, looks_like_cyclonedx
from app.scans.document import load_document
from app.scans.grype import grype_report, looks_like_grype
from app.scans.harbor import harbor_report, looks_like_harbor
from app.scans.model import ReportFormat, ScanReport
from app.scans.sarif import looks_like_sarif, sarif_report
from app.scans.trivy import looks_like_trivy, trivy_report

SUPPORTED_FORMATS = ", ".join(f.value for f in ReportFormat)
AUTO = "auto"

# Order matters only for documents that look like two formats at once; the most
# specific markers are tried first.
_DETECTORS: tuple[tuple[ReportFormat, Callable[[Any], bool]], ...] = (
    (ReportFormat.cyclonedx, looks_like_cyclonedx),
    (ReportFormat.harbor, looks_like_harbor),
    (ReportFormat.sarif, looks_like_sarif),
    (ReportFormat.grype, looks_like_grype),
    (ReportFormat.trivy, looks_like_trivy),
)
_PARSERS: dict[ReportFormat, Callable[[Any], ScanReport]] = {
    ReportFormat.trivy: trivy_report,
    ReportFormat.grype: grype_report,
    ReportFormat.sarif: sarif_report,
    ReportFormat.cyclonedx: cyclonedx_report,
    ReportFormat.harbor: harbor_report,
}


def report_format(name: str) -> ReportFormat | None:
    """The format called ``name`` (``auto`` gives None); ScanError listing the supported ones."""
    if name == AUTO:
        return None
    try:
        return ReportFormat(name.strip().lower())
    except ValueError:
        raise ScanError(
            f"unknown report format {name!r}; supported: auto, {SUPPORTED_FORMATS}",
            code="scan.unknown_format",
        ) from None


def detect_format(data: bytes) -> ReportFormat:
    """The format of a raw report; ScanError when it is none of the supported ones."""
    return _detect(load_document(data))


def _detect(document: Any) -> ReportFormat:
    for fmt, looks_like in _DETECTORS:
        if looks_like(document):
            return fmt
    raise ScanError(
        f"the report is in no supported format; supported: {SUPPORTED_FORMATS}",
        code="scan.unknown_format",
    )


def parse_report(
    data: bytes,
    format: str = AUTO,
    *,
    max_bytes: int = MAX_REPORT_BYTES,
    max_findings: int = MAX_SCAN_FINDINGS,
) -> ScanReport:
    """Parse a raw report in ``format`` (or the detected one when ``auto``).

    Raises ScanError: ``scan.too_large`` (413) above ``max_bytes`` or with more than
    ``max_findings`` findings (after merging duplicates; every decision for the image
    would carry them all), ``scan.malformed`` when the bytes are not JSON or not the named
    format, ``scan.unknown_format`` when the format is unknown or cannot be detected.
    """
    chosen = report_format(format)
    document = load_document(data, max_bytes=max_bytes)
    report = _PARSERS[chosen or _detect(document)](document)
    if len(report.vulnerabilities) > max_findings:
        raise ScanError(
            f"the report has {len(report.vulnerabilities)} findings, more than the limit of "
            f"{max_findings} (SEALGATE_MAX_SCAN_FINDINGS)",
            code="scan.too_large",
        )
    return report
