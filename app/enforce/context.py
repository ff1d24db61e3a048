"""What the store knows about an image, kept in memory between decisions.

``StoreContext`` holds a snapshot of the authorities (and the *trust revision*, a hash of
them) and the newest stored scan per (repository, digest). A warm decision reads neither
the database nor the registry. The snapshot is refreshed by ``refresh`` (the service polls
it every few seconds, so changes made on another replica are seen within the interval;
a change made through this process calls ``refresh`` at once). A new trust revision
empties the evidence and decision caches; a new scan drops the cached scan of its digest,
and a new signature made by Sealgate the cached evidence of its digest, with the cached
decisions.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import threading
from dataclasses import dataclass, field

import orjson
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from app.db.models import ScanRecord, SignatureRecord
from app.db.session import session_scope
from app.enforce.caches import DecisionCaches
from app.errors import EvidenceError
from app.policy.findings import ScanSnapshot, ScanSummary
from app.policy.input import PolicyVulnerability
from app.scans.model import ScanSource, Vulnerability
from app.verify.trust import TrustAuthority, list_authorities

log = logging.getLogger(__name__)

DEFAULT_REFRESH_SECONDS = 2.0
_NO_SCAN = "none"


@dataclass(frozen=True)
class TrustSnapshot:
    """Every authority at one moment, and the revision that names that set."""

    revision: str
    authorities: tuple[TrustAuthority, ...]
    _matching: dict[str, tuple[TrustAuthority, ...]] = field(
        default_factory=dict, compare=False, repr=False
    )

    def matching(self, image_name: str) -> tuple[TrustAuthority, ...]:
        """Authorities whose scopes cover ``image_name`` (memoised per name)."""
        found = self._matching.get(image_name)
        if found is None:
            found = tuple(a for a in self.authorities if a.applies_to(image_name))
            if len(self._matching) < 10_000:
                self._matching[image_name] = found
        return found


def trust_revision(authorities: tuple[TrustAuthority, ...]) -> str:
    """A hash over everything an authority vouches with: changes with any add, removal
    or change of one."""
    canonical = orjson.dumps(
        [a.to_json() for a in sorted(authorities, key=lambda a: a.name)],
        option=orjson.OPT_SORT_KEYS,
        default=str,
    )
    return hashlib.sha256(canonical).hexdigest()[:32]


class StoreContext:
    """The store's facts for decisions, cached (see the module doc)."""

    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        caches: DecisionCaches,
    ) -> None:
        self._sessions = sessions
        self._caches = caches
        self._scans = caches.scans
        self._trust: TrustSnapshot | None = None
        self._scan_watermark: int | None = None
        self._signature_watermark: int | None = None
        self._lock = threading.Lock()

    @property
    def current(self) -> TrustSnapshot | None:
        """The trust snapshot if one was loaded (never reads the store)."""
        return self._trust

    def trust(self) -> TrustSnapshot:
        """The current trust snapshot (loaded from the store on first use)."""
        snapshot = self._trust
        if snapshot is None:
            self.refresh()
            snapshot = self._trust
            assert snapshot is not None
        return snapshot

    def refresh(self) -> None:
        """Re-read authorities and the newest scan id; drop what they make stale."""
        with session_scope(self._sessions) as session:
            authorities = tuple(list_authorities(session))
            watermark = session.scalar(select(func.max(ScanRecord.id))) or 0
            fresh_scans: list[tuple[str, str]] = []
            if self._scan_watermark is not None and watermark > self._scan_watermark:
                fresh_scans = [
                    (name, digest)
                    for name, digest in session.execute(
                        select(ScanRecord.name, ScanRecord.digest).where(
                            ScanRecord.id > self._scan_watermark
                        )
                    )
                ]
            signed = session.scalar(select(func.max(SignatureRecord.id))) or 0
            fresh_signatures: list[tuple[str, str]] = []
            if self._signature_watermark is not None and signed > self._signature_watermark:
                fresh_signatures = [
                    (name, digest)
                    for name, digest in session.execute(
                        select(SignatureRecord.image, SignatureRecord.digest).where(
                            SignatureRecord.id > self._signature_watermark
                        )
                    )
                ]
        revision = trust_revision(authorities)
        with self._lock:
            if self._trust is not None and self._trust.revision != revision:
                log.info("trust changed", extra={"trust_revision": revision})
                self._caches.forget_trust()
            if self._trust is None or self._trust.revision != revision:
                self._trust = TrustSnapshot(revision=revision, authorities=authorities)
            if fresh_scans:
                self.forget_scans(fresh_scans)
            if fresh_signatures:
                self.forget_evidence(fresh_signatures)
            self._scan_watermark = watermark
            self._signature_watermark = signed

    def forget_scans(self, keys: list[tuple[str, str]]) -> None:
        """New scans were stored for these (repository, digest) pairs."""
        for key in keys:
            self._scans.discard(key)
        self._caches.forget_scans()

    def forget_evidence(self, images: list[tuple[str, str]]) -> None:
        """New signatures were published for these (repository, digest) pairs: their
        cached evidence (and every cached decision) goes."""
        doomed = set(images)
        self._caches.evidence.discard_where(lambda key: (key[0], key[1]) in doomed)
        self._caches.decisions.clear()

    def remembered_scan(self, *, name: str, digest: str) -> tuple[bool, ScanSnapshot | None]:
        """``(True, scan or None)`` when the stored scan of ``digest`` for ``name`` is in
        memory; ``(False, None)`` when only the store can tell (``stored_scan``)."""
        cached = self._scans.get((name, digest))
        if cached is None:
            return False, None
        return True, None if cached == _NO_SCAN else cached  # type: ignore[return-value]

    def stored_scan(self, *, name: str, digest: str) -> ScanSnapshot | None:
        """The newest authenticated scan of ``digest`` uploaded for ``name``, or None.

        Raises EvidenceError (``evidence.scan``) when the stored findings cannot be read:
        deny rather than decide as if the image had no findings.
        """
        remembered, snapshot = self.remembered_scan(name=name, digest=digest)
        if remembered:
            return snapshot
        key = (name, digest)
        with session_scope(self._sessions) as session:
            snapshot = load_stored_scan(session, name=name, digest=digest)
        self._scans.put(key, snapshot if snapshot is not None else _NO_SCAN)
        return snapshot


