"""What a killed ``sealgate serve`` loses of the decisions it answered, and what a stopped one
does not: a real uvicorn process on the suite's database (PostgreSQL when available), the
real registry, a burst of concurrent AdmissionReviews (each one decision, recorded with the
review's uid as its source and answered before its record is written).

- SIGKILL during the burst: the answered reviews without a record are at most
  ``SEALGATE_DECISION_BATCH_SIZE``, and every review answered more than
  ``SEALGATE_DECISION_FLUSH_SECONDS`` (plus a margin for one write) before the kill has
  its record: the bound the README states.
- SIGTERM during the burst: every answered review has its record.

The batch size is small here (16) so that a burst is many batches: a writer that let its
queue grow behind a slow database would lose far more than one batch.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from app.audit.chain import lock_chain
from app.audit.entry import AuditEntry
from app.audit.inputs import load_input
from app.db.models import AuditRecord, Decision
from app.db.session import make_session_factory
from app.enforce.outcome import Actor, Outcome
from app.enforce.records import (
    DecisionRecorder,
    ReviewRecord,
    _Pending,
    _Queue,
    entry_or_bare,
    review_entry,
)
from app.oci.refs import ImageRef
from app.policy.decision import PolicyDecision
from app.policy.input import Entrypoint
from tests.api.test_admission import pod_spec, review
from tests.fixtures.images import push_random_image_sync
from tests.fixtures.registry import RegistryProcess
from tests.fixtures.server import ServerProcess

BATCH_SIZE = 16
FLUSH_SECONDS = 0.05
# Time for the writer to finish the batch it is writing and then write the next one, on a
# loaded machine: a record answered this long (plus the flush interval) before the kill
# must be committed.
WRITE_MARGIN = 2.0
# How long the stalled tests hold the chain lock before the signal.
STALL_SECONDS = 1.5
SENDERS = 48
# Answered reviews before the signal: the burst is well under way.
ANSWERED_BEFORE_SIGNAL = 300

pytestmark = pytest.mark.timeout(180)


@dataclass
class Burst:
    """Reviews posted by concurrent senders until the server stops answering."""

    url: str
    image: str
    answered: dict[str, float] = field(default_factory=dict)  # uid -> monotonic time
    errors: list[str] = field(default_factory=list)
    enough: asyncio.Event = field(default_factory=asyncio.Event)

    async def send(self, client: httpx.AsyncClient) -> None:
        while True:
            body = review("Pod", {"metadata": {"name": "p"}, "spec": pod_spec(self.image)})
            uid = body["request"]["uid"]
            try:
                response = await client.post(f"{self.url}/admission/validate", json=body)
            except httpx.TransportError:
                return  # the server is gone (or going): this review was not answered
            if response.status_code != 200:
                self.errors.append(f"{response.status_code} {response.text[:200]}")
                return
            answer: dict[str, Any] = response.json()["response"]
            assert answer["uid"] == uid
            self.answered[uid] = time.monotonic()
            if len(self.answered) >= ANSWERED_BEFORE_SIGNAL:
                self.enough.set()

    async def run(self, meanwhile: Callable[[], Awaitable[float]]) -> float:
        """Send from every sender; once enough are answered, run ``meanwhile`` (which
        signals the server and returns when); wait for the senders; return that moment."""
        limits = httpx.Limits(max_connections=SENDERS, max_keepalive_connections=SENDERS)
        async with httpx.AsyncClient(timeout=60, limits=limits) as client:
            senders = [asyncio.create_task(self.send(client)) for _ in range(SENDERS)]
            await asyncio.wait_for(self.enough.wait(), timeout=120)
            signalled_at = await meanwhile()
            await asyncio.wait_for(asyncio.gather(*senders), timeout=60)
        assert not self.errors, self.errors[:3]
        assert len(self.answered) >= ANSWERED_BEFORE_SIGNAL
        return signalled_at

    def unrecorded(self, engine: Engine) -> dict[str, float]:
        """The answered reviews that have no decision record, with when they were answered."""
        with engine.connect() as conn:
            stored = {s for (s,) in conn.execute(select(Decision.source)) if s is not None}
        return {uid: at for uid, at in self.answered.items() if uid not in stored}


@asynccontextmanager
async def chain_lock_held(engine: Engine) -> AsyncIterator[None]:
    """The audit chain's lock held by the test: every batch's commit waits for it, as it
    would behind a slow database or another replica's long transaction."""
    connection = await asyncio.to_thread(engine.connect)
    session = Session(bind=connection)
    try:
        await asyncio.to_thread(lock_chain, session)
        yield
    finally:
        await asyncio.to_thread(session.rollback)
        session.close()
        await asyncio.to_thread(connection.close)


