"""Decision records, written off the hot path by a batching writer.

An enforcement point hands its ``Outcome`` to ``DecisionRecorder.submit`` and answers at
once; a writer thread collects records for at most ``BATCH_SECONDS`` (or ``BATCH_SIZE``
records) and writes each batch in one transaction. ``submit`` returns a future of the
record's id, for callers that must say where it was stored (``POST /v1/decisions`` waits
for it: what a caller is told is stored is stored). ``close`` flushes what is queued, on
graceful shutdown.

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
