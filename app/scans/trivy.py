"""Trivy's JSON report (``trivy image -f json``) in every shape Trivy has written.

- legacy (before v0.20): a top-level array of results, or ``null`` when nothing was found;
- schema v2: an object with ``SchemaVersion: 2``, ``Results`` (absent when nothing was
  scanned) whose ``Vulnerabilities`` may be absent or ``null``;
- with ``--show-suppressed``, findings a VEX document suppressed sit in each result's
  ``ModifiedFindings``; they are kept, with their VEX status, and not counted.

Trivy's ``Status`` maps to a VEX status: ``not_affected`` suppresses, ``under_investigation``
is ``in_triage``, ``affected``/``fixed``/``will_not_fix``/``fix_deferred``/``end_of_life``
are ``affected`` (the vendor says the package is vulnerable), ``unknown`` says nothing.
A fix is available when Trivy names a fixed version or says ``fixed``.
"""

from __future__ import annotations

from typing import Any

from app.errors import ScanError
from app.oci.digests import is_digest
from app.scans.document import (
    WireModel,
    digest_of_repo_digest,
    image_names,
    load_document,
    parse_timestamp,
    validate_shape,
)
from app.scans.model import ReportFormat, ScanReport, Severity, VexStatus, Vulnerability

# Field names are Trivy's own, so that these models read like the format.


class _PkgIdentifier(WireModel):
    PURL: str | None = None


class _Vulnerability(WireModel):
    VulnerabilityID: str | None = None
    VendorIDs: list[str] | None = None
    PkgName: str | None = None
    PkgIdentifier: _PkgIdentifier | None = None
    InstalledVersion: str | None = None
    FixedVersion: str | None = None
    Status: str | None = None
    Severity: str | None = None
    Title: str | None = None
    Description: str | None = None
    PrimaryURL: str | None = None
    References: list[str] | None = None


class _ModifiedFinding(WireModel):
    Type: str | None = None
    Status: str | None = None
    Finding: _Vulnerability | None = None


class _Result(WireModel):
    Target: str | None = None
    Class: str | None = None
    Type: str | None = None
    Vulnerabilities: list[_Vulnerability] | None = None
    ModifiedFindings: list[_ModifiedFinding] | None = None


class _Metadata(WireModel):
    RepoTags: list[str] | None = None
    RepoDigests: list[str] | None = None
    ImageID: str | None = None


class _Tool(WireModel):
    Version: str | None = None


class _Report(WireModel):
    SchemaVersion: int
    ArtifactName: str | None = None
    ArtifactType: str | None = None
    Metadata: _Metadata | None = None
    Results: list[_Result] | None = None
    CreatedAt: str | None = None
    Trivy: _Tool | None = None


class _LegacyReport(WireModel):
    results: list[_Result]


_STATUS = {
    "not_affected": VexStatus.not_affected,
    "under_investigation": VexStatus.in_triage,
    "affected": VexStatus.affected,
    "fixed": VexStatus.affected,
    "will_not_fix": VexStatus.affected,
    "fix_deferred": VexStatus.affected,
    "end_of_life": VexStatus.affected,
}


def parse_trivy(data: bytes) -> ScanReport:
    """Parse a Trivy JSON report; ScanError (``scan.malformed``) when it is not one."""
    return trivy_report(load_document(data))


def looks_like_trivy(document: Any) -> bool:
    """Whether a decoded document has the shape of a Trivy JSON report."""
    if document is None:
        return True  # legacy Trivy writes ``null`` when nothing was found
    if isinstance(document, list):
        return all(isinstance(r, dict) and "Target" in r for r in document)
    return (
        isinstance(document, dict)
        and "SchemaVersion" in document
        and ("ArtifactName" in document or "Results" in document or "Trivy" in document)
    )


