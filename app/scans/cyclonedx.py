"""CycloneDX JSON (1.4 to 1.7) with a ``vulnerabilities`` section, including VEX documents.

Each vulnerability becomes one finding per entry of ``affects``. An ``affects.ref`` is a
``bom-ref`` of a component in this BOM (searched in ``metadata.component`` and nested
``components``), a BOM-Link into another BOM (``urn:cdx:<serial>/<version>#<bom-ref>``,
whose fragment is used), or a bare purl; the package name and version come from the
component, else from the purl, else the ref itself is the package name.

VEX: ``analysis.state`` ``not_affected``, ``resolved``, ``resolved_with_pedigree`` and
``false_positive`` suppress a finding (kept, not counted); ``in_triage`` and
``exploitable`` (affected) do not.

Severity: the rating whose source is the vulnerability's own source, else the worst
rated severity word, else the highest CVSS score, else unknown. The fixed version is
read from Trivy's ``recommendation`` ("Upgrade jquery to version 3.4.0").
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote

from pydantic import Field

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

_RECOMMENDATION = re.compile(r"^Upgrade .+ to version (?P<versions>.+)$")


class _Property(WireModel):
    name: str | None = None
    value: str | None = None


class _Component(WireModel):
    bom_ref: str | None = Field(default=None, alias="bom-ref")
    type: str | None = None
    name: str | None = None
    version: str | None = None
    purl: str | None = None
    properties: list[_Property] | None = None
    components: list[_Component] | None = None


class _Tool(WireModel):
    name: str | None = None
    version: str | None = None


class _Tools(WireModel):
    components: list[_Tool] | None = None


class _Metadata(WireModel):
    timestamp: str | None = None
    tools: list[_Tool] | _Tools | None = None
    component: _Component | None = None


class _Source(WireModel):
    name: str | None = None
    url: str | None = None


class _Rating(WireModel):
    source: _Source | None = None
    score: float | None = None
    severity: str | None = None


class _AffectedVersion(WireModel):
    version: str | None = None
    status: str | None = None


class _Affects(WireModel):
    ref: str
    versions: list[_AffectedVersion] | None = None


class _Analysis(WireModel):
    state: str | None = None


class _Advisory(WireModel):
    url: str | None = None


class _Reference(WireModel):
    id: str | None = None


class _Vulnerability(WireModel):
    id: str | None = None
    source: _Source | None = None
    ratings: list[_Rating] | None = None
    description: str | None = None
    recommendation: str | None = None
    advisories: list[_Advisory] | None = None
    references: list[_Reference] | None = None
    affects: list[_Affects] | None = None
    analysis: _Analysis | None = None


class _Bom(WireModel):
    bom_format: str = Field(alias="bomFormat")
    spec_version: str | None = Field(default=None, alias="specVersion")
    metadata: _Metadata | None = None
    components: list[_Component] | None = None
    vulnerabilities: list[_Vulnerability] | None = None


_ANALYSIS = {
    "not_affected": VexStatus.not_affected,
    "resolved": VexStatus.resolved,
    "resolved_with_pedigree": VexStatus.resolved,
    "false_positive": VexStatus.false_positive,
    "in_triage": VexStatus.in_triage,
    "exploitable": VexStatus.affected,
}


def parse_cyclonedx(data: bytes) -> ScanReport:
    """Parse a CycloneDX JSON BOM or VEX document; ScanError when it is not one."""
    return cyclonedx_report(load_document(data))


def looks_like_cyclonedx(document: Any) -> bool:
    return isinstance(document, dict) and document.get("bomFormat") == "CycloneDX"


def cyclonedx_report(document: Any) -> ScanReport:
    """A ScanReport from a decoded CycloneDX document."""
    bom = validate_shape(_Bom, document, what="CycloneDX document")
    if bom.bom_format != "CycloneDX":
        raise ScanError(f"bomFormat is {bom.bom_format!r}, not 'CycloneDX'", code="scan.malformed")
    metadata = bom.metadata or _Metadata()
    subject = [metadata.component] if metadata.component else []
    components = {c.bom_ref: c for c in _walk([*subject, *(bom.components or [])]) if c.bom_ref}
    findings: list[Vulnerability] = []
    warnings: list[str] = []
    for index, vuln in enumerate(bom.vulnerabilities or []):
        if not vuln.id:
            warnings.append(f"vulnerabilities[{index}]: skipped a vulnerability without id")
            continue
        for affects in vuln.affects or [_Affects(ref="")]:
            findings.append(_finding(vuln, affects, components))
    scanner, version = _tool(metadata.tools)
    digests, image_id, names = _artifact(metadata.component)
    return ScanReport(
        scanner=scanner,
        scanner_version=version,
        format=ReportFormat.cyclonedx,
        artifact_name=metadata.component.name if metadata.component else None,
        artifact_digests=digests,
        image_id=image_id,
        image_names=names,
        scanned_at=parse_timestamp(metadata.timestamp),
        vulnerabilities=tuple(findings),
        warnings=tuple(warnings),
    )


def _walk(components: list[_Component]) -> Iterator[_Component]:
    stack = list(components)
    while stack:
        component = stack.pop()
        yield component
        stack.extend(component.components or [])


def _tool(tools: list[_Tool] | _Tools | None) -> tuple[str, str | None]:
    listed = tools.components if isinstance(tools, _Tools) else tools
    for tool in listed or []:
        if tool.name:
            return tool.name.strip().lower(), tool.version
    return "cyclonedx", None


def _artifact(
    component: _Component | None,
) -> tuple[tuple[str, ...], str | None, tuple[str, ...]]:
    """Manifest digests, the config digest and the image references a BOM's subject names
    (Trivy's properties, a ``pkg:oci`` purl, a container component's name)."""
    if component is None:
        return (), None, ()
    digests: list[str] = []
    image_id = None
    references: list[str] = []
    for prop in component.properties or []:
        name, value = prop.name or "", prop.value or ""
        if name.endswith((":RepoDigest", ":RepoTag")):
            references.append(value)
        if name.endswith(":RepoDigest") and (digest := digest_of_repo_digest(value)):
            digests.append(digest)
        elif name.endswith(":ImageID") and is_digest(value):
            image_id = value
    scanned = component.name if component.type == "container" else None
    if component.purl and component.purl.startswith("pkg:oci/"):
        _, _, version = _purl_parts(component.purl)
        if version and is_digest(version):
            digests.append(version)
    return tuple(dict.fromkeys(digests)), image_id, image_names(scanned, references)


def _purl_parts(purl: str) -> tuple[str | None, str, str | None]:
    """(type, name, version) of a package URL, decoded; enough for display and matching."""
    body = purl.split("#", 1)[0].split("?", 1)[0]
    if body.startswith("pkg:"):
        body = body[4:]
    path, _, version = body.partition("@")
    kind, _, rest = path.partition("/")
    name = rest.rsplit("/", 1)[-1] if rest else kind
    return (kind if rest else None), unquote(name), unquote(version) if version else None


def _finding(
    vuln: _Vulnerability, affects: _Affects, components: dict[str, _Component]
) -> Vulnerability:
    ref = affects.ref
    if ref.startswith("urn:cdx:") and "#" in ref:
        ref = ref.split("#", 1)[1]  # a BOM-Link: the fragment is the bom-ref
    component = components.get(ref) or components.get(unquote(ref))
    purl = component.purl if component and component.purl else None
    if purl is None and ref.startswith("pkg:"):
        purl = ref
    kind, purl_name, purl_version = _purl_parts(purl) if purl else (None, ref, None)
    affected_versions = [
        v.version for v in affects.versions or [] if v.version and v.status != "unaffected"
    ]
    fixed: tuple[str, ...] = ()
    if vuln.recommendation and (match := _RECOMMENDATION.match(vuln.recommendation.strip())):
        fixed = tuple(v.strip() for v in match.group("versions").split(",") if v.strip())
    state = vuln.analysis.state if vuln.analysis else None
    return Vulnerability(
        id=vuln.id or "",
        severity=_severity(vuln),
        package=(component.name if component and component.name else purl_name) or "",
        package_type=kind,
        purl=purl,
        installed_version=(component.version if component else None)
        or (affected_versions[0] if affected_versions else None)
        or purl_version,
        fixed_versions=fixed,
        fix_available=bool(fixed),
        vex_status=_ANALYSIS.get(state or ""),
        title=vuln.description,
        urls=tuple(
            [vuln.source.url if vuln.source and vuln.source.url else ""]
            + [a.url for a in vuln.advisories or [] if a.url]
        ),
        aliases=tuple(r.id for r in vuln.references or [] if r.id and r.id != vuln.id),
    )


def _severity(vuln: _Vulnerability) -> Severity:
    ratings = vuln.ratings or []
    own_source = vuln.source.name if vuln.source else None
    if own_source:
        for rating in ratings:
            if rating.source and rating.source.name == own_source and rating.severity:
                severity = Severity.from_word(rating.severity)
                if severity is not Severity.unknown:
                    return severity
    worded = [Severity.from_word(r.severity) for r in ratings if r.severity]
    known = [s for s in worded if s is not Severity.unknown]
    if known:
        return max(known, key=lambda s: s.rank)
    scores = [r.score for r in ratings if r.score is not None]
    return Severity.from_score(max(scores)) if scores else Severity.unknown
