"""Locks that serialise read-modify-write updates of a referrers fallback index.

A registry without the referrers API keeps an image's referrers in the ``<alg>-<hex>`` tag,
which every writer updates by reading the index, appending, and pushing it back. Debian's
distribution 2.8 sends an ETag but ignores ``If-Match``, so two writers can drop each
other's entry. Sealgate serialises its own writers instead:

- ``ProcessLock`` (always): one asyncio lock per key inside this process (the client also
  uses one to upload a given blob once at a time);
- ``PostgresIndexLock`` (when the database is PostgreSQL): a transaction-level advisory
  lock keyed by the index, released with the transaction so it cannot leak, not even when
  the waiter is cancelled mid-wait (the late acquisition is closed as soon as it arrives).
  Every replica sharing the database takes turns: the database coordinates, not a protocol
  of our own.

Writers outside Sealgate (cosign, another service) are not covered; the client's confirm
step (re-read after the write, after ``referrers_fallback_settle_seconds``) narrows that
window where it matters.
"""

from __future__ import annotations

import asyncio
import hashlib
import weakref
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Protocol

from anyio import to_thread

if TYPE_CHECKING:
    # SQLAlchemy is imported where PostgreSQL is used (PostgresIndexLock.hold), not by every
    # importer of the registry client: ``sealgate copy`` and friends never touch a database,
    # and importing it was a third of their start-up.
    from sqlalchemy import Connection, Engine


class IndexLock(Protocol):
    def hold(self, key: str) -> AbstractAsyncContextManager[None]:
        """Hold the lock for ``key`` for the duration of the ``async with`` block."""
        ...


class ProcessLock:
    """One asyncio lock per key, alive while someone holds or awaits it."""

    def __init__(self) -> None:
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock = self._locks.get(key)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[key] = lock
        async with lock:
            yield


def _advisory_key(key: str) -> int:
    """A signed 64-bit advisory-lock id derived from the index key."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big", signed=True)


class PostgresIndexLock:
    """The process lock, then a PostgreSQL advisory lock shared by every replica."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._local = ProcessLock()

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        from sqlalchemy import func, select

        async with self._local.hold(key):
            lock_id = _advisory_key(key)

            def _acquire() -> Connection:
                conn = self._engine.connect()
                try:
                    conn.begin()
                    conn.execute(select(func.pg_advisory_xact_lock(lock_id)))
                except BaseException:
                    conn.close()
                    raise
                return conn

            # The wait runs in a thread that cannot be interrupted: if this task is cancelled
            # (a registry deadline) while it waits, the thread still gets the lock later. So
            # the acquisition is shielded and, when nobody is left to use it, closed at once.
            acquiring = asyncio.ensure_future(to_thread.run_sync(_acquire))
            try:
                conn = await asyncio.shield(acquiring)
            except asyncio.CancelledError:
                _release_when_acquired(acquiring)
                raise
            try:
                yield
            finally:
                # Ending the transaction releases the lock, whatever happened meanwhile.
                await to_thread.run_sync(conn.close)


_abandoned: set[asyncio.Task[None]] = set()


def _release_when_acquired(acquiring: asyncio.Future[Connection]) -> None:
    """Close the connection of an acquisition whose waiter was cancelled, once it has one."""

    async def _release() -> None:
        try:
            conn = await acquiring
        except Exception:
            return  # the acquisition failed and closed its own connection
        await to_thread.run_sync(conn.close)

    task = asyncio.ensure_future(_release())
    _abandoned.add(task)  # the loop keeps only weak references to tasks
    task.add_done_callback(_abandoned.discard)


def index_lock_for(engine: Engine | None) -> ProcessLock | PostgresIndexLock:
    """The strongest lock the database offers: advisory locks on PostgreSQL, else in-process."""
    if engine is not None and engine.dialect.name == "postgresql":
        return PostgresIndexLock(engine)
    return ProcessLock()