async def signal_while_stalled(
    server: ServerProcess,
    engine: Engine,
    signum: signal.Signals,
    *,
    before: float = 0.0,
    after: float = 0.0,
) -> float:
    """Hold the chain lock ``before`` seconds, signal the server, hold it ``after`` seconds
    more; return when the signal was sent."""
    async with chain_lock_held(engine):
        await asyncio.sleep(before)
        server.process.send_signal(signum)
        signalled_at = time.monotonic()
        await asyncio.sleep(after)
        return signalled_at


@pytest.fixture
def image(registry: RegistryProcess) -> str:
    pinned, _ = push_random_image_sync(registry, f"t{uuid.uuid4().hex[:8]}/burst")
    return str(ImageRef.parse(str(pinned)))


@pytest.fixture
def server(serve: Callable[..., ServerProcess]) -> ServerProcess:
    return serve(
        env={
            "SEALGATE_DECISION_BATCH_SIZE": str(BATCH_SIZE),
            "SEALGATE_DECISION_FLUSH_SECONDS": str(FLUSH_SECONDS),
            "SEALGATE_WORKER_ENABLED": "false",
            "SEALGATE_ADMISSION_BUDGET": "25",
            "SEALGATE_LOG_LEVEL": "WARNING",
        }
    )


class TestDecisionRecordsOnSignals:
    async def test_sigkill_loses_at_most_one_batch_and_nothing_older(
        self, server: ServerProcess, image: str, test_engine: Engine
    ) -> None:
        async def kill() -> float:
            server.process.send_signal(signal.SIGKILL)
            return time.monotonic()

        burst = Burst(url=server.url, image=image)
        killed_at = await burst.run(kill)
        assert server.process.wait(timeout=10) == -signal.SIGKILL

        lost = burst.unrecorded(test_engine)
        assert len(lost) <= BATCH_SIZE
        settled = killed_at - FLUSH_SECONDS - WRITE_MARGIN
        assert [uid for uid, at in lost.items() if at < settled] == []

    async def test_sigkill_while_commits_stall_loses_at_most_one_batch(
        self, server: ServerProcess, image: str, test_engine: Engine
    ) -> None:
        burst = Burst(url=server.url, image=image)
        await burst.run(
            lambda: signal_while_stalled(server, test_engine, signal.SIGKILL, before=STALL_SECONDS)
        )
        assert server.process.wait(timeout=10) == -signal.SIGKILL

        lost = burst.unrecorded(test_engine)
        assert len(lost) <= BATCH_SIZE, f"{len(lost)} of {len(burst.answered)} answered are lost"

    async def test_sigterm_loses_nothing_even_while_commits_stall(
        self, server: ServerProcess, image: str, test_engine: Engine
    ) -> None:
        burst = Burst(url=server.url, image=image)
        await burst.run(
            lambda: signal_while_stalled(server, test_engine, signal.SIGTERM, after=STALL_SECONDS)
        )
        # uvicorn ends a graceful shutdown by raising the signal it caught again.
        assert server.process.wait(timeout=30) in (0, -signal.SIGTERM)

        assert burst.unrecorded(test_engine) == {}


def _outcome(source: str) -> Outcome:
    digest = "sha256:" + "a" * 64
    return Outcome(
        image=f"registry.example/team/app@{digest}",
        digest=digest,
        entrypoint=Entrypoint.admission,
        allowed=False,
        decision=PolicyDecision(allow=False),
        codes=("signature.missing",),
        source=source,
        input={"image": {"reference": "registry.example/team/app"}},
    )


