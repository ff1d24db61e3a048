"""SARIF 2.1.0 vulnerability reports as Trivy (``-f sarif``) and Grype (``-o sarif``) write them.

SARIF has no package fields, so both tools spell them out in text, which is read here:

- Trivy: one rule per vulnerability id (``ruleId`` is the id); each result's message is
  ``Package: P\\nInstalled Version: V\\nVulnerability ID\\nSeverity: S\\nFixed Version: F``.
  ``run.properties`` carries ``imageID`` and ``repoDigests`` (Trivy >= 0.36).
- Grype: one rule per vulnerability *and package* (``ruleId`` is ``ID-package``); the rule's
  ``help.text`` holds ``Vulnerability ID``, ``Severity:``, ``Package:``, ``Version:``,
  ``Fix Version:`` (comma separated) and ``Type:``; ``properties.purls`` the purl; results
  say ``A <severity> vulnerability in <type> package: <name>, version <v> was found ...``
  (older Grype: ``The path ... reports <name> at version <v> ...``).

Severity, best first: the scanner's word (``Severity:`` in the message or help, or a
severity tag), the rule's ``security-severity`` CVSS score, then the result's SARIF
``level`` (default ``warning``). A result whose package cannot be read is kept with an
empty package name rather than dropped, so that it still counts.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field

from app.errors import ScanError
from app.oci.digests import is_digest
from app.scans.document import (
    WireModel,
    digest_of_repo_digest,
    image_names,
    load_document,
    validate_shape,
)
from app.scans.model import ReportFormat, ScanReport, Severity, Vulnerability

_KEY_VALUE = re.compile(r"^\s*([A-Za-z][A-Za-z ]{0,30}):[ \t]*(.*?)\s*$", re.MULTILINE)
_VULNERABILITY_LINE = re.compile(r"^\s*\**Vulnerability (\S+?)\**\s*$", re.MULTILINE)
_GRYPE_MESSAGE = re.compile(
    r"vulnerability in (?P<type>\S+) package: (?P<package>.+?), version (?P<version>\S+) was found"
)
_GRYPE_OLD_MESSAGE = re.compile(r"reports (?P<package>\S+) at version (?P<version>\S+) ")


class _Text(WireModel):
    text: str | None = None


class _RuleProperties(WireModel):
    security_severity: str | float | None = Field(default=None, alias="security-severity")
    tags: list[str] | None = None
    purls: list[str] | None = None


class _Level(WireModel):
    level: str | None = None


class _Rule(WireModel):
    id: str | None = None
    short_description: _Text | None = Field(default=None, alias="shortDescription")
    full_description: _Text | None = Field(default=None, alias="fullDescription")
    help: _Text | None = None
    help_uri: str | None = Field(default=None, alias="helpUri")
    properties: _RuleProperties | None = None
    default_configuration: _Level | None = Field(default=None, alias="defaultConfiguration")


class _Driver(WireModel):
    name: str = ""
    version: str | None = None
    semantic_version: str | None = Field(default=None, alias="semanticVersion")
    rules: list[_Rule] | None = None


class _Tool(WireModel):
    driver: _Driver


class _Result(WireModel):
    rule_id: str | None = Field(default=None, alias="ruleId")
    rule_index: int | None = Field(default=None, alias="ruleIndex")
    level: str | None = None
    message: _Text | None = None


class _RunProperties(WireModel):
    image_id: str | None = Field(default=None, alias="imageID")
    image_name: str | None = Field(default=None, alias="imageName")
    repo_tags: list[str] | None = Field(default=None, alias="repoTags")
    repo_digests: list[str] | None = Field(default=None, alias="repoDigests")


class _Run(WireModel):
    tool: _Tool
    results: list[_Result] | None = None
    properties: _RunProperties | None = None


class _Log(WireModel):
    version: str
    runs: list[_Run]


def parse_sarif(data: bytes) -> ScanReport:
    """Parse a SARIF 2.1.0 log from Trivy or Grype; ScanError when it is not one."""
    return sarif_report(load_document(data))


def looks_like_sarif(document: Any) -> bool:
    return (
        isinstance(document, dict)
        and "runs" in document
        and ("version" in document or "$schema" in document)
    )


def sarif_report(document: Any) -> ScanReport:
    """A ScanReport from a decoded SARIF log (every run's results together)."""
    log = validate_shape(_Log, document, what="SARIF log")
    if log.version != "2.1.0":
        raise ScanError(
            f"SARIF version {log.version!r} is not supported (supported: 2.1.0)",
            code="scan.malformed",
        )
    if not log.runs:
        raise ScanError("the SARIF log has no runs", code="scan.malformed")
    findings: list[Vulnerability] = []
    warnings: list[str] = []
    digests: list[str] = []
    image_id = artifact_name = None
    names: tuple[str, ...] = ()
    for run_index, run in enumerate(log.runs):
        rules = run.tool.driver.rules or []
        by_id = {r.id: r for r in rules if r.id}
        for index, result in enumerate(run.results or []):
            rule = _rule_of(result, rules=rules, by_id=by_id)
            finding = _finding(result, rule)
            if finding is None:
                warnings.append(f"runs[{run_index}].results[{index}]: skipped, no ruleId")
            else:
                findings.append(finding)
        props = run.properties or _RunProperties()
        digests += [d for d in (digest_of_repo_digest(r) for r in props.repo_digests or []) if d]
        if props.image_id and is_digest(props.image_id):
            image_id = props.image_id
        artifact_name = artifact_name or props.image_name
        names += image_names(props.image_name, props.repo_tags, props.repo_digests)
    driver = log.runs[0].tool.driver
    return ScanReport(
        scanner=driver.name.strip().lower() or "unknown",
        scanner_version=driver.version or driver.semantic_version,
        format=ReportFormat.sarif,
        artifact_name=artifact_name,
        artifact_digests=tuple(dict.fromkeys(digests)),
        image_id=image_id,
        image_names=tuple(dict.fromkeys(names)),
        vulnerabilities=tuple(findings),
        warnings=tuple(warnings),
    )


def _rule_of(result: _Result, *, rules: list[_Rule], by_id: dict[str, _Rule]) -> _Rule:
    if result.rule_index is not None and 0 <= result.rule_index < len(rules):
        candidate = rules[result.rule_index]
        if result.rule_id is None or candidate.id == result.rule_id:
            return candidate
    return by_id.get(result.rule_id or "", _Rule())


def _fields(text: str | None) -> dict[str, str]:
    """``Key: value`` lines of a message or help text, keys lower-cased."""
    return {k.strip().lower(): v for k, v in _KEY_VALUE.findall(text or "")}


def _finding(result: _Result, rule: _Rule) -> Vulnerability | None:
    rule_id = result.rule_id or rule.id
    if not rule_id:
        return None
    message = result.message.text if result.message else None
    help_text = rule.help.text if rule.help else None
    # The result's own text wins: Trivy shares one rule among every package it affects.
    fields = {**_fields(help_text), **_fields(message)}
    named = _VULNERABILITY_LINE.search(message or "") or _VULNERABILITY_LINE.search(help_text or "")
    vuln_id = named.group(1) if named else rule_id
    package, version, package_type = (
        fields.get("package", ""),
        fields.get("installed version") or fields.get("version"),
        fields.get("type"),
    )
    grype = _GRYPE_MESSAGE.search(message or "") or _GRYPE_OLD_MESSAGE.search(message or "")
    if grype is not None:
        package = package or grype.group("package")
        version = version or grype.group("version")
        package_type = package_type or grype.groupdict().get("type")
    fixed_text = fields.get("fixed version") or fields.get("fix version") or ""
    fixed = tuple(v.strip() for v in fixed_text.split(",") if v.strip())
    props = rule.properties or _RuleProperties()
    short = rule.short_description.text if rule.short_description else None
    full = rule.full_description.text if rule.full_description else None
    return Vulnerability(
        id=vuln_id,
        severity=_severity(result, rule, fields),
        package=package,
        package_type=package_type or None,
        purl=props.purls[0] if props.purls else None,
        installed_version=version or None,
        fixed_versions=fixed,
        fix_available=bool(fixed),
        title=full if short in (None, vuln_id, rule_id) else short,
        urls=(rule.help_uri,) if rule.help_uri else (),
    )


def _severity(result: _Result, rule: _Rule, fields: dict[str, str]) -> Severity:
    props = rule.properties or _RuleProperties()
    words = [fields.get("severity"), *(props.tags or [])]
    for word in words:
        severity = Severity.from_word(word)
        if severity is not Severity.unknown:
            return severity
    if props.security_severity is not None:
        severity = Severity.from_score(props.security_severity)
        if severity is not Severity.unknown:
            return severity
    default = rule.default_configuration.level if rule.default_configuration else None
    return Severity.from_sarif_level(result.level or default or "warning")
