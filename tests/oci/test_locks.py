"""The PostgreSQL index lock against real PostgreSQL: a cancelled waiter leaks nothing."""

from __future__ import annotations

import asyncio
import hashlib

import pytest
from sqlalchemy import Engine, text

from app.oci.locks import PostgresIndexLock

KEY = "127.0.0.1:5000/team/app:sha256-" + hashlib.sha256(b"lock test").hexdigest()

_ADVISORY = text(
    "SELECT count(*) FILTER (WHERE granted), count(*) FILTER (WHERE NOT granted) "
    "FROM pg_locks WHERE locktype = 'advisory' "
    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)
_BUSY_CONNECTIONS = text(
    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
    "AND pid <> pg_backend_pid() AND state <> 'idle'"
)


def _advisory_locks(engine: Engine) -> tuple[int, int]:
    """(granted, waiting) advisory locks in the test database."""
    with engine.connect() as conn:
        granted, waiting = conn.execute(_ADVISORY).one()
    return int(granted), int(waiting)


async def _until(engine: Engine, wanted: tuple[int, int]) -> tuple[int, int]:
    """Poll the advisory locks until they are ``wanted`` (or give up after a while)."""
    seen = _advisory_locks(engine)
    for _ in range(200):
        if seen == wanted:
            break
        await asyncio.sleep(0.05)
        seen = _advisory_locks(engine)
    return seen


async def test_cancelled_waiter_leaks_neither_lock_nor_connection(test_engine: Engine) -> None:
    if test_engine.dialect.name != "postgresql":
        pytest.skip("advisory locks need PostgreSQL")
    assert _advisory_locks(test_engine) == (0, 0)
    lock = PostgresIndexLock(test_engine)
    holder_lock = PostgresIndexLock(test_engine)  # another replica: no process lock shared
    entered = asyncio.Event()
    leave = asyncio.Event()

    async def hold_a_while() -> None:
        async with holder_lock.hold(KEY):
            entered.set()
            await leave.wait()

    async def write() -> None:
        async with lock.hold(KEY):
            pass

    holder = asyncio.create_task(hold_a_while())
    await entered.wait()
    waiter = asyncio.create_task(write())
    # The waiter is blocked inside PostgreSQL, then its deadline cancels it.
    assert await _until(test_engine, (1, 1)) == (1, 1)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter

    leave.set()
    await holder
    assert await _until(test_engine, (0, 0)) == (0, 0)
    # No connection is left inside a transaction (the waiter's was closed, not abandoned).
    with test_engine.connect() as conn:
        busy = conn.execute(_BUSY_CONNECTIONS).scalar_one()
    assert busy == 0

    third: list[str] = []
    async with asyncio.timeout(10):
        async with lock.hold(KEY):
            third.append("in")
            assert _advisory_locks(test_engine) == (1, 0)
    assert third == ["in"]
    assert _advisory_locks(test_engine) == (0, 0)