class TestRecorderSlots:
    """In process: what ``submit`` does when a batch is already uncommitted."""

    async def test_a_submitter_waits_for_room_and_then_beyond_the_bound(
        self, test_engine: Engine, clean_database: Engine
    ) -> None:
        recorder = DecisionRecorder(make_session_factory(test_engine), batch_size=2)
        async with chain_lock_held(test_engine):
            slotted = [await recorder.submit(_outcome(f"s{n}"), wait=5) for n in range(2)]
            # Both slots are taken by records that cannot commit: the third waits for
            # room, then is queued beyond the bound and counted.
            beyond = await recorder.submit(_outcome("s2"), wait=0.3)
            assert recorder.over_bound == 1
            assert not any(f.done() for f in [*slotted, beyond])
        ids = [await asyncio.wrap_future(f) for f in [*slotted, beyond]]
        assert len(set(ids)) == 3
        # Once committed, their slots are free again: the next submit does not wait.
        await recorder.submit(_outcome("s3"), wait=0)
        assert recorder.over_bound == 1
        recorder.close()
        assert recorder.written == 4

    async def test_a_cancelled_submitter_gives_its_slot_back(
        self, test_engine: Engine, clean_database: Engine
    ) -> None:
        recorder = DecisionRecorder(make_session_factory(test_engine), batch_size=1)
        async with chain_lock_held(test_engine):
            first = await recorder.submit(_outcome("s0"), wait=5)
            waiting = asyncio.create_task(recorder.submit(_outcome("gone"), wait=30))
            await asyncio.sleep(0.1)
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
        await asyncio.wrap_future(first)
        # The one slot is free: nothing waits and nothing went beyond the bound.
        await asyncio.wrap_future(await recorder.submit(_outcome("s1"), wait=0))
        assert recorder.over_bound == 0
        recorder.close()
        assert recorder.written == 2

    async def test_a_record_that_cannot_be_made_fails_alone_and_frees_its_slot(
        self, test_engine: Engine, clean_database: Engine
    ) -> None:
        """A record is made where it is submitted: one that cannot be (an input that is
        not JSON data) fails its own future, gives its slot back and is counted; the
        submitter's answer and the next record are not affected."""
        recorder = DecisionRecorder(make_session_factory(test_engine), batch_size=1)
        broken = _outcome("broken").model_copy(update={"input": {"not json": {1, 2}}})
        failed = await recorder.submit(broken, wait=5)
        with pytest.raises(TypeError):
            await asyncio.wrap_future(failed)
        assert recorder.failed == 1
        stored = await asyncio.wrap_future(await recorder.submit(_outcome("fine"), wait=0))
        recorder.close()
        assert recorder.over_bound == 0 and recorder.written == 1
        with Session(test_engine) as session:
            assert [d.source for d in session.scalars(select(Decision))] == ["fine"]
            assert session.get(Decision, stored) is not None


class TestWriterQueue:
    """The writer wakes once per batch: after the flush interval, sooner for a full batch
    or a close."""

    def test_a_full_batch_is_taken_at_once_and_the_rest_after_the_interval(self) -> None:
        queued = _Queue(2)
        for n in range(3):
            queued.put(_Pending(_outcome(f"q{n}"), prepared=None, slotted=True))  # type: ignore[arg-type]
        started = time.monotonic()
        first, closed = queued.take(30.0)
        assert [p.record.source for p in first] == ["q0", "q1"] and not closed
        assert time.monotonic() - started < 10  # the full batch did not wait 30 s
        rest, closed = queued.take(0.05)
        assert [p.record.source for p in rest] == ["q2"] and not closed

    def test_close_wakes_a_waiting_writer_and_reopen_takes_records_again(self) -> None:
        queued = _Queue(10)
        taken: list[tuple[list[_Pending], bool]] = []
        writer = threading.Thread(target=lambda: taken.append(queued.take(30.0)))
        writer.start()
        queued.close()
        writer.join(10)
        assert taken == [([], True)]
        queued.reopen()
        queued.put(_Pending(_outcome("again"), prepared=None, slotted=True))  # type: ignore[arg-type]
        batch, closed = queued.take(0.01)
        assert [p.record.source for p in batch] == ["again"] and not closed


class TestSharedStoredForms:
    """Outcomes of one remembered decision share its input and decision objects: the
    recorder encodes and hashes them once, and never hands one outcome's stored form to
    another whose input differs."""

    async def test_shared_objects_are_stored_once_and_distinct_ones_apart(
        self, test_engine: Engine, clean_database: Engine
    ) -> None:
        first = _outcome("r0")
        shared = [first.model_copy(update={"source": f"r{n}"}) for n in range(1, 4)]
        assert all(o.input is first.input and o.decision is first.decision for o in shared)
        other = _outcome("r4").model_copy(
            update={"input": {"image": {"reference": "registry.example/team/other"}}}
        )
        recorder = DecisionRecorder(make_session_factory(test_engine))
        futures = [await recorder.submit(o, wait=5) for o in [first, *shared, other]]
        ids = [await asyncio.wrap_future(f) for f in futures]
        recorder.close()

        with Session(test_engine) as session:
            rows = {
                d.source: d for d in session.scalars(select(Decision).where(Decision.id.in_(ids)))
            }
            inputs = {d.source: load_input(session, d.input_hash) for d in rows.values()}
        assert len({rows[f"r{n}"].input_hash for n in range(4)}) == 1
        assert rows["r4"].input_hash != rows["r0"].input_hash
        assert inputs["r0"] == first.input and inputs["r4"] == other.input
        assert all(d.result == rows["r0"].result for d in rows.values())

    async def test_rows_sharing_a_decision_keep_their_own_columns(
        self, test_engine: Engine, clean_database: Engine
    ) -> None:
        """The columns a remembered decision answers alike are made once per decision, the
        request's own every time: no row takes another's image, source or actor."""
        first = _outcome("c0")
        changes: list[dict[str, Any]] = [
            {"source": "c1", "request_id": "req-1", "dry_run": True},
            {"source": "c2", "image": "registry.example/team/app:v2", "actor": Actor(name="bob")},
            {"source": "c3", "timings_ms": {"total": 4.5}, "served_by": ("mirror.example",)},
            {"source": "c4", "allowed": True},
            {"source": "c5", "failure": "registry.timeout"},
        ]
        outcomes = [first, *(first.model_copy(update=c) for c in changes)]
        recorder = DecisionRecorder(make_session_factory(test_engine))
        ids = [await asyncio.wrap_future(await recorder.submit(o, wait=5)) for o in outcomes]
        recorder.close()

        with Session(test_engine) as session:
            rows = [session.get(Decision, i) for i in ids]
        for outcome, row in zip(outcomes, rows, strict=True):
            assert row is not None
            assert (row.source, row.image, row.request_id, row.dry_run) == (
                outcome.source,
                outcome.image,
                outcome.request_id,
                outcome.dry_run,
            )
            assert (row.actor, row.latency_ms) == (
                outcome.actor.name,
                outcome.timings_ms.get("total"),
            )
            assert row.served_by == (list(outcome.served_by) if outcome.served_by else None)
            assert (row.allowed, row.failure) == (outcome.allowed, outcome.failure)


