"""Signing an ingested scan as an in-toto vulnerability attestation with a stored key.

The statement uses cosign's vulnerability predicate (``cosign attest --type vuln``,
predicate type ``https://cosign.sigstore.dev/attestation/vuln/v1``), which Kyverno and
policy-controller read: ``invocation``, ``scanner`` (``uri``, ``version``, ``db`` and
``result`` = the scanner's report as JSON) and ``metadata`` (``scanStartedOn``,
``scanFinishedOn``). It is signed in a DSSE envelope inside a Sigstore bundle v0.3 and
pushed as a bundle referrer of the image, like every other Sealgate signature.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.db.base import utcnow
from app.db.session import session_scope
from app.errors import ScanError
from app.oci.client import RegistryClient
from app.oci.refs import ImageRef
from app.scans.detect import parse_report
from app.scans.ingest import ScanAttester
from app.scans.model import ScanReport
from app.signing.bundles import key_dsse_bundle
from app.signing.keys import load_signer
from app.signing.payloads import STATEMENT_TYPE
from app.signing.publish import publish_bundle
from app.signing.signers import KeySigner

VULN_PREDICATE_TYPE = "https://cosign.sigstore.dev/attestation/vuln/v1"
_SCANNER_URIS = {
    "trivy": "pkg:github/aquasecurity/trivy",
    "grype": "pkg:github/anchore/grype",
}


def vuln_statement(*, image: ImageRef, report: ScanReport, raw: bytes) -> bytes:
    """The in-toto Statement of ``report`` (raw bytes ``raw``) about the pinned ``image``."""
    if image.digest is None:
        raise ValueError("a vulnerability statement needs an image pinned to a digest")
    algorithm, _, encoded = image.digest.partition(":")
    scanned = (report.scanned_at or utcnow()).strftime("%Y-%m-%dT%H:%M:%SZ")
    scanner_uri = _SCANNER_URIS.get(report.scanner, report.scanner)
    if report.scanner_version:
        scanner_uri += f"@{report.scanner_version}"
    predicate: dict[str, Any] = {
        "invocation": {"parameters": None, "uri": "", "event_id": "", "builder.id": ""},
        "scanner": {
            "uri": scanner_uri,
            "version": report.scanner_version or "",
            "db": {"uri": "", "version": ""},
            "result": json.loads(raw),  # already parsed once: it is valid JSON
        },
        "metadata": {"scanStartedOn": scanned, "scanFinishedOn": scanned},
    }
    statement = {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": image.name, "digest": {algorithm: encoded}}],
        "predicateType": VULN_PREDICATE_TYPE,
        "predicate": predicate,
    }
    return json.dumps(statement, separators=(",", ":"), sort_keys=True).encode()


def report_from_vuln_predicate(predicate: Any) -> ScanReport:
    """The scan inside a (verified) vuln attestation's predicate: ``scanner.result`` parsed
    in whichever supported format it is. ScanError when there is none or it is unreadable.

    For the evidence collector: a verified attestation with ``VULN_PREDICATE_TYPE`` becomes a
    scan with source ``verified_attestation``.
    """
    scanner = predicate.get("scanner") if isinstance(predicate, dict) else None
    result = scanner.get("result") if isinstance(scanner, dict) else None
    if result is None:
        raise ScanError("the vuln attestation has no scanner.result", code="scan.malformed")
    return parse_report(json.dumps(result).encode())


def key_scan_attester(
    *,
    key_name: str,
    registry: RegistryClient,
    sessions: sessionmaker[Session],
    settings: Settings,
) -> ScanAttester:
    """An ``ingest_scan`` hook that signs each scan with the stored key ``key_name`` (read
    through ``sessions``, opened with the key-encryption key of ``settings``) and pushes the
    attestation with ``registry``.

    The key is loaded when a scan is attested (NotFoundError for an unknown key,
    SigningError for a disabled one, one whose scopes do not cover the image, or a missing
    key-encryption key), before anything is
    stored, so a scan that cannot be attested is not stored either.
    """

    async def attest(image: ImageRef, report: ScanReport, raw: bytes) -> str:
        def _signer() -> KeySigner:
            with session_scope(sessions) as session:
                return load_signer(session, settings=settings, name=key_name, image_name=image.name)

        signer = await asyncio.to_thread(_signer)
        statement = vuln_statement(image=image, report=report, raw=raw)
        bundle = key_dsse_bundle(statement=statement, signer=signer)
        return await publish_bundle(
            registry, image=image, bundle=bundle, predicate_type=VULN_PREDICATE_TYPE
        )

    return attest


def configured_attester(
    *,
    registry: RegistryClient,
    sessions: sessionmaker[Session],
    settings: Settings,
    key_name: str | None = None,
) -> ScanAttester | None:
    """The attester for ``key_name``, else for ``SEALGATE_SCAN_ATTESTATION_KEY``, else None
    (scans are then attached unsigned and only Sealgate's own record vouches for them)."""
    name = key_name or settings.scan_attestation_key
    if not name:
        return None
    return key_scan_attester(key_name=name, registry=registry, sessions=sessions, settings=settings)
