"""The policy input: the versioned, documented contract every Rego decision is made on.

Version 1. The input carries verified facts only (signatures and attestations that
already verified, a scan and where it came from, the Kubernetes context at admission)
plus the entry point, the names of the authorities whose scope matches the image and
the evaluation time. ``build_input`` is the one place it is assembled; evidence
collection and verification hand it their verified results. The JSON Schema of
``PolicyInput`` is served at ``GET /v1/policy/schema`` and written to
``docs/policy-input.md``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from app.errors import InputError
from app.oci.refs import ImageRef
from app.scans.model import ScanSource, Severity, VexStatus, Vulnerability
from app.verify.model import VerifiedSignature

INPUT_VERSION: Literal[1] = 1


class Entrypoint(StrEnum):
    """Where a decision is asked for; each has its own Rego document."""

    sign = "sign"
    push = "push"
    admission = "admission"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ImageFacts(_Frozen):
    """The image as named and as resolved: ``tag`` is None when the reference had none."""

    reference: str = Field(description="The reference as it was given, e.g. 'nginx:1.27'.")
    registry: str = Field(description="Registry host (and port), e.g. 'docker.io'.")
    repository: str = Field(description="Repository path, e.g. 'library/nginx'.")
    tag: str | None = Field(
        default=None,
        description="Tag of the reference; 'latest' when it named neither tag nor digest.",
    )
    digest: str | None = Field(
        default=None, description="Manifest digest ('sha256:...'), resolved or given."
    )
    pinned: bool = Field(
        default=False, description="True when the reference itself names the digest."
    )
    platform: str | None = Field(default=None, description="e.g. 'linux/amd64', when known.")
    served_by: list[str] | None = Field(
        default=None,
        description="The repositories (host/path) the evidence was read from, in first-use "
        "order, when any is not the image's own: a mirror endpoint, a signature repository. "
        "Absent when everything came from the image's own repository.",
    )

    @classmethod
    def from_reference(
        cls,
        reference: str,
        *,
        digest: str | None = None,
        platform: str | None = None,
        served_by: list[str] | None = None,
    ) -> ImageFacts:
        """The facts of a reference as written (Docker Hub defaults applied); ``digest`` is
        the resolved one when the reference names none. InputError for a bad reference."""
        ref = ImageRef.parse(reference)
        return cls(
            reference=reference,
            registry=ref.registry,
            repository=ref.repository,
            tag=ref.tag,
            digest=ref.digest or digest,
            pinned=ref.digest is not None,
            platform=platform,
            served_by=served_by or None,
        )

    @property
    def name(self) -> str:
        """``registry/repository``, the name authority scopes and data patterns match."""
        return f"{self.registry}/{self.repository}"


class SignatureFacts(_Frozen):
    """A signature that verified against a configured authority."""

    authority: str | None = Field(description="Name of the authority it verified against.")
    kind: Literal["key", "keyless"]
    key_id: str | None = Field(default=None, description="Key fingerprint (kind 'key').")
    subject: str | None = Field(default=None, description="Certificate identity (keyless).")
    issuer: str | None = Field(default=None, description="OIDC issuer (keyless).")
    signed_at: dt.datetime | None = Field(default=None, description="Verified signing time.")
    format: str = Field(description="'bundle' (Sigstore bundle referrer) or 'legacy' (.sig).")
    transparency_log: bool = Field(
        default=False, description="True when a transparency-log entry verified."
    )

    @classmethod
    def from_verified(cls, signature: VerifiedSignature) -> SignatureFacts:
        return cls(
            authority=signature.authority,
            kind=signature.kind.value,
            key_id=signature.key_id,
            subject=signature.subject,
            issuer=signature.issuer,
            signed_at=signature.signed_at,
            format=signature.format.value,
            transparency_log=signature.tlog,
        )


class AttestationFacts(_Frozen):
    """An in-toto attestation whose signature verified."""

    authority: str | None = None
    predicate_type: str
    predicate: dict[str, Any] = Field(default_factory=dict)


class PolicyVulnerability(_Frozen):
    id: str
    severity: Severity
    package: str
    installed: str | None = None
    fixed: str | None = None
    fix_available: bool = False
    vex_status: VexStatus | None = Field(
        default=None,
        description="VEX state when a statement applies; not_affected, resolved and "
        "false_positive mean the finding does not apply.",
    )

    @classmethod
    def from_finding(cls, finding: Vulnerability) -> PolicyVulnerability:
        return cls(
            id=finding.id,
            severity=finding.severity,
            package=finding.package,
            installed=finding.installed_version,
            fixed=", ".join(finding.fixed_versions) or None,
            fix_available=finding.fix_available,
            vex_status=finding.vex_status,
        )


class SeverityCounts(_Frozen):
    """Effective findings (no VEX statement suppresses them) per severity."""

    critical: int = 0
    high: int = 0
    medium: int = 0
    low: int = 0
    negligible: int = 0
    unknown: int = 0


class ScanFacts(_Frozen):
    """The newest scan of the image's digest, and how it reached us."""

    scanner: str
    format: str
    scanned_at: dt.datetime
    age_seconds: int = Field(ge=0, description="Seconds between scanned_at and evaluated_at.")
    counts: SeverityCounts
    vulnerabilities: list[PolicyVulnerability] = Field(default_factory=list)
    source: ScanSource
    summary_only: Literal[True] | None = Field(
        default=None,
        description="Set when only the registry's per-severity counts are known (a "
        "registry_webhook summary): there are no findings, so no allowlist entry or VEX "
        "statement can apply.",
    )
    fixable: int | None = Field(
        default=None, ge=0, description="How many findings have a fix (summaries only)."
    )


class ContainerFacts(_Frozen):
    """A container of the admitted object that runs the image."""

    name: str
    type: Literal["container", "init", "ephemeral"]


