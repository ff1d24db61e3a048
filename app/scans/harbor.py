"""Harbor's vulnerability report (``GET .../artifacts/{digest}/additions/vulnerabilities``).

Harbor answers ``{"<report media type>": {"generated_at", "scanner": {"name", "vendor",
"version"}, "severity", "vulnerabilities": [{"id", "package", "version", "fix_version",
"severity", "description", "links"}]}}`` where the media type is
``application/vnd.security.vulnerability.report; version=1.1`` (its pluggable-scanner API);
the inner object alone is read too. Severities are Harbor's words (``Critical``, ``High``,
``Medium``, ``Low``, ``Negligible``, ``Unknown``, ``None``).
"""

from __future__ import annotations

from typing import Any

from app.scans.document import WireModel, load_document, parse_timestamp, validate_shape
from app.scans.model import ReportFormat, ScanReport, Severity, Vulnerability

REPORT_MEDIA_PREFIX = "application/vnd.security.vulnerability.report"


class _Scanner(WireModel):
    name: str | None = None
    vendor: str | None = None
    version: str | None = None


class _Vulnerability(WireModel):
    id: str | None = None
    package: str | None = None
    version: str | None = None
    fix_version: str | None = None
    severity: str | None = None
    description: str | None = None
    links: list[str] | None = None


class _Report(WireModel):
    generated_at: str | None = None
    scanner: _Scanner | None = None
    vulnerabilities: list[_Vulnerability] | None = None


def _inner(document: Any) -> Any:
    if isinstance(document, dict):
        for key, value in document.items():
            if isinstance(key, str) and key.startswith(REPORT_MEDIA_PREFIX):
                return value
    return document


def looks_like_harbor(document: Any) -> bool:
    return isinstance(document, dict) and any(
        isinstance(k, str) and k.startswith(REPORT_MEDIA_PREFIX) for k in document
    )


def parse_harbor_report(data: bytes) -> ScanReport:
    return harbor_report(load_document(data))


def harbor_report(document: Any) -> ScanReport:
    """The report as a ``ScanReport``; ScanError when it is not Harbor's shape."""
    report = validate_shape(_Report, _inner(document), what="Harbor vulnerability report")
    findings = []
    skipped = []
    for index, vuln in enumerate(report.vulnerabilities or []):
        if not vuln.id or not vuln.package:
            skipped.append(f"vulnerability {index} has no id or package; skipped")
            continue
        fixed = tuple(v.strip() for v in (vuln.fix_version or "").split(",") if v.strip())
        findings.append(
            Vulnerability(
                id=vuln.id,
                severity=Severity.from_word(vuln.severity),
                package=vuln.package,
                installed_version=vuln.version,
                fixed_versions=fixed,
                fix_available=bool(fixed),
                title=vuln.description,
                urls=tuple(vuln.links or ()),
            )
        )
    scanner = report.scanner or _Scanner()
    return ScanReport(
        scanner=(scanner.name or "harbor").lower(),
        scanner_version=scanner.version,
        format=ReportFormat.harbor,
        scanned_at=parse_timestamp(report.generated_at),
        vulnerabilities=tuple(findings),
        warnings=tuple(skipped),
    )