class TestReviewRecords:
    async def test_a_review_is_one_audit_record_and_a_decision_per_image_in_order(
        self, test_engine: Engine, clean_database: Engine
    ) -> None:
        web = _outcome("uid-1")
        sidecar = _outcome("uid-1").model_copy(
            update={"image": "registry.example/team/sidecar:1", "input": {"image": "sidecar"}}
        )
        review = ReviewRecord(
            outcomes=(web, sidecar),
            allowed=True,
            uid="uid-1",
            operation="CREATE",
            webhook="validate",
            namespace="prod",
            object="Pod/web-",
            actor=Actor(kind="kubernetes", name="alice"),
            request_id="r-1",
            dry_run=False,
            latency_ms=1.5,
        )
        recorder = DecisionRecorder(make_session_factory(test_engine))
        single = await recorder.submit(_outcome("other"), wait=5)
        both = await recorder.submit_review(review, wait=5)
        single_id, ids = await asyncio.wrap_future(single), await asyncio.wrap_future(both)
        recorder.close()

        with Session(test_engine) as session:
            images = [session.get(Decision, i).image for i in ids]  # type: ignore[union-attr]
            records = list(session.scalars(select(AuditRecord).order_by(AuditRecord.seq)))
        assert isinstance(single_id, int) and single_id not in ids
        assert images == [web.image, sidecar.image]
        assert [r.source for r in records] == ["other", "uid-1"]
        assert records[1].images == [web.image, sidecar.image]
        assert (records[1].object, records[1].actor) == ("Pod/web-", "alice")

    def test_a_review_entry_stays_within_the_audit_limits_whatever_its_images(self) -> None:
        # Control characters are six bytes each in JSON: names the size of a Pod's
        # images, all failed and all answered as warnings, once filled the details over
        # their limit, and the refused entry failed the whole batch.
        images = [f"img-{n}-" + "\x01" * 600 for n in range(300)]
        outcomes = tuple(
            _outcome("uid").model_copy(update={"image": i, "failure": "input.invalid_reference"})
            for i in images
        )
        review = ReviewRecord(
            outcomes=outcomes,
            allowed=True,
            uid="uid",
            operation="UPDATE",
            webhook="validate",
            namespace="n" * 300,
            object="Pod/" + "p" * 600,
            actor=Actor(kind="kubernetes", name="a" * 300),
            request_id="r" * 300,
            dry_run=False,
            latency_ms=1.0,
            warned=tuple(images),
        )

        entry = review_entry(review, input_hash="sha256:" + "0" * 64)

        assert len(entry.images) == 256 and all(len(i) <= 512 for i in entry.images)
        assert entry.details["failed"] == 300 and entry.details["warned"] == 300

    def test_an_entry_its_builder_refuses_is_recorded_bare(self) -> None:
        def refusing(record: object, *, input_hash: str) -> AuditEntry:
            raise ValueError("details are 99999 bytes")

        entry = entry_or_bare(refusing, _outcome("uid"), "sha256:" + "0" * 64)

        assert (entry.kind.value, entry.source, entry.decision) == (
            "admission.decision",
            "recorder:unrecordable",
            "denied",
        )
        assert entry.input_hash == "sha256:" + "0" * 64
