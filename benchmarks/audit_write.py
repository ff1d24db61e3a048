"""Audit write cost per record on PostgreSQL, batches of 1 and of 50, next to a bare INSERT.

What the batching decision writer pays for the audit chain: each timed transaction inserts
``batch`` decision-like rows into a plain table (the **baseline**: a bare ``INSERT`` of the
same rows, no lock, no chain), and the **subject** does the same and then
``app.audit.chain.append_audit`` of ``batch`` admission-decision entries in the same
transaction (advisory lock, head read, canonical JSON + SHA-256 per record, record and
image-index inserts). The two take turns; the difference divided by ``batch`` is the cost
the chain adds per decision, in wall time and in this process's CPU time. A second
measurement runs ``--writers`` threads appending batches of 1 at once, to show what the one
chain lock costs under contention.

Needs PostgreSQL: ``SEALGATE_BENCH_DATABASE_URL`` or ``SEALGATE_TEST_DATABASE_URL`` (default
``postgresql+psycopg://postgres@127.0.0.1:5432/test``); a throw-away database is created
there and dropped afterwards. Prints one JSON line per batch size and one for contention.

    .venv/bin/python benchmarks/audit_write.py [--transactions 1000] [--writers 4] [--images 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from app.audit.canonical import canonical_json, content_hash  # noqa: E402
from app.audit.chain import append_audit  # noqa: E402
from app.audit.entry import AuditEntry, AuditKind  # noqa: E402
from app.audit.inputs import store_input_value  # noqa: E402
from app.audit.verification import verify_chain  # noqa: E402
from app.db.migrate import upgrade  # noqa: E402
from app.db.session import make_engine, make_session_factory, session_scope  # noqa: E402

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
DIGEST = "sha256:" + "ab" * 32
# Every entry names one input stored before timing (inputs are stored once per content; the
# cost of storing a new one is the decision writer's, not the chain's).
INPUT = {"request": {"kind": "Pod", "namespace": "payments"}, "image": {"digest": DIGEST}}
INPUT_HASH = content_hash(canonical_json(INPUT))


def entry(n: int, images: int = 1) -> AuditEntry:
    """An admission review of ``images`` containers as the decision writer would give it
    (one record per review)."""
    digests = tuple("sha256:" + f"{i:02x}" * 32 for i in range(images))
    return AuditEntry(
        kind=AuditKind.admission_decision,
        source=f"3f0a9c1e-{n:08d}",
        actor="system:serviceaccount:kube-system:replicaset-controller",
        namespace="payments",
        object=f"Pod/api-7d4b9c-{n}",
        images=tuple(f"registry.bank.example/payments/api-{i}@{d}" for i, d in enumerate(digests)),
        digests=digests,
        decision="deny" if n % 10 == 0 else "allow",
        reasons=("vulnerabilities.critical",) if n % 10 == 0 else (),
        policy_version=12,
        policy_revision="12:4be1c0",
        latency_ms=3.2,
        input_hash=INPUT_HASH,
        details={"cache": "decision", "operation": "CREATE"},
    )


def plain_rows(session: Session, first: int, batch: int, images: int = 1) -> None:
    shaped = entry(0, images)
    session.execute(
        text(
            "INSERT INTO bench_plain (id, time, kind, source, actor, namespace, object, images,"
            " digests, decision, reasons, details) VALUES (:id, now(), 'admission.decision',"
            " :source, 'system:serviceaccount', 'payments', 'Pod/api', :images, :digests,"
            " 'allow', '[]', '{}')"
        ),
        [
            {
                "id": first + i,
                "source": f"3f0a9c1e-{first + i:08d}",
                "images": json.dumps(list(shaped.images)),
                "digests": json.dumps(list(shaped.digests)),
            }
            for i in range(batch)
        ],
    )


_COUNTER = {"n": 0}  # row ids, unique across every measurement of the run


def fresh_database(base: str) -> str:
    name = f"sealgate_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(base).set(database=name).render_as_string(hide_password=False)


def drop_database(base: str, url: str) -> None:
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)'))
    admin.dispose()


def timed(work: Callable[[], None]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def measure_batches(
    sessions: Callable[[], Session], batch: int, transactions: int, *, images: int = 1
) -> dict[str, object]:
    counter = _COUNTER
    plain: list[float] = []
    chained: list[float] = []

    def baseline() -> None:
        with session_scope(sessions) as session:  # type: ignore[arg-type]
            plain_rows(session, counter["n"], batch, images)
        counter["n"] += batch

    def subject() -> None:
        with session_scope(sessions) as session:  # type: ignore[arg-type]
            plain_rows(session, counter["n"], batch, images)
            append_audit(session, [entry(counter["n"] + i, images) for i in range(batch)])
        counter["n"] += batch

    for _ in range(20):  # warm connections, plans and the hash path
        baseline()
        subject()
    cpu_plain = cpu_chained = 0.0
    for _ in range(transactions):
        cpu = time.process_time()
        plain.append(timed(baseline))
        cpu_plain += time.process_time() - cpu
        cpu = time.process_time()
        chained.append(timed(subject))
        cpu_chained += time.process_time() - cpu
    p50_plain, p50_chained = statistics.median(plain), statistics.median(chained)
    return {
        "benchmark": "audit_write",
        "batch": batch,
        "images_per_record": images,
        "transactions": transactions,
        "baseline_txn_p50_ms": round(p50_plain * 1000, 3),
        "with_audit_txn_p50_ms": round(p50_chained * 1000, 3),
        "audit_cost_per_record_p50_us": round((p50_chained - p50_plain) / batch * 1e6, 1),
        "audit_cost_per_record_mean_us": round(
            (statistics.fmean(chained) - statistics.fmean(plain)) / batch * 1e6, 1
        ),
        # This process's CPU only (load on a shared machine moves it far less than wall time).
        "audit_cpu_per_record_us": round((cpu_chained - cpu_plain) / transactions / batch * 1e6, 1),
    }


def measure_contention(
    sessions: Callable[[], Session], writers: int, per_writer: int
) -> dict[str, object]:
    start = threading.Barrier(writers)
    latencies: list[float] = []
    lock = threading.Lock()

    def work(w: int) -> None:
        start.wait()
        mine = []
        for i in range(per_writer):

            def one(n: int = 10_000_000 + w * per_writer + i) -> None:
                with session_scope(sessions) as session:  # type: ignore[arg-type]
                    append_audit(session, [entry(n)])

            mine.append(timed(one))
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(writers)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "benchmark": "audit_write_contention",
        "writers": writers,
        "batch": 1,
        "records_per_s": round(writers * per_writer / elapsed, 1),
        "txn_p50_ms": round(statistics.median(latencies) * 1000, 3),
        "txn_p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transactions", type=int, default=1000)
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument(
        "--images",
        type=int,
        default=3,
        help="images (and digests) per record: an admission review of that many containers",
    )
    args = parser.parse_args()
    base = (
        os.environ.get("SEALGATE_BENCH_DATABASE_URL")
        or os.environ.get("SEALGATE_TEST_DATABASE_URL")
        or DEFAULT_URL
    )
    url = fresh_database(base)
    engine = make_engine(url, pool_size=args.writers + 2)
    try:
        upgrade(url)
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE bench_plain (LIKE audit_records INCLUDING DEFAULTS)"))
            conn.execute(text("ALTER TABLE bench_plain RENAME COLUMN seq TO id"))
            conn.execute(text("ALTER TABLE bench_plain ALTER COLUMN prev_hash DROP NOT NULL"))
            conn.execute(text("ALTER TABLE bench_plain ALTER COLUMN hash DROP NOT NULL"))
            conn.execute(text("ALTER TABLE bench_plain ADD PRIMARY KEY (id)"))
        sessions = make_session_factory(engine)
        with session_scope(sessions) as session:
            store_input_value(session, INPUT)
        load = os.getloadavg()
        for batch, transactions in ((1, args.transactions), (50, max(args.transactions // 5, 20))):
            result = measure_batches(sessions, batch, transactions, images=args.images)
            print(json.dumps(result | {"load_average": [round(x, 2) for x in load]}), flush=True)
        result = measure_contention(sessions, args.writers, max(args.transactions // 4, 50))
        print(json.dumps(result | {"load_average": [round(x, 2) for x in os.getloadavg()]}))
        with session_scope(sessions) as session:
            report = verify_chain(session, key=None)
        assert report.ok, report.problem
        print(
            json.dumps({"benchmark": "audit_verify", "records": report.checked, "ok": report.ok}),
            flush=True,
        )
    finally:
        engine.dispose()
        drop_database(base, url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
