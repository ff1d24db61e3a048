"""Grype's JSON report (``grype -o json``), old and new fix shapes.

Each ``matches[]`` entry is one finding: ``vulnerability`` (id, severity, fix) and
``artifact`` (the package). Grype before v0.3x wrote ``vulnerability.fixedInVersion``
(one string or null); later versions write ``fix: {versions, state}`` with state
``fixed``, ``not-fixed``, ``wont-fix`` or ``unknown``. A fix is available when the state
is ``fixed`` or, without a state, when a version is named. ``relatedVulnerabilities``
become aliases. Matches that Grype suppressed by a VEX document sit in
``ignoredMatches`` with the VEX status in their applied rule; those are kept, with that
status, and not counted. Matches ignored by a plain ignore rule carry no VEX statement
and are not part of the findings Grype reported.

The artifact digests are ``source.target.repoDigests`` and, for images pulled from a
registry, ``source.target.manifestDigest``.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

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


class _Fix(WireModel):
    versions: list[str] | None = None
    state: str | None = None


class _Vulnerability(WireModel):
    id: str | None = None
    severity: str | None = None
    description: str | None = None
    urls: list[str] | None = None
    data_source: str | None = Field(default=None, alias="dataSource")
    fix: _Fix | None = None
    fixed_in_version: str | None = Field(default=None, alias="fixedInVersion")


class _Related(WireModel):
    id: str | None = None


class _Artifact(WireModel):
    name: str | None = None
    version: str | None = None
    type: str | None = None
    purl: str | None = None


class _Match(WireModel):
    vulnerability: _Vulnerability
    related: list[_Related] | None = Field(default=None, alias="relatedVulnerabilities")
    artifact: _Artifact


class _IgnoreRule(WireModel):
    vex_status: str | None = Field(default=None, alias="vex-status")


class _IgnoredMatch(_Match):
    rules: list[_IgnoreRule] | None = Field(default=None, alias="appliedIgnoreRules")


class _Target(WireModel):
    manifest_digest: str | None = Field(default=None, alias="manifestDigest")
    image_id: str | None = Field(default=None, alias="imageID")
    repo_digests: list[str] | None = Field(default=None, alias="repoDigests")
    user_input: str | None = Field(default=None, alias="userInput")
    tags: list[str] | None = None


class _Source(WireModel):
    type: str | None = None
    target: _Target | str | None = None


class _Descriptor(WireModel):
    name: str | None = None
    version: str | None = None
    timestamp: str | None = None


class _Report(WireModel):
    matches: list[_Match] | None
    ignored: list[_IgnoredMatch] | None = Field(default=None, alias="ignoredMatches")
    source: _Source | None = None
    descriptor: _Descriptor | None = None


def parse_grype(data: bytes) -> ScanReport:
    """Parse a Grype JSON report; ScanError (``scan.malformed``) when it is not one."""
    return grype_report(load_document(data))


def looks_like_grype(document: Any) -> bool:
    return isinstance(document, dict) and "matches" in document and "source" in document


def grype_report(document: Any) -> ScanReport:
    """A ScanReport from a decoded Grype document."""
    report = validate_shape(_Report, document, what="Grype report")
    findings: list[Vulnerability] = []
    warnings: list[str] = []
    for index, match in enumerate(report.matches or []):
        finding = _finding(match, vex=None)
        if finding is None:
            warnings.append(f"matches[{index}]: skipped a match without vulnerability id")
        else:
            findings.append(finding)
    for match in report.ignored or []:
        statuses = [VexStatus.from_openvex(r.vex_status) for r in match.rules or []]
        vex = next((s for s in statuses if s is not None), None)
        if vex is not None and (finding := _finding(match, vex=vex)) is not None:
            findings.append(finding)
    target = report.source.target if report.source else None
    digests: list[str] = []
    image_id = None
    names: tuple[str, ...] = ()
    artifact_name = target if isinstance(target, str) else None
    if isinstance(target, _Target):  # an image (a directory or file target is a string)
        artifact_name = target.user_input
        names = image_names(target.user_input, target.tags, target.repo_digests)
        digests = [d for d in (digest_of_repo_digest(r) for r in target.repo_digests or []) if d]
        if target.manifest_digest and is_digest(target.manifest_digest):
            digests.append(target.manifest_digest)
        if target.image_id and is_digest(target.image_id):
            image_id = target.image_id
    descriptor = report.descriptor or _Descriptor()
    return ScanReport(
        scanner="grype",
        scanner_version=descriptor.version,
        format=ReportFormat.grype,
        artifact_name=artifact_name,
        artifact_digests=tuple(dict.fromkeys(digests)),
        image_id=image_id,
        image_names=names,
        scanned_at=parse_timestamp(descriptor.timestamp),
        vulnerabilities=tuple(findings),
        warnings=tuple(warnings),
    )


def _finding(match: _Match, *, vex: VexStatus | None) -> Vulnerability | None:
    vuln, artifact = match.vulnerability, match.artifact
    if not vuln.id:
        return None
    if vuln.fix is not None:
        fixed = tuple(vuln.fix.versions or ())
        available = vuln.fix.state == "fixed" if vuln.fix.state else bool(fixed)
    else:
        fixed = (vuln.fixed_in_version,) if vuln.fixed_in_version else ()
        available = bool(fixed)
    return Vulnerability(
        id=vuln.id,
        severity=Severity.from_word(vuln.severity),
        package=artifact.name or "",
        package_type=artifact.type,
        purl=artifact.purl or None,
        installed_version=artifact.version,
        fixed_versions=fixed,
        fix_available=available,
        vex_status=vex,
        title=vuln.description,
        urls=tuple([vuln.data_source or "", *(vuln.urls or [])]),
        aliases=tuple(r.id for r in match.related or [] if r.id and r.id != vuln.id),
    )
