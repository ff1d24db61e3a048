"""The normalised vulnerability report every scanner format is parsed into.

One severity scale (``Severity``), one ``Vulnerability`` shape and one ``ScanReport``
that merges duplicate findings and counts the *effective* ones (those no VEX statement
suppresses) on construction, so no caller can hold a report whose counts disagree with
its findings.

Severity mapping (documented here once, used by every parser):

- scanner words: ``critical``; ``high``/``important``; ``medium``/``moderate``;
  ``low``; ``negligible``/``info``/``informational``/``none``/``minimal`` ->
  negligible; anything else or missing -> unknown (case-insensitive).
- CVSS v3/v4 base scores (also SARIF ``security-severity``): >= 9.0 critical,
  >= 7.0 high, >= 4.0 medium, > 0.0 low, 0.0 negligible (the CVSS v3.1 rating bands).
- SARIF result levels, used only when nothing better is present: ``error`` -> high,
  ``warning`` -> medium, ``note`` -> low, ``none`` -> negligible.
"""

from __future__ import annotations

import datetime as dt
import math
from enum import StrEnum
from functools import cached_property

from pydantic import BaseModel, ConfigDict, Field, computed_field, field_validator

MAX_TITLE_CHARS = 240
MAX_URLS = 16
MAX_SCANNER_CHARS = 64


class ScanSource(StrEnum):
    """Where a scan came from, so policy can weigh how far to trust it."""

    authenticated_upload = "authenticated_upload"
    verified_attestation = "verified_attestation"
    unsigned_referrer = "unsigned_referrer"
    registry_webhook = "registry_webhook"


class Severity(StrEnum):
    critical = "critical"
    high = "high"
    medium = "medium"
    low = "low"
    negligible = "negligible"
    unknown = "unknown"

    @property
    def rank(self) -> int:
        """Higher is worse; ``unknown`` ranks below ``negligible``."""
        return _RANK[self]

    @classmethod
    def from_word(cls, word: str | None) -> Severity:
        """A scanner's severity word on our scale; unknown words give ``unknown``."""
        if not word:
            return cls.unknown
        return _WORDS.get(word.strip().lower(), cls.unknown)

    @classmethod
    def from_score(cls, score: float | str | None) -> Severity:
        """A CVSS base score (0-10, number or numeric string) by the CVSS v3.1 bands."""
        try:
            value = float(score) if score is not None else math.nan
        except ValueError:
            return cls.unknown
        if not 0.0 <= value <= 10.0:  # also rejects NaN
            return cls.unknown
        if value >= 9.0:
            return cls.critical
        if value >= 7.0:
            return cls.high
        if value >= 4.0:
            return cls.medium
        if value > 0.0:
            return cls.low
        return cls.negligible

    @classmethod
    def from_sarif_level(cls, level: str | None) -> Severity:
        return _SARIF_LEVELS.get((level or "").lower(), cls.unknown)


_RANK = {
    Severity.unknown: 0,
    Severity.negligible: 1,
    Severity.low: 2,
    Severity.medium: 3,
    Severity.high: 4,
    Severity.critical: 5,
}
_WORDS = {
    "critical": Severity.critical,
    "high": Severity.high,
    "important": Severity.high,
    "medium": Severity.medium,
    "moderate": Severity.medium,
    "low": Severity.low,
    "negligible": Severity.negligible,
    "info": Severity.negligible,
    "informational": Severity.negligible,
    "none": Severity.negligible,
    "minimal": Severity.negligible,
}
_SARIF_LEVELS = {
    "error": Severity.high,
    "warning": Severity.medium,
    "note": Severity.low,
    "none": Severity.negligible,
}


class VexStatus(StrEnum):
    """A VEX / triage statement about one finding (CycloneDX ``analysis.state`` words)."""

    affected = "affected"
    not_affected = "not_affected"
    resolved = "resolved"
    false_positive = "false_positive"
    in_triage = "in_triage"

    @property
    def suppresses(self) -> bool:
        return self in _SUPPRESSING

    @classmethod
    def from_openvex(cls, status: str | None) -> VexStatus | None:
        """An OpenVEX status word (as Trivy and Grype write them); None when unknown."""
        return _OPENVEX.get(status or "")


_SUPPRESSING = frozenset({VexStatus.not_affected, VexStatus.resolved, VexStatus.false_positive})
_OPENVEX = {
    "not_affected": VexStatus.not_affected,
    "fixed": VexStatus.resolved,
    "false_positive": VexStatus.false_positive,  # not OpenVEX, but Trivy writes it
    "under_investigation": VexStatus.in_triage,
    "affected": VexStatus.affected,
}


class ReportFormat(StrEnum):
    trivy = "trivy"
    grype = "grype"
    sarif = "sarif"
    cyclonedx = "cyclonedx"
    harbor = "harbor"


