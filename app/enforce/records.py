"""Decision records, written off the hot path by a batching writer.

An enforcement point hands its ``Outcome`` to ``DecisionRecorder.submit`` and answers at
once; a writer thread collects records for at most ``SEALGATE_DECISION_FLUSH_SECONDS``
(or ``SEALGATE_DECISION_BATCH_SIZE`` records) and writes each batch in one transaction.
``submit`` returns a future of the record's id, for callers that must say where it was
stored (``POST /v1/decisions`` waits for it: what a caller is told is stored is stored).
``close`` flushes what is queued, on graceful shutdown. Each batch also appends the audit
records to the audit trail (``app.audit``), in the same transaction: one per decision, and
one per admission review (``submit_review``: a decision row per image, and one record for
the event the API server sent). A decision's input is stored once per distinct content in
the trail's input table, and the decision row and its audit record both name it by its
hash; a review's record names a stored list of its images' inputs.

A record's rows are made where it is submitted (``prepare``: the audit entry with its
hashed members and COPY text, the decision rows, the stored inputs), and the writer only
places the entries in the chain and copies the rows in. The writer is a thread of the same
process, and whatever Python it runs holds the GIL in stretches the event loop waits
behind: made there, a batch's rows were the admission tail (``benchmarks/README.md``).

What a SIGKILL can lose is bounded by construction: at most one batch's worth of records
is ever submitted and not yet committed (an admission review is one record, with a
decision row for each of its images). ``submit`` takes one of ``batch_size`` slots and
a commit gives its batch's slots back, so when the database is slow to commit, answers
wait for room (without blocking their event loop) instead of a queue growing behind it.
A record answered at time t is committed by t + the flush interval + two batch writes
(the one under way and its own). A submitter that finds no room within its wait (the time
left in its decision's deadline) is queued anyway rather than fail its answer, and is
counted and logged as beyond the bound. ``tests/enforce/test_records.py`` kills a serving
process during a burst, with and without commits stalled, and counts.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, overload

from sqlalchemy import insert
from sqlalchemy.orm import Session, sessionmaker

from app.audit.canonical import canonical_json
from app.audit.chain import PreparedEntry, append_prepared, prepare_entry
from app.audit.entry import AuditEntry, AuditKind
from app.audit.inputs import FINDINGS_KEY, InputBody, ReviewImage, review_inputs_body
from app.db.base import Base, utcnow
from app.db.bulk import CopyLines, copy_lines, postgresql_lines, psycopg_connection
from app.db.models import Decision
from app.db.session import session_scope
from app.enforce.outcome import Actor, Outcome

log = logging.getLogger(__name__)

BATCH_SECONDS = 0.05
BATCH_SIZE = 1024
# At most one warning this often while records are queued beyond the bound.
_OVER_BOUND_LOG_SECONDS = 10.0


@dataclass(frozen=True)
class ReviewRecord:
    """One admission review, recorded as one audit event: the outcome of each distinct
    image (each also a decision row) and the answer the API server was sent, which is not
    always theirs (an unchanged image's denial is answered as a warning)."""

    outcomes: tuple[Outcome, ...]
    allowed: bool
    uid: str
    operation: str
    webhook: str  # "validate" or "mutate"
    namespace: str | None
    object: str | None  # "Kind/name" or "Kind/generateName"
    actor: Actor
    request_id: str | None
    dry_run: bool
    latency_ms: float
    # Images whose denials were answered as warnings (unchanged on UPDATE).
    warned: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class _Prepared:
    """A record's rows, made where it was submitted (``DecisionRecorder.prepare``): its
    stored inputs, its audit entry and its decision rows (each a COPY line without its id
    on PostgreSQL, else the row's values)."""

    inputs: tuple[InputBody, ...]
    entry: PreparedEntry
    decisions: tuple[dict[str, Any] | str, ...]


@dataclass
class _Pending:
    record: Outcome | ReviewRecord
    prepared: _Prepared
    # Whether the record holds one of the recorder's slots (False: queued beyond the bound).
    slotted: bool
    # The decision id (an Outcome), or the ids of the review's outcomes in order.
    future: Future[Any] = field(default_factory=Future)

    @property
    def outcomes(self) -> tuple[Outcome, ...]:
        record = self.record
        return record.outcomes if isinstance(record, ReviewRecord) else (record,)


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class _Slots:
    """Room for ``size`` records submitted and not yet committed, shared by every thread
    and event loop that submits. ``take`` waits for room without blocking its loop; the
    writer thread gives room back, first come first served."""

    def __init__(self, size: int) -> None:
        self._free = size
        self._lock = threading.Lock()
        self._waiting: deque[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = deque()

    async def take(self, *, wait: float) -> bool:
        """Take one slot; False when none came free within ``wait`` seconds."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._free > 0 and not self._waiting:
                self._free -= 1
                return True
            waiter = (loop, loop.create_future())
            self._waiting.append(waiter)
        try:
            await asyncio.wait_for(waiter[1], timeout=wait)
        except TimeoutError:
            # A slot handed over just as the wait ran out is ours all the same.
            return not self._withdraw(waiter)
        except BaseException:  # cancelled: give back a slot handed over meanwhile
            if not self._withdraw(waiter):
                self.give_back(1)
            raise
        return True

    def _withdraw(self, waiter: tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]) -> bool:
        """Stop waiting; False when a slot was already handed to ``waiter`` (``give_back``
        takes a waiter off the line and hands it a slot in one step, under the lock)."""
        with self._lock:
            if waiter in self._waiting:
                self._waiting.remove(waiter)
                return True
            return False

    def give_back(self, count: int) -> None:
        """Return ``count`` slots and hand them to the longest waiting submitters."""
        with self._lock:
            self._free += count
            while self._free > 0 and self._waiting:
                loop, waiter = self._waiting.popleft()
                self._free -= 1
                try:
                    loop.call_soon_threadsafe(_wake, waiter)
                except RuntimeError:  # that loop is closed: nobody waits there any more
                    self._free += 1


# The audit kind of a decision at each entry point.
_AUDIT_KINDS = {
    "admission": AuditKind.admission_decision,
    "push": AuditKind.push_verdict,
    "sign": AuditKind.sign_decision,
}


@overload
def _cut(text: str, size: int) -> str: ...
@overload
def _cut(text: str | None, size: int) -> str | None: ...
def _cut(text: str | None, size: int) -> str | None:
    """``text`` as a column of ``size`` characters can hold it. What a Pod author or a
    tool sends (image strings, names, uids) is cut, and a NUL, which PostgreSQL's text
    refuses, replaced; never refused: one value the database would not take fails the
    whole batch, losing the records of everyone in it."""
    if not text:
        return text
    return text[:size].replace("\x00", "\ufffd")


def _source(source: str | None, request_id: str | None) -> str:
    """Where a decision came from, as its audit record says: the admission request uid or
    registry event id, else the API request."""
    return _cut(source or f"request:{request_id or 'internal'}", 256)


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
        source=_source(outcome.source, outcome.request_id),
        actor=_cut(outcome.actor.name or outcome.actor.kind, 256),
        namespace=_cut(namespace, 253) if isinstance(namespace, str) else None,
        object=_cut(name, 512) if isinstance(name, str) else None,
        images=(_image_text(outcome.image),),
        digests=(outcome.digest,) if outcome.digest else (),
        decision="allowed" if outcome.allowed else "denied",
        reasons=tuple(c[:512] for c in outcome.codes[:256]),
        policy_version=outcome.policy_version,
        policy_revision=_cut(outcome.policy_revision, 128),
        latency_ms=outcome.timings_ms.get("total"),
        input_hash=input_hash,
        details={"dry_run": outcome.dry_run, "failure": outcome.failure, "cache": outcome.cache},
    )


def review_entry(review: ReviewRecord, *, input_hash: str) -> AuditEntry:
    """The audit record of one admission review: the object and who asked, its images and
    the digests decided on, the answer and the codes behind it, the policy that decided,
    the review's latency, and the stored input (``review_inputs``) holding each image's
    own decision and input. The details are counts, so their size is bounded whatever the
    object holds."""
    outcomes = review.outcomes
    warned = set(review.warned)
    decided_by = next((o for o in outcomes if o.policy_version is not None), outcomes[0])
    details: dict[str, Any] = {
        "operation": review.operation,
        "webhook": review.webhook,
        "dry_run": review.dry_run,
        "images": len(outcomes),
        "cached": sum(1 for o in outcomes if o.cache == "decision"),
        "failed": sum(1 for o in outcomes if o.failure is not None),
        "warned": sum(1 for o in outcomes if o.image in warned),
    }
    if review.request_id:
        details["request_id"] = _cut(review.request_id, 128)
    return AuditEntry(
        kind=AuditKind.admission_decision,
        source=_source(review.uid, review.request_id),
        actor=_cut(review.actor.name or review.actor.kind, 256),
        namespace=_cut(review.namespace, 253),
        object=_cut(review.object, 512),
        images=tuple(_image_text(o.image) for o in outcomes[:256]),
        digests=tuple(dict.fromkeys(o.digest for o in outcomes if o.digest))[:256],
        decision="allowed" if review.allowed else "denied",
        reasons=tuple(dict.fromkeys(c[:512] for o in outcomes for c in o.codes))[:256],
        policy_version=decided_by.policy_version,
        policy_revision=_cut(decided_by.policy_revision, 128),
        latency_ms=review.latency_ms,
        input_hash=input_hash,
        details=details,
    )


def review_inputs(review: ReviewRecord, names: list[str]) -> tuple[ReviewImage, ...]:
    """What a review's stored input lists: each image's own decision and input name."""
    warned = set(review.warned)
    return tuple(
        ReviewImage(
            image=o.image,
            digest=o.digest,
            allowed=o.allowed,
            warned=o.image in warned,
            codes=o.codes,
            input=name,
        )
        for o, name in zip(review.outcomes, names, strict=True)
    )


def entry_or_bare(
    build: Callable[..., AuditEntry], record: Outcome | ReviewRecord, input_hash: str
) -> AuditEntry:
    """``build(record)``, or, should it refuse what the record holds (a bug: the builders
    cut everything to size), a record of the event with the input's name only, logged:
    one refused entry would otherwise fail the whole batch."""
    try:
        return build(record, input_hash=input_hash)
    except ValueError as e:
        log.error("audit entry refused; recorded without details", extra={"error": str(e)[:300]})
        first = record.outcomes[0] if isinstance(record, ReviewRecord) else record
        return AuditEntry(
            kind=_AUDIT_KINDS[first.entrypoint.value],
            source="recorder:unrecordable",
            actor="recorder",
            decision="allowed" if record.allowed else "denied",
            input_hash=input_hash,
        )


def _image_text(image: str) -> str:
    """An image as an audit record lists it (an empty string in the object included)."""
    return _cut(image, 512) or '""'


def input_body(outcome: Outcome) -> InputBody:
    """What is stored of an outcome's input: the input with its findings named by their
    hash (as the pipeline encoded it), and the findings, stored once per scan."""
    scan = outcome.input.get("scan")
    named = scan.get("vulnerabilities") if isinstance(scan, dict) else None
    if outcome.encoded_findings is not None and isinstance(named, dict):
        return InputBody(
            document=canonical_json(outcome.input),
            findings=outcome.encoded_findings,
            findings_name=named[FINDINGS_KEY],
        )
    return InputBody(canonical_json(outcome.full_input()))


def decision_values(outcome: Outcome, *, input_hash: str, result: dict[str, Any]) -> dict[str, Any]:
    """The stored form of an outcome, as the ``decisions`` row's values: the decision
    (``result``, its stored form), the name of its stored input, who asked and what
    decided."""
    return {
        **_decided_values(outcome, input_hash=input_hash, result=result),
        **_event_values(outcome),
    }


def _decided_values(outcome: Outcome, *, input_hash: str, result: dict[str, Any]) -> dict[str, Any]:
    """The columns of a decision row that a remembered decision answers alike each time."""
    return {
        "entrypoint": outcome.entrypoint.value,
        "image": _cut(outcome.image, 512),
        "digest": outcome.digest,
        "allowed": outcome.allowed,
        "result": result,
        "input_hash": input_hash,
        "policy_version": outcome.policy_version,
        "policy_revision": _cut(outcome.policy_revision, 64),
        "failure": _cut(outcome.failure, 64),
        "served_by": list(outcome.served_by) if outcome.served_by else None,
    }


def _event_values(outcome: Outcome) -> dict[str, Any]:
    """The columns of a decision row that are this request's own."""
    return {
        "actor": _cut(outcome.actor.name, 256),
        "actor_kind": outcome.actor.kind,
        "source": _cut(outcome.source, 256),
        "request_id": _cut(outcome.request_id, 128),
        "dry_run": outcome.dry_run,
        "latency_ms": outcome.timings_ms.get("total"),
        "created_at": utcnow(),
    }


_DECIDED_COLUMNS = (
    "entrypoint",
    "image",
    "digest",
    "allowed",
    "result",
    "input_hash",
    "policy_version",
    "policy_revision",
    "failure",
    "served_by",
)
_EVENT_COLUMNS = (
    "actor",
    "actor_kind",
    "source",
    "request_id",
    "dry_run",
    "latency_ms",
    "created_at",
)
# A decision's COPY line: its id (drawn when it is written), then these.
_DECISION_COLUMNS = (*_EVENT_COLUMNS, *_DECIDED_COLUMNS)


class _StoredForms:
    """The stored forms of inputs and decisions, made once per object.

    A remembered decision hands every outcome it answers the same input and the same
    decision objects (``app.enforce.pipeline``), so a warm cluster's records share them:
    encoding and hashing each one again was a third of the writer's time, measured. Kept
    by identity, each entry holding its objects so that their ids cannot be reused, and
    forgotten wholesale past ``size`` entries. Every submitting thread uses it (records
    are prepared where they are submitted): each step is one dictionary operation, and a
    race can only make a form twice.
    """

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._inputs: dict[tuple[int, ...], tuple[tuple[object, ...], Any]] = {}
        self._results: dict[tuple[int, ...], tuple[tuple[object, ...], Any]] = {}
        self._reviews: dict[tuple[ReviewImage, ...], InputBody] = {}
        self._decided: dict[tuple[Any, ...], tuple[object, str]] = {}

    def review_inputs(self, images: tuple[ReviewImage, ...]) -> InputBody:
        """A review's stored input, by value: the same Pod's reviews name the same inputs."""
        made = self._reviews.get(images)
        if made is None:
            if len(self._reviews) >= self._size:
                self._reviews.clear()
            made = self._reviews[images] = review_inputs_body(images)
        return made

    def input_body(self, outcome: Outcome) -> InputBody:
        made = self._once(
            self._inputs, (outcome.input, outcome.encoded_findings), lambda: input_body(outcome)
        )
        assert isinstance(made, InputBody)
        return made

    def decision_line(self, outcome: Outcome, *, input_hash: str) -> str:
        """``decision_line`` of the outcome's row: its own columns made now, the columns a
        remembered decision answers alike made once per decision and what else they hold
        (they were half of a warm review's record, measured)."""
        decision = outcome.decision
        key = (
            id(decision),
            outcome.entrypoint,
            outcome.allowed,
            outcome.image,
            outcome.digest,
            input_hash,
            outcome.policy_version,
            outcome.policy_revision,
            outcome.failure,
            outcome.served_by,
        )
        held = self._decided.get(key)
        if held is not None and held[0] is decision:
            decided = held[1]
        else:
            decided = _decided_line(
                _decided_values(outcome, input_hash=input_hash, result=self.result(outcome))
            )
            if len(self._decided) >= self._size:
                self._decided.clear()
            self._decided[key] = (decision, decided)
        return _event_line(_event_values(outcome)) + "\t" + decided

    def result(self, outcome: Outcome) -> dict[str, Any]:
        decision = outcome.decision
        made = self._once(self._results, (decision,), lambda: decision.model_dump(mode="json"))
        assert isinstance(made, dict)
        return made

    def _once(
        self,
        memo: dict[tuple[int, ...], tuple[tuple[object, ...], Any]],
        objects: tuple[object, ...],
        make: Callable[[], Any],
    ) -> Any:
        """What ``make`` made for these very ``objects``, made now if they are new."""
        key = tuple(map(id, objects))
        held = memo.get(key)
        if held is not None and all(a is b for a, b in zip(held[0], objects, strict=True)):
            return held[1]
        value = make()
        if len(memo) >= self._size:
            memo.clear()
        memo[key] = (objects, value)
        return value


_DECISIONS = Base.metadata.tables[Decision.__tablename__]
# Ids for a batch in one round trip, ascending in the batch's order.
_NEXT_IDS = "SELECT nextval(pg_get_serial_sequence('decisions', 'id')) FROM generate_series(1, %s)"


def insert_decisions(session: Session, rows: Sequence[dict[str, Any] | str]) -> list[int]:
    """Insert ``rows`` in the session's transaction; their ids. A row is its values
    (``decision_values``) or, on PostgreSQL, its COPY line without the id
    (``decision_line``).

    On PostgreSQL the ids are drawn from the table's sequence first and the rows copied in
    (``app.db.bulk``): ``INSERT … RETURNING`` of a batch is a new multi-row statement for
    each batch size, which the driver parses anew every time (a quarter of a record's
    cost, measured). SQLite, in process, takes the rows with ``RETURNING``.
    """
    if not rows:
        return []
    if session.get_bind().dialect.name == "postgresql":
        drawn = psycopg_connection(session).execute(_NEXT_IDS, (len(rows),))
        ids = sorted(int(row[0]) for row in drawn)
        lines = [
            f"{i}\t{row if isinstance(row, str) else decision_line(row)}"
            for row, i in zip(rows, ids, strict=True)
        ]
        copy_lines(session, _DECISIONS, ("id", *_DECISION_COLUMNS), lines)
        return ids
    values = [row for row in rows if isinstance(row, dict)]
    if len(values) != len(rows):
        raise ValueError("COPY lines of decisions are for PostgreSQL only")
    inserted = session.execute(
        insert(_DECISIONS).returning(_DECISIONS.c.id, sort_by_parameter_order=True), values
    )
    return [int(i) for i in inserted.scalars()]


def decision_line(values: dict[str, Any]) -> str:
    """The COPY line of a decision row's ``values`` (``decision_values``), without its id."""
    return _event_line(values) + "\t" + _decided_line(values)


def _event_line(values: dict[str, Any]) -> str:
    return _decision_copy()[0].line([values[c] for c in _EVENT_COLUMNS])


def _decided_line(values: dict[str, Any]) -> str:
    return _decision_copy()[1].line([values[c] for c in _DECIDED_COLUMNS])


@functools.cache
def _decision_copy() -> tuple[CopyLines, CopyLines]:
    """COPY text of a decision row's own columns, and of those a remembered decision
    answers alike."""
    return postgresql_lines(_DECISIONS, _EVENT_COLUMNS), postgresql_lines(
        _DECISIONS, _DECIDED_COLUMNS
    )


class _Queue:
    """The records waiting for the writer, which wakes once per batch, not per record.

    The writer waits for a first record, then for the flush interval or a full batch,
    whichever comes first, and takes up to a batch. A submitter does not wake it for each
    record: every wake-up is the writer taking the GIL from the event loop mid-answer
    (``queue.Queue`` woke it per record: a fifth of its CPU, measured). ``close`` wakes it
    to write what is left and stop.
    """

    def __init__(self, batch_size: int) -> None:
        self._batch_size = batch_size
        self._items: deque[_Pending] = deque()
        self._lock = threading.Lock()
        self._queued = threading.Event()  # something to write, or closing
        self._full = threading.Event()  # a batch to write, or closing
        self._closed = False

    def put(self, item: _Pending) -> None:
        with self._lock:
            self._items.append(item)
            count = len(self._items)
        if count == 1:
            self._queued.set()
        if count >= self._batch_size:
            self._full.set()

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self._queued.set()
        self._full.set()

    def reopen(self) -> None:
        """Take records again after ``close`` (once its writer has stopped)."""
        with self._lock:
            self._closed = False
            if not self._items:
                self._queued.clear()
            if len(self._items) < self._batch_size:
                self._full.clear()

    def take(self, flush_seconds: float) -> tuple[list[_Pending], bool]:
        """Up to a batch of records once the first has waited ``flush_seconds`` (or a
        batch is queued, or the queue is closing), and whether it is closed."""
        self._queued.wait()
        self._full.wait(flush_seconds)
        with self._lock:
            batch = [self._items.popleft() for _ in range(min(self._batch_size, len(self._items)))]
            if not self._items and not self._closed:
                self._queued.clear()
            if len(self._items) < self._batch_size and not self._closed:
                self._full.clear()
            return batch, self._closed


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
        bind = sessions.kw.get("bind")
        self._postgres = bind is not None and bind.dialect.name == "postgresql"
        self._batch_seconds = batch_seconds
        self._batch_size = batch_size
        # Unbounded: the slots bound what is queued (beyond-the-bound records aside).
        self._queue = _Queue(batch_size)
        self._slots = _Slots(batch_size)
        self._forms = _StoredForms()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self.written = 0
        self.failed = 0
        self.over_bound = 0
        self._over_bound_logged = 0.0

    async def submit(self, outcome: Outcome, *, wait: float) -> Future[int]:
        """Queue ``outcome`` for writing once fewer than a batch of records are uncommitted,
        waiting up to ``wait`` seconds for that (then queue it beyond the bound, logged);
        the future gives the decision's id once committed."""
        return await self._queue_record(outcome, wait=wait)

    async def submit_review(self, review: ReviewRecord, *, wait: float) -> Future[tuple[int, ...]]:
        """Queue an admission review as ``submit`` does an outcome: one audit record for
        the review and a decision row per image; the future gives their decision ids."""
        return await self._queue_record(review, wait=wait)

    async def _queue_record(self, record: Outcome | ReviewRecord, *, wait: float) -> Future[Any]:
        self._ensure_started()
        slotted = await self._slots.take(wait=wait)
        if not slotted:
            self._note_over_bound()
        try:
            prepared = self.prepare(record)
        except Exception as e:  # a bug; the caller's answer must not fail for its record
            if slotted:
                self._slots.give_back(1)
            self.failed += 1
            log.error("decision record could not be made", extra={"error": repr(e)[:300]})
            failed: Future[Any] = Future()
            failed.set_exception(e)
            return failed
        pending = _Pending(record, prepared, slotted=slotted)
        self._queue.put(pending)
        return pending.future

    def prepare(self, record: Outcome | ReviewRecord) -> _Prepared:
        """``record``'s rows, ready for the writer: made by the submitting thread (the
        event loop's, between answers), so that the writer thread, which competes with the
        loop for the GIL in long stretches, only places the rows in the chain and copies
        them in. Measured: that thread's work was a quarter of a warm review's CPU, and the
        answers it delayed were the admission tail (``benchmarks/README.md``)."""
        outcomes = record.outcomes if isinstance(record, ReviewRecord) else (record,)
        bodies = [self._forms.input_body(o) for o in outcomes]
        names = [body.name for body in bodies]
        if isinstance(record, ReviewRecord):
            stored = self._forms.review_inputs(review_inputs(record, names))
            bodies.append(stored)
            entry = entry_or_bare(review_entry, record, stored.name)
        else:
            entry = entry_or_bare(audit_entry, record, names[0])
        decisions: tuple[dict[str, Any] | str, ...]
        if self._postgres:
            decisions = tuple(
                self._forms.decision_line(o, input_hash=name)
                for o, name in zip(outcomes, names, strict=True)
            )
        else:
            decisions = tuple(
                decision_values(o, input_hash=name, result=self._forms.result(o))
                for o, name in zip(outcomes, names, strict=True)
            )
        return _Prepared(
            inputs=tuple(bodies),
            entry=prepare_entry(entry, copy_text=self._postgres),
            decisions=decisions,
        )

    def _note_over_bound(self) -> None:
        self.over_bound += 1
        now = time.monotonic()
        if now - self._over_bound_logged >= _OVER_BOUND_LOG_SECONDS:
            self._over_bound_logged = now
            log.warning(
                "decision records are not being committed in time: records queued beyond "
                "one batch, which a SIGKILL would lose",
                extra={"over_bound": self.over_bound, "batch_size": self._batch_size},
            )

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
        self._queue.close()
        thread.join(timeout)
        self._thread = None
        if not thread.is_alive():
            self._queue.reopen()  # a later submit starts a writer again

    def _run(self) -> None:
        while True:
            batch, closed = self._queue.take(self._batch_seconds)
            if batch:
                self._write(batch)
            if closed and not batch:
                return

    def _write(self, batch: list[_Pending]) -> None:
        try:
            ids = self._commit(batch)
        except Exception as e:  # the writer must outlive a database hiccup
            self.failed += len(batch)
            log.error(
                "decision records could not be written",
                extra={"records": len(batch), "error": repr(e)[:300]},
            )
            outcomes: list[tuple[int, ...] | Exception] = [e] * len(batch)
        else:
            self.written += len(batch)
            outcomes = list(ids)
        # Room first, then the answers: whoever learns its record is stored finds the
        # room it left.
        self._slots.give_back(sum(1 for p in batch if p.slotted))
        for pending, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, Exception):
                pending.future.set_exception(outcome)
            elif isinstance(pending.record, ReviewRecord):
                pending.future.set_result(outcome)
            else:
                pending.future.set_result(outcome[0])

    def _commit(self, batch: list[_Pending]) -> list[tuple[int, ...]]:
        """Write ``batch`` in one transaction; return the decision ids of each record.

        One audit record per outcome or review, one decision row per outcome, and each
        input stored once per content, under the chain's lock (held until this commit): a
        retention purge cannot delete an old input between its store and the decisions
        that name it, inserted last.
        """
        # Once per content: a warm cluster's batch names the same few inputs many times.
        inputs = list(
            {body.name: body for pending in batch for body in pending.prepared.inputs}.values()
        )
        entries = [pending.prepared.entry for pending in batch]
        rows = [row for pending in batch for row in pending.prepared.decisions]
        with session_scope(self._sessions) as session:
            append_prepared(session, entries, inputs=inputs)
            ids = iter(insert_decisions(session, rows))
        return [tuple(next(ids) for _ in pending.outcomes) for pending in batch]