def load_stored_scan(session: Session, *, name: str, digest: str) -> ScanSnapshot | None:
    """The newest scan row of ``digest`` for repository ``name`` as a snapshot, or None."""
    row = session.scalar(
        select(ScanRecord)
        .where(ScanRecord.name == name, ScanRecord.digest == digest)
        .order_by(ScanRecord.scanned_at.desc(), ScanRecord.id.desc())
        .limit(1)
    )
    if row is None:
        return None
    try:
        findings = [
            PolicyVulnerability.from_finding(Vulnerability.model_validate(item))
            for item in row.vulnerabilities
        ]
        source = ScanSource(row.source)
        # A registry's summary (the push gate's, from Harbor's webhook): counts, no findings.
        summary = (
            ScanSummary.from_stored(row.summary)
            if row.summary.get("summary_only") is True
            else None
        )
    except (ValidationError, ValueError, TypeError) as e:
        raise EvidenceError(
            f"the stored scan {row.id} of {name}@{digest} cannot be read: "
            f"{str(e).splitlines()[0][:200]}",
            code="evidence.scan",
        ) from e
    scanned_at = row.scanned_at
    if scanned_at.tzinfo is None:
        scanned_at = scanned_at.replace(tzinfo=dt.UTC)
    return ScanSnapshot.build(
        scanner=row.scanner,
        format=row.format,
        scanned_at=scanned_at,
        source=source,
        vulnerabilities=findings,
        scan_id=row.id,
        summary=summary,
    )


class ContextRefresher:
    """A thread that calls ``StoreContext.refresh`` every ``interval`` seconds, so changes
    made on other replicas (or by the CLI) reach this one's caches within the interval."""

    def __init__(self, context: StoreContext, *, interval: float = DEFAULT_REFRESH_SECONDS) -> None:
        self._context = context
        self._interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="context-refresh", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self._interval + 5)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._context.refresh()
            except Exception as e:  # keep serving from the last good snapshot
                log.warning("store context refresh failed", extra={"error": repr(e)[:200]})
