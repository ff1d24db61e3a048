"""The straight line from an image to a recorded policy decision.

``evaluate_image`` is what every enforcement point calls (today the API's
``POST /v1/decisions`` and ``sealgate policy decide``; the push and admission entry points
later): it

1. resolves the image and verifies its signatures and attestations against every
   authority whose scope matches it (``app.enforce.verify``);
2. picks the scan the policy sees, most trustworthy first: an authenticated upload stored
   by Sealgate, else a vulnerability attestation whose signature verified, else a scan
   report found unsigned in the registry;
3. builds the versioned policy input and asks the engine within a time budget;
4. records the decision with its input (audit and ``sealgate policy replay``).

It fails closed: a registry that cannot be read, unreadable evidence or an engine that
cannot decide in time give a denial that says why, and that denial is recorded too.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

from pydantic import BaseModel, ConfigDict

from app.db.session import session_scope
from app.enforce.verify import verification_report_for_policy
from app.errors import Error
from app.oci.refs import ImageRef
from app.policy.decision import Finding, PolicyDecision
from app.policy.engines import decide_within
from app.policy.facts import input_for_image
from app.policy.input import (
    AttestationFacts,
    Entrypoint,
    KubernetesContext,
    PolicyInput,
    PolicyVulnerability,
    ScanFacts,
    ScanSource,
    SignatureFacts,
    scan_facts,
)
from app.policy.replay import record_decision
from app.scans.attestation import VULN_PREDICATE_TYPE, report_from_vuln_predicate
from app.scans.ingest import collect_scans
from app.scans.model import ScanReport
from app.services import Services
from app.verify.model import VerifiedSignature

log = logging.getLogger(__name__)

# How long the engine may take for one decision before it counts as a denial.
DECISION_BUDGET_SECONDS = 2.0


class Evaluation(BaseModel):
    """A decision, the exact input it was made on, and where it was recorded."""

    model_config = ConfigDict(frozen=True)

    image: str
    digest: str | None
    entrypoint: Entrypoint
    decision: PolicyDecision
    input: dict[str, object]
    decision_id: int
    policy_version: int | None


def _facts_of_scan(
    report: ScanReport, *, source: ScanSource, evaluated_at: dt.datetime
) -> ScanFacts:
    return scan_facts(
        scanner=report.scanner,
        format=report.format.value,
        scanned_at=report.scanned_at or evaluated_at,
        evaluated_at=evaluated_at,
        vulnerabilities=[PolicyVulnerability.from_finding(f) for f in report.vulnerabilities],
        source=source,
    )


async def _registry_scan(
    services: Services,
    ref: ImageRef,
    attestations: list[VerifiedSignature],
    evaluated_at: dt.datetime,
) -> ScanFacts | None:
    """A verified vulnerability attestation, else the newest unsigned scan referrer."""
    for attestation in attestations:
        if attestation.predicate_type == VULN_PREDICATE_TYPE and attestation.predicate:
            try:
                report = report_from_vuln_predicate(attestation.predicate)
            except Error as e:
                log.warning("unreadable vulnerability attestation", extra={"error": e.message})
                continue
            return _facts_of_scan(
                report, source=ScanSource.verified_attestation, evaluated_at=evaluated_at
            )
    for collected in await collect_scans(services, ref):
        if collected.source is ScanSource.unsigned_referrer:
            return _facts_of_scan(
                collected.report, source=ScanSource.unsigned_referrer, evaluated_at=evaluated_at
            )
    return None


def _denial(code: str, message: str) -> PolicyDecision:
    return PolicyDecision(allow=False, deny=[Finding(code=code, message=message)])


async def gather_input(
    services: Services,
    *,
    image: str,
    entrypoint: Entrypoint,
    kubernetes: KubernetesContext | None = None,
    offline: bool = False,
    offline_digest: str | None = None,
) -> PolicyInput:
    """The policy input the service decides ``image`` on (steps 1 to 3 of the module doc).

    With ``offline`` the registry is not read: no digest resolution (``offline_digest`` may
    name it), no signatures, attestations or registry scans, only the store's facts.
    Raises InputError for an invalid reference and Error (registry, evidence) when the
    evidence cannot be read.
    """
    ref = ImageRef.parse(image)
    evaluated_at = dt.datetime.now(dt.UTC)
    digest = ref.digest or offline_digest
    signatures: list[VerifiedSignature] = []
    attestations: list[VerifiedSignature] = []
    if not offline:
        report = await verification_report_for_policy(services, ref)
        digest = report.digest
        signatures = list(report.signatures)
        attestations = list(report.attestations)

    def _build() -> PolicyInput:
        with session_scope(services.sessions) as session:
            return input_for_image(
                session,
                reference=str(ref),
                entrypoint=entrypoint,
                digest=digest,
                signatures=[SignatureFacts.from_verified(s) for s in signatures],
                attestations=[
                    AttestationFacts(
                        authority=a.authority,
                        predicate_type=a.predicate_type or "",
                        predicate=a.predicate or {},
                    )
                    for a in attestations
                ],
                kubernetes=kubernetes,
                evaluated_at=evaluated_at,
            )

    policy_input = await asyncio.to_thread(_build)
    if policy_input.scan is None and not offline and digest is not None:
        # No authenticated upload stored: look in the registry.
        scan = await _registry_scan(services, ref.with_digest(digest), attestations, evaluated_at)
        if scan is not None:
            policy_input = policy_input.model_copy(update={"scan": scan})
    return policy_input


async def evaluate_image(
    services: Services,
    *,
    image: str,
    entrypoint: Entrypoint,
    kubernetes: KubernetesContext | None = None,
    policy_version: int | None = None,
    budget_seconds: float = DECISION_BUDGET_SECONDS,
) -> Evaluation:
    """Decide whether ``image`` passes the active policy at ``entrypoint``, and record it.

    Raises InputError for an invalid reference (nothing to decide on); every other
    failure becomes a recorded denial.
    """
    ref = ImageRef.parse(image)
    decision: PolicyDecision | None = None
    try:
        policy_input = await gather_input(
            services, image=str(ref), entrypoint=entrypoint, kubernetes=kubernetes
        )
    except Exception as e:  # fail closed on anything, and still record the decision
        reason = e.message if isinstance(e, Error) else f"unexpected {type(e).__name__}"
        if not isinstance(e, Error):
            log.error("evidence failed unexpectedly", extra={"image": str(ref), "error": repr(e)})
        decision = _denial(
            "evidence.unavailable",
            f"{ref}: the evidence could not be read, so the image is denied ({reason})",
        )
        # Record what was known: the reference and the store's facts, nothing from the registry.
        policy_input = await gather_input(
            services, image=str(ref), entrypoint=entrypoint, kubernetes=kubernetes, offline=True
        )
    if decision is None:
        try:
            decision = await asyncio.to_thread(
                decide_within, services.policy, policy_input=policy_input, seconds=budget_seconds
            )
        except Exception as e:
            code = e.code if isinstance(e, Error) else "policy.error"
            reason = e.message if isinstance(e, Error) else f"unexpected {type(e).__name__}"
            decision = _denial(
                code, f"{ref}: the policy could not decide, so the image is denied ({reason})"
            )

    def _record(final: PolicyDecision) -> int:
        with session_scope(services.sessions) as session:
            row = record_decision(
                session, policy_input=policy_input, decision=final, policy_version=policy_version
            )
            return row.id

    decision_id = await asyncio.to_thread(_record, decision)
    return Evaluation(
        image=str(ref),
        digest=policy_input.image.digest,
        entrypoint=entrypoint,
        decision=decision,
        input=policy_input.to_rego(),
        decision_id=decision_id,
        policy_version=policy_version,
    )