class KubernetesContext(_Frozen):
    """The admission request's context; fields real requests often omit are optional."""

    namespace: str | None = None
    namespace_labels: dict[str, str] = Field(default_factory=dict)
    kind: str
    name: str | None = None
    generate_name: str | None = Field(
        default=None, description="metadata.generateName, when the object has no name yet."
    )
    operation: str
    user: str | None = None
    groups: list[str] = Field(default_factory=list, description="The requesting user's groups.")
    dry_run: bool = False
    containers: list[ContainerFacts] = Field(
        default_factory=list,
        description="The containers of the object that run this image (name and type).",
    )
    unchanged: bool = Field(
        default=False,
        description="On UPDATE: the image was already in the old object (a scale, a label "
        "change or a rollback); Sealgate reports its denials as warnings unless told to "
        "re-check unchanged images.",
    )


def assumed_kubernetes(entrypoint: Entrypoint, namespace: str | None) -> KubernetesContext | None:
    """The context assumed when someone asks about admission outside a real request:
    a Pod CREATE in ``namespace``. Other entry points have no Kubernetes context."""
    if entrypoint is not Entrypoint.admission:
        return None
    return KubernetesContext(namespace=namespace, kind="Pod", operation="CREATE")


class PolicyInput(_Frozen):
    """Everything a policy may look at for one image at one entry point (version 1)."""

    version: Literal[1] = INPUT_VERSION
    entrypoint: Entrypoint
    evaluated_at: dt.datetime = Field(
        description="When the decision is made (UTC); rules compare expiries and ages to it."
    )
    image: ImageFacts
    authorities: list[str] = Field(
        default_factory=list,
        description="Names of configured authorities whose scope matches the image.",
    )
    signatures: list[SignatureFacts] = Field(default_factory=list)
    attestations: list[AttestationFacts] = Field(default_factory=list)
    scan: ScanFacts | None = None
    kubernetes: KubernetesContext | None = None

    @field_validator("evaluated_at")
    @classmethod
    def _aware(cls, value: dt.datetime) -> dt.datetime:
        if value.tzinfo is None:
            raise ValueError("evaluated_at must carry a time zone")
        return value.astimezone(dt.UTC)

    @classmethod
    def from_json(cls, value: Any) -> PolicyInput:
        """Parse and check a policy input read from a file or a request; InputError if bad."""
        try:
            return cls.model_validate(value)
        except ValidationError as e:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'input'}: {err['msg']}"
                for err in e.errors()[:5]
            )
            raise InputError(f"the policy input is not valid: {problems}") from e

    def to_rego(self) -> dict[str, Any]:
        """The JSON document Rego sees as ``input``.

        Fields without a value are left out rather than written as null: in Rego they
        are simply undefined, and a smaller document is cheaper to hand to the engine
        (the handover dominates a decision over hundreds of findings).
        """
        document: dict[str, Any] = self.model_dump(mode="json", exclude_none=True)
        return document


def input_schema() -> dict[str, Any]:
    """The JSON Schema of policy input version 1."""
    schema = PolicyInput.model_json_schema()
    schema["$id"] = "https://sealgate.dev/schemas/policy-input/v1.json"
    return schema


def scan_facts(
    *,
    scanner: str,
    format: str,
    scanned_at: dt.datetime,
    evaluated_at: dt.datetime,
    vulnerabilities: Sequence[PolicyVulnerability],
    source: ScanSource,
) -> ScanFacts:
    """Build the scan section from plain fields: counts and age are derived, never passed."""
    counts = {severity.value: 0 for severity in Severity}
    for vulnerability in vulnerabilities:
        if vulnerability.vex_status is None or not vulnerability.vex_status.suppresses:
            counts[vulnerability.severity.value] += 1
    age = max(0, int((evaluated_at - scanned_at).total_seconds()))
    return ScanFacts(
        scanner=scanner,
        format=format,
        scanned_at=scanned_at,
        age_seconds=age,
        counts=SeverityCounts(**counts),
        vulnerabilities=list(vulnerabilities),
        source=source,
    )


def build_input(
    *,
    entrypoint: Entrypoint,
    image: ImageFacts,
    authorities: Sequence[str] = (),
    signatures: Sequence[SignatureFacts] = (),
    attestations: Sequence[AttestationFacts] = (),
    scan: ScanFacts | None = None,
    kubernetes: KubernetesContext | None = None,
    evaluated_at: dt.datetime | None = None,
) -> PolicyInput:
    """Assemble the policy input from facts that have already been verified.

    The caller (the enforcement layer) passes only signatures and attestations that
    verified and the names of authorities whose scope matches the image; nothing
    here verifies anything.
    """
    return PolicyInput(
        entrypoint=entrypoint,
        evaluated_at=evaluated_at or dt.datetime.now(dt.UTC),
        image=image,
        authorities=sorted(set(authorities)),
        signatures=list(signatures),
        attestations=list(attestations),
        scan=scan,
        kubernetes=kubernetes,
    )


def summary_scan_facts(
    *,
    scanner: str,
    format: str,
    scanned_at: dt.datetime,
    evaluated_at: dt.datetime,
    counts: dict[str, int],
    fixable: int | None,
    source: ScanSource,
) -> ScanFacts:
    """The scan section from a registry's summary: counts only, marked ``summary_only``."""
    known = {severity.value: max(0, int(counts.get(severity.value, 0))) for severity in Severity}
    age = max(0, int((evaluated_at - scanned_at).total_seconds()))
    return ScanFacts(
        scanner=scanner,
        format=format,
        scanned_at=scanned_at,
        age_seconds=age,
        counts=SeverityCounts(**known),
        source=source,
        summary_only=True,
        fixable=fixable,
    )
