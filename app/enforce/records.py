"""Decision records, written off the hot path by a batching writer.

An enforcement point hands its ``Outcome`` to ``DecisionRecorder.submit`` and answers at
once; a writer thread collects records for at most ``BATCH_SECONDS`` (or ``BATCH_SIZE``
records) and writes each batch in one transaction. ``submit`` returns a future of the
record's id, for callers that must say where it was stored (``POST /v1/decisions`` waits
for it: what a caller is told is stored is stored). ``close`` flushes what is queued, on
graceful shutdown. Each batch also appends one audit record per decision to the audit
trail (``app.audit``), in the same transaction, with the decision's input stored once per
distinct content and referenced by its hash.

What a SIGKILL can lose is bounded: the records submitted since the last commit, that is
at most one batch collected during ``BATCH_SECONDS`` plus the batch being written
(``tests/enforce/test_records.py`` kills a serving process during a burst and counts).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

from sqlalchemy.orm import Session, sessionmaker

from app.audit.canonical import canonical_json, content_hash
from app.audit.chain import append_audit
from app.audit.entry import AuditEntry, AuditKind
from app.db.models import Decision
from app.db.session import session_scope
from app.enforce.outcome import Outcome

log = logging.getLogger(__name__)

BATCH_SECONDS = 0.05
BATCH_SIZE = 256
# Beyond this many queued records, submit blocks briefly rather than grow without bound.
MAX_QUEUED = 20_000


@dataclass
class _Pending:
    outcome: Outcome
    future: Future[int] = field(default_factory=Future)


# The audit kind of a decision at each entry point.
_AUDIT_KINDS = {
    "admission": AuditKind.admission_decision,
    "push": AuditKind.push_verdict,
    "sign": AuditKind.sign_decision,
}


def audit_entry(outcome: Outcome, *, input_hash: str) -> AuditEntry:
    """The audit record of one decision: who asked, about what, what was decided by which
    policy, how long it took, and the hash of the input it was made on."""
    kubernetes = outcome.input.get("kubernetes")
    namespace = kubernetes.get("namespace") if isinstance(kubernetes, dict) else None
    name = None
    if isinstance(kubernetes, dict):
        name = kubernetes.get("name") or kubernetes.get("generate_name")
        name = f"{kubernetes.get('kind')}/{name}" if name else kubernetes.get("kind")
    return AuditEntry(
        kind=_AUDIT_KINDS[outcome.entrypoint.value],
        source=(outcome.source or f"request:{outcome.request_id or 'internal'}")[:256],
        actor=(outcome.actor.name or outcome.actor.kind)[:256],
        namespace=namespace,
        object=name[:512] if isinstance(name, str) else None,
        images=(outcome.image[:512],),
        digests=(outcome.digest,) if outcome.digest else (),
        decision="allowed" if outcome.allowed else "denied",
        reasons=tuple(c[:512] for c in outcome.codes[:256]),
        policy_version=outcome.policy_version,
        policy_revision=outcome.policy_revision,
        latency_ms=outcome.timings_ms.get("total"),
        input_hash=input_hash,
        details={"dry_run": outcome.dry_run, "failure": outcome.failure, "cache": outcome.cache},
    )


def decision_row(outcome: Outcome) -> Decision:
    """The stored form of an outcome: the decision, the input (findings by hash), who
    asked and what decided."""
    return Decision(
        entrypoint=outcome.entrypoint.value,
        image=outcome.image,
        digest=outcome.digest,
        allowed=outcome.allowed,
        result=outcome.decision.model_dump(mode="json"),
        input=outcome.full_input(),
        policy_version=outcome.policy_version,
        policy_revision=outcome.policy_revision,
        failure=outcome.failure,
        actor=outcome.actor.name,
        actor_kind=outcome.actor.kind,
        source=outcome.source,
        request_id=outcome.request_id,
        dry_run=outcome.dry_run,
        latency_ms=outcome.timings_ms.get("total"),
        served_by=list(outcome.served_by) if outcome.served_by else None,
    )


class DecisionRecorder:
    """A writer thread that stores outcomes in batches (see the module doc)."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        batch_seconds: float = BATCH_SECONDS,
        batch_size: int = BATCH_SIZE,
    ) -> None:
        self._sessions = sessions
        self._batch_seconds = batch_seconds
        self._batch_size = batch_size
        self._queue: queue.Queue[_Pending | None] = queue.Queue(maxsize=MAX_QUEUED)
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self.written = 0
        self.failed = 0

    def submit(self, outcome: Outcome) -> Future[int]:
        """Queue ``outcome`` for writing; the future gives the record id once committed."""
        self._ensure_started()
        pending = _Pending(outcome)
        self._queue.put(pending, timeout=5)
        return pending.future

    def _ensure_started(self) -> None:
        if self._thread is None:
            with self._start_lock:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name="decision-recorder", daemon=True
                    )
                    self._thread.start()

    def close(self, timeout: float = 10.0) -> None:
        """Write everything queued, then stop the writer."""
        thread = self._thread
        if thread is None:
            return
        self._queue.put(None)
        thread.join(timeout)
        self._thread = None

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                break
            batch = [first]
            until = time.monotonic() + self._batch_seconds
            while len(batch) < self._batch_size:
                try:
                    item = self._queue.get(timeout=max(0.0, until - time.monotonic()))
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            self._write(batch)

    def _write(self, batch: list[_Pending]) -> None:
        try:
            with session_scope(self._sessions) as session:
                rows = [decision_row(p.outcome) for p in batch]
                session.add_all(rows)
                session.flush()
                ids = [row.id for row in rows]
                # One audit record per decision, its input stored once per content; the
                # chain's lock is taken last and held only until this commit.
                inputs = [canonical_json(row.input) for row in rows]
                entries = [
                    audit_entry(p.outcome, input_hash=content_hash(body))
                    for p, body in zip(batch, inputs, strict=True)
                ]
                append_audit(session, entries, inputs=inputs)
        except Exception as e:  # the writer must outlive a database hiccup
            self.failed += len(batch)
            log.error(
                "decision records could not be written",
                extra={"records": len(batch), "error": repr(e)[:300]},
            )
            for pending in batch:
                pending.future.set_exception(e)
            return
        self.written += len(batch)
        for pending, row_id in zip(batch, ids, strict=True):
            pending.future.set_result(row_id)
