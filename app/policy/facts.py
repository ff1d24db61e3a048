"""Facts for the policy input that live in Sealgate's own store.

``input_for_image`` is the seam the enforcement layer and ``sealgate policy input`` use:
it takes what verification already established (verified signatures and attestations,
the resolved digest, the Kubernetes context) and adds what the database knows: the
authorities whose scope matches the image and the newest stored scan of its digest (a
registry's summary, stored by the push gate, becomes a ``summary_only`` scan: counts, no
findings).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import ScanRecord
from app.errors import EvidenceError
from app.policy.input import (
    AttestationFacts,
    Entrypoint,
    ImageFacts,
    KubernetesContext,
    PolicyInput,
    PolicyVulnerability,
    ScanFacts,
    SignatureFacts,
    build_input,
    scan_facts,
    summary_scan_facts,
)
from app.scans.model import ScanSource, Vulnerability
from app.verify.trust import matching_authorities


def stored_scan(
    session: Session, *, name: str, digest: str | None, evaluated_at: dt.datetime
) -> ScanFacts | None:
    """The newest scan of ``digest`` uploaded for the repository ``name`` (a scan of the
    same bytes uploaded for another repository does not count), or None.

    Raises EvidenceError when the stored findings cannot be read (fail closed rather
    than decide as if the image had no findings).
    """
    if digest is None:
        return None
    row = session.scalar(
        select(ScanRecord)
        .where(ScanRecord.name == name, ScanRecord.digest == digest)
        .order_by(ScanRecord.scanned_at.desc(), ScanRecord.id.desc())
        .limit(1)
    )
    if row is None:
        return None
    try:
        source = ScanSource(row.source)
        if row.summary.get("summary_only") is True:
            return summary_scan_facts(
                scanner=row.scanner,
                format=row.format,
                scanned_at=row.scanned_at,
                evaluated_at=evaluated_at,
                counts=dict(row.summary.get("counts") or {}),
                fixable=row.summary.get("fixable"),
                source=source,
            )
        findings = [Vulnerability.model_validate(item) for item in row.vulnerabilities]
    except (ValidationError, ValueError, TypeError) as e:
        raise EvidenceError(
            f"the stored scan {row.id} of {digest} cannot be read: {e}", code="evidence.scan"
        ) from e
    return scan_facts(
        scanner=row.scanner,
        format=row.format,
        scanned_at=row.scanned_at,
        evaluated_at=evaluated_at,
        vulnerabilities=[PolicyVulnerability.from_finding(f) for f in findings],
        source=source,
    )


def input_for_image(
    session: Session,
    *,
    reference: str,
    entrypoint: Entrypoint,
    digest: str | None = None,
    signatures: Sequence[SignatureFacts] = (),
    attestations: Sequence[AttestationFacts] = (),
    kubernetes: KubernetesContext | None = None,
    evaluated_at: dt.datetime | None = None,
) -> PolicyInput:
    """The policy input for ``reference`` from verified facts plus the store's facts.

    ``digest`` is the resolved manifest digest when the reference names none;
    ``signatures`` and ``attestations`` must already have verified.
    """
    when = evaluated_at or dt.datetime.now(dt.UTC)
    image = ImageFacts.from_reference(reference, digest=digest)
    authorities = [a.name for a in matching_authorities(session, image.name)]
    return build_input(
        entrypoint=entrypoint,
        image=image,
        authorities=authorities,
        signatures=signatures,
        attestations=attestations,
        scan=stored_scan(session, name=image.name, digest=image.digest, evaluated_at=when),
        kubernetes=kubernetes,
        evaluated_at=when,
    )