def trivy_report(document: Any) -> ScanReport:
    """A ScanReport from a decoded Trivy document (legacy or schema v2)."""
    if document is None or isinstance(document, list):
        legacy = validate_shape(_LegacyReport, {"results": document or []}, what="Trivy report")
        return _report(results=legacy.results, scanner_version=None, scanned_at=None)
    report = validate_shape(_Report, document, what="Trivy report")
    if report.SchemaVersion != 2:
        raise ScanError(
            f"Trivy report schema version {report.SchemaVersion} is not supported "
            "(supported: 2, and the legacy list format)",
            code="scan.malformed",
        )
    metadata = report.Metadata or _Metadata()
    digests = [d for d in (digest_of_repo_digest(r) for r in metadata.RepoDigests or []) if d]
    if report.ArtifactName and (named := digest_of_repo_digest(report.ArtifactName)):
        digests.append(named)
    # A filesystem or repository scan's ArtifactName is a path, not an image.
    scanned = report.ArtifactName if report.ArtifactType in (None, "container_image") else None
    return _report(
        results=report.Results or [],
        scanner_version=report.Trivy.Version if report.Trivy else None,
        scanned_at=report.CreatedAt,
        artifact_name=report.ArtifactName or None,
        artifact_digests=tuple(dict.fromkeys(digests)),
        image_id=metadata.ImageID if metadata.ImageID and is_digest(metadata.ImageID) else None,
        names=image_names(scanned, metadata.RepoTags, metadata.RepoDigests),
    )


def _report(
    *,
    results: list[_Result],
    scanner_version: str | None,
    scanned_at: str | None,
    artifact_name: str | None = None,
    artifact_digests: tuple[str, ...] = (),
    image_id: str | None = None,
    names: tuple[str, ...] = (),
) -> ScanReport:
    findings: list[Vulnerability] = []
    warnings: list[str] = []
    for index, result in enumerate(results):
        for vuln in result.Vulnerabilities or []:
            finding = _finding(vuln, result=result, vex=_STATUS.get(vuln.Status or ""))
            if finding is None:
                warnings.append(_skipped(index, result, vuln))
            else:
                findings.append(finding)
        for modified in result.ModifiedFindings or []:
            if modified.Type not in (None, "vulnerability") or modified.Finding is None:
                continue
            # The status of a VEX-modified finding is an OpenVEX word.
            vex = VexStatus.from_openvex(modified.Status) or VexStatus.affected
            finding = _finding(modified.Finding, result=result, vex=vex)
            if finding is None:
                warnings.append(_skipped(index, result, modified.Finding))
            else:
                findings.append(finding)
    return ScanReport(
        scanner="trivy",
        scanner_version=scanner_version,
        format=ReportFormat.trivy,
        artifact_name=artifact_name,
        artifact_digests=artifact_digests,
        image_id=image_id,
        image_names=names,
        scanned_at=parse_timestamp(scanned_at),
        vulnerabilities=tuple(findings),
        warnings=tuple(warnings),
    )


def _skipped(index: int, result: _Result, vuln: _Vulnerability) -> str:
    return (
        f"Results[{index}] ({result.Target or 'no target'}): skipped a vulnerability "
        f"without VulnerabilityID or PkgName (package {vuln.PkgName or 'unknown'})"
    )


def _finding(
    vuln: _Vulnerability, *, result: _Result, vex: VexStatus | None
) -> Vulnerability | None:
    if not vuln.VulnerabilityID or not vuln.PkgName:
        return None
    fixed = tuple(v.strip() for v in (vuln.FixedVersion or "").split(",") if v.strip())
    urls = [vuln.PrimaryURL or "", *(vuln.References or [])]
    return Vulnerability(
        id=vuln.VulnerabilityID,
        severity=Severity.from_word(vuln.Severity),
        package=vuln.PkgName,
        package_type=result.Type,
        purl=vuln.PkgIdentifier.PURL if vuln.PkgIdentifier else None,
        installed_version=vuln.InstalledVersion,
        fixed_versions=fixed,
        fix_available=bool(fixed) or vuln.Status == "fixed",
        vex_status=vex,
        title=vuln.Title or vuln.Description,
        urls=tuple(urls),
        aliases=tuple(a for a in vuln.VendorIDs or [] if a != vuln.VulnerabilityID),
    )
