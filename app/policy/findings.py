"""A scan's facts apart from time, with its findings encoded for the engine once.

A decision over hundreds of findings spent most of its time turning the same findings
into JSON again. ``ScanSnapshot`` holds what a scan says independent of when it is
looked at: the findings as policy sees them, already encoded as a JSON array (canonical
JSON, the bytes the audit trail stores them as), their hash and severity counts.
``at(evaluated_at)`` gives the ``ScanFacts`` for one decision without the findings (their
bytes are spliced into the encoded input, see ``encode_input``), so neither the findings
nor their hash are computed again per decision.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from app.audit.canonical import canonical_json, content_hash
from app.audit.inputs import FINDINGS_KEY
from app.policy.input import (
    PolicyInput,
    PolicyVulnerability,
    ScanFacts,
    scan_facts,
    summary_scan_facts,
)
from app.scans.model import ScanSource

# Stands in for the findings while the rest of the input is encoded; see ``encode_input``.
_FINDINGS_SLOT = "\x00sealgate:findings\x00"
_FINDINGS_SLOT_JSON = orjson.dumps(_FINDINGS_SLOT)


@dataclass(frozen=True)
class ScanSummary:
    """A registry's count of a scan's findings per severity, without the findings (Harbor's
    ``scan_overview``, stored by the push gate): the counts policy sees are these, never
    the ones of the (empty) findings list."""

    counts: dict[str, int]
    fixable: int | None = None

    @classmethod
    def from_stored(cls, summary: dict[str, Any]) -> ScanSummary:
        """The summary of a stored scan row's ``summary``; ``ValueError``/``TypeError`` when
        a count is not a number."""
        counts = summary.get("counts") or {}
        if not isinstance(counts, dict):
            raise TypeError(f"the summary's counts are {type(counts).__name__}, not an object")
        fixable = summary.get("fixable")
        return cls(
            counts={str(k): max(0, int(v)) for k, v in counts.items()},
            fixable=None if fixable is None else max(0, int(fixable)),
        )


@dataclass(frozen=True)
class ScanSnapshot:
    """A scan as policy sees it, independent of the evaluation time: its findings, or, for
    a registry's summary, its counts only (``summary``)."""

    scanner: str
    format: str
    scanned_at: dt.datetime
    source: ScanSource
    vulnerabilities: tuple[PolicyVulnerability, ...] = field(repr=False)
    encoded_findings: bytes = field(repr=False)
    findings_hash: str = ""
    scan_id: int | None = None
    summary: ScanSummary | None = None

    @classmethod
    def build(
        cls,
        *,
        scanner: str,
        format: str,
        scanned_at: dt.datetime,
        source: ScanSource,
        vulnerabilities: Sequence[PolicyVulnerability],
        scan_id: int | None = None,
        summary: ScanSummary | None = None,
    ) -> ScanSnapshot:
        # Canonical JSON, named by its hash: the bytes and the name the audit trail stores
        # the findings under, once for every decision on this scan (``app.audit.inputs``).
        encoded = canonical_json(
            [v.model_dump(mode="json", exclude_none=True) for v in vulnerabilities]
        )
        return cls(
            scanner=scanner,
            format=format,
            scanned_at=scanned_at,
            source=source,
            vulnerabilities=tuple(vulnerabilities),
            encoded_findings=encoded,
            findings_hash=content_hash(encoded),
            scan_id=scan_id,
            summary=summary,
        )

    @property
    def size(self) -> int:
        return len(self.encoded_findings)

    def at(self, evaluated_at: dt.datetime, *, with_findings: bool = False) -> ScanFacts:
        """The scan section of an input evaluated at ``evaluated_at``; the findings list is
        empty unless ``with_findings`` (counts always cover every finding, or are the
        summary's: ``summary_only``)."""
        if self.summary is not None:
            return summary_scan_facts(
                scanner=self.scanner,
                format=self.format,
                scanned_at=self.scanned_at,
                evaluated_at=evaluated_at,
                counts=self.summary.counts,
                fixable=self.summary.fixable,
                source=self.source,
            )
        facts = scan_facts(
            scanner=self.scanner,
            format=self.format,
            scanned_at=self.scanned_at,
            evaluated_at=evaluated_at,
            vulnerabilities=self.vulnerabilities,
            source=self.source,
        )
        return facts if with_findings else facts.model_copy(update={"vulnerabilities": []})


@dataclass(frozen=True)
class EncodedInput:
    """A policy input as the engine receives it, and the key of its decision.

    ``document`` is the input without the findings (small: what records and caches
    keep); ``encoded`` is the whole input as JSON bytes; ``cache_key`` covers every field
    but the evaluation time and the scan's age, with the findings by hash.
    """

    document: dict[str, Any]
    encoded: bytes = field(repr=False)
    cache_key: str
    findings_hash: str | None


def encode_input(policy_input: PolicyInput, scan: ScanSnapshot | None) -> EncodedInput:
    """Encode ``policy_input`` (whose scan section has no findings) with ``scan``'s
    findings spliced in, and compute its decision-cache key.

    The findings are put last in the last key (``scan``), so the placeholder replaced is
    the last occurrence in the bytes: a string elsewhere in the input that happens to
    equal the placeholder can never be mistaken for it.
    """
    document = policy_input.to_rego()
    findings_hash = None
    if scan is not None and "scan" in document:
        section = document.pop("scan")
        section.pop("vulnerabilities", None)
        document["scan"] = {**section, "vulnerabilities": _FINDINGS_SLOT}
        raw = orjson.dumps(document)
        at = raw.rfind(_FINDINGS_SLOT_JSON)
        encoded = raw[:at] + scan.encoded_findings + raw[at + len(_FINDINGS_SLOT_JSON) :]
        findings_hash = scan.findings_hash
        document["scan"] = {**section, "vulnerabilities": {FINDINGS_KEY: findings_hash}}
    else:
        encoded = orjson.dumps(document)
    timeless = {k: v for k, v in document.items() if k != "evaluated_at"}
    if "scan" in timeless:
        timeless["scan"] = {k: v for k, v in timeless["scan"].items() if k != "age_seconds"}
    key = hashlib.blake2b(
        orjson.dumps(timeless, option=orjson.OPT_SORT_KEYS), digest_size=20
    ).hexdigest()
    return EncodedInput(
        document=document, encoded=encoded, cache_key=key, findings_hash=findings_hash
    )