class Vulnerability(BaseModel):
    """One finding: a vulnerability id in one installed package version."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(min_length=1)
    severity: Severity
    package: str
    package_type: str | None = None
    purl: str | None = None
    installed_version: str | None = None
    fixed_versions: tuple[str, ...] = ()
    fix_available: bool = False
    vex_status: VexStatus | None = None
    title: str | None = None
    urls: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()

    @field_validator("title")
    @classmethod
    def _short_title(cls, value: str | None) -> str | None:
        if value is None:
            return None
        first_line = value.strip().splitlines()[0] if value.strip() else ""
        if len(first_line) > MAX_TITLE_CHARS:
            first_line = first_line[: MAX_TITLE_CHARS - 1] + "…"
        return first_line or None

    @field_validator("urls")
    @classmethod
    def _few_urls(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _unique(value)[:MAX_URLS]

    @property
    def suppressed(self) -> bool:
        """True when a VEX statement says this finding does not apply."""
        return self.vex_status is not None and self.vex_status.suppresses

    @property
    def key(self) -> tuple[str, str, str | None]:
        """What makes two findings the same: (id, package, installed version)."""
        return (self.id, self.package, self.installed_version)


def _unique(values: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(v for v in values if v))


# Fail closed when duplicates disagree: a statement that keeps a finding effective
# outranks one that suppresses it.
_VEX_PRECEDENCE: dict[VexStatus | None, int] = {
    VexStatus.affected: 0,
    VexStatus.in_triage: 1,
    None: 2,
    VexStatus.not_affected: 3,
    VexStatus.resolved: 4,
    VexStatus.false_positive: 5,
}


def merge_findings(a: Vulnerability, b: Vulnerability) -> Vulnerability:
    """Merge two findings with the same key: worst severity, every fix, the least
    suppressing VEX status, the union of urls and aliases."""
    severity = a.severity if a.severity.rank >= b.severity.rank else b.severity
    vex = min((a.vex_status, b.vex_status), key=_VEX_PRECEDENCE.__getitem__)
    return a.model_copy(
        update={
            "severity": severity,
            "package_type": a.package_type or b.package_type,
            "purl": a.purl or b.purl,
            "fixed_versions": _unique(a.fixed_versions + b.fixed_versions),
            "fix_available": a.fix_available or b.fix_available,
            "vex_status": vex,
            "title": a.title or b.title,
            "urls": _unique(a.urls + b.urls)[:MAX_URLS],
            "aliases": _unique(a.aliases + b.aliases),
        }
    )


class ScanReport(BaseModel):
    """A parsed report: who scanned what, when, and the merged findings.

    ``artifact_digests`` are the manifest digests the report says it scanned (from
    repo digests or a manifest digest); ``image_id`` is the image config digest where
    the scanner names one; ``image_names`` the image references it gives, as written
    (the name scanned, repo tags, repo digests). All are claims of the report, checked
    against the image at ingestion (``app.scans.subject``). ``warnings`` lists entries
    that were skipped and why.
    """

    model_config = ConfigDict(frozen=True)

    scanner: str
    scanner_version: str | None = None
    format: ReportFormat
    artifact_name: str | None = None
    artifact_digests: tuple[str, ...] = ()
    image_id: str | None = None
    image_names: tuple[str, ...] = ()
    scanned_at: dt.datetime | None = None
    vulnerabilities: tuple[Vulnerability, ...] = ()
    warnings: tuple[str, ...] = ()

    @field_validator("scanner")
    @classmethod
    def _short_scanner(cls, value: str) -> str:
        # A name, not free text: reports write anything here, storage keeps 64 characters.
        return value.strip()[:MAX_SCANNER_CHARS] or "unknown"

    @field_validator("vulnerabilities")
    @classmethod
    def _merge_duplicates(cls, value: tuple[Vulnerability, ...]) -> tuple[Vulnerability, ...]:
        merged: dict[tuple[str, str, str | None], Vulnerability] = {}
        for finding in value:
            seen = merged.get(finding.key)
            merged[finding.key] = finding if seen is None else merge_findings(seen, finding)
        return tuple(merged.values())

    @computed_field  # type: ignore[prop-decorator]
    @cached_property
    def counts(self) -> dict[str, int]:
        """Effective findings per severity (every level present, zero when none)."""
        counts = {s.value: 0 for s in Severity}
        for finding in self.vulnerabilities:
            if not finding.suppressed:
                counts[finding.severity.value] += 1
        return counts

    @computed_field  # type: ignore[prop-decorator]
    @cached_property
    def suppressed(self) -> int:
        """How many findings a VEX statement suppresses (kept in ``vulnerabilities``)."""
        return sum(1 for f in self.vulnerabilities if f.suppressed)
