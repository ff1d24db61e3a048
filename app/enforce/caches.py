"""The caches every enforcement point shares, and single flight for concurrent fetches.

Four caches sit on the decision pipeline (sizes and lifetimes are settings):

- **tags**: tag reference → digest, a short TTL (a re-pushed tag is seen within it);
- **evidence**: (digest, trust revision) → what verification established (signatures,
  attestations, scan referrers), a longer TTL; a trust change bumps the revision, so an
  entry made under old trust is never read again;
- **failures**: a registry failure per image for a few seconds, so Kubernetes retries and
  re-created Pods do not hammer a failing registry;
- **decisions**: a hash of everything the policy sees except the evaluation time and the
  scan's age, plus the policy revision → the decision, valid until the earliest of its
  TTL and the ``valid_until`` the policy returned (when the scan would become too old, the
  next allowlist expiry).

Keys never hold tags where bytes matter: evidence and decisions are keyed by digest.
Every cache is bounded in entries (the decision cache in bytes too) and counts its hits
and misses; ``/metrics`` exports the counts.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from app.limits import MAX_DECISION_CACHE_BYTES

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    evictions: int = 0


@dataclass
class _Entry(Generic[V]):
    value: V
    expires_at: float
    size: int


class TtlCache(Generic[K, V]):
    """A least-recently-used map whose entries expire; bounded in entries and bytes.

    ``put`` takes an optional ``ttl`` (shorter than the default, never longer) and the
    entry's ``size`` in bytes when the cache is bounded in bytes. Thread-safe: the policy
    engine's worker threads and the event loop may both use it.
    """

    def __init__(
        self,
        name: str,
        *,
        ttl: float,
        max_entries: int,
        max_bytes: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.ttl = ttl
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.stats = CacheStats()
        self._clock = clock
        self._entries: OrderedDict[K, _Entry[V]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.ttl > 0 and self.max_entries > 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def get(self, key: K, *, counted: bool = True) -> V | None:
        """The live value for ``key`` (counted as a hit), else None (a miss). With
        ``counted=False`` the look-up is not counted: the caller counts it with ``hit``
        once it has checked that the value fits."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry.expires_at > self._clock():
                self._entries.move_to_end(key)
                self.stats.hits += counted
                return entry.value
            if entry is not None:
                self._drop(key)
            self.stats.misses += counted
            return None

    def hit(self) -> None:
        """Count a hit of a look-up made with ``counted=False``."""
        with self._lock:
            self.stats.hits += 1

    def put(self, key: K, value: V, *, ttl: float | None = None, size: int = 0) -> None:
        """Store ``value`` for at most ``ttl`` seconds (the cache's TTL by default)."""
        lifetime = self.ttl if ttl is None else min(ttl, self.ttl)
        if not self.enabled or lifetime <= 0:
            return
        if self.max_bytes is not None and size > self.max_bytes:
            return
        with self._lock:
            if key in self._entries:
                self._drop(key)
            self._entries[key] = _Entry(value, self._clock() + lifetime, size)
            self._bytes += size
            while len(self._entries) > self.max_entries or (
                self.max_bytes is not None and self._bytes > self.max_bytes
            ):
                oldest = next(iter(self._entries))
                self._drop(oldest)
                self.stats.evictions += 1

    def discard(self, key: K) -> None:
        with self._lock:
            if key in self._entries:
                self._drop(key)

    def discard_where(self, predicate: Callable[[K], bool]) -> int:
        """Drop every entry whose key matches; returns how many went."""
        with self._lock:
            doomed = [k for k in self._entries if predicate(k)]
            for key in doomed:
                self._drop(key)
            return len(doomed)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def _drop(self, key: K) -> None:
        entry = self._entries.pop(key)
        self._bytes -= entry.size


class SingleFlight(Generic[K, V]):
    """Concurrent callers asking for the same key share one fetch.

    The fetch runs as its own task: a caller whose deadline passes stops waiting (its
    ``asyncio.timeout`` cancels only its wait), while the others still get the result.
    ``calls`` counts fetches actually started, for tests and benchmarks.
    """

    def __init__(self) -> None:
        self._running: dict[K, asyncio.Task[V]] = {}
        self.calls = 0

    async def run(self, key: K, fetch: Callable[[], Awaitable[V]]) -> V:
        task = self._running.get(key)
        if task is None:
            self.calls += 1

            async def _fetch() -> V:
                try:
                    return await fetch()
                finally:
                    self._running.pop(key, None)

            task = asyncio.ensure_future(_fetch())
            self._running[key] = task
            # A failed fetch nobody waits for any more must not warn "never retrieved".
            task.add_done_callback(_consume_exception)
        return await asyncio.shield(task)


def _consume_exception(task: asyncio.Task[object]) -> None:
    if not task.cancelled():
        task.exception()


@dataclass(frozen=True)
class CacheSettings:
    """Lifetimes (seconds) and sizes of the shared caches; a TTL of 0 disables a cache."""

    tag_ttl: float = 30.0
    evidence_ttl: float = 300.0
    failure_ttl: float = 5.0
    decision_ttl: float = 60.0
    max_entries: int = 10_000
    decision_max_bytes: int = MAX_DECISION_CACHE_BYTES


@dataclass
class DecisionCaches:
    """The caches one process shares across enforcement points (see the module doc)."""

    tags: TtlCache[str, str]
    evidence: TtlCache[tuple[str, str, str], object]
    failures: TtlCache[str, object]
    decisions: TtlCache[str, object]
    # The newest stored scan per (repository, digest), or a marker for "none".
    scans: TtlCache[tuple[str, str], object]
    evidence_flight: SingleFlight[tuple[str, str, str], object] = field(
        default_factory=SingleFlight
    )
    resolve_flight: SingleFlight[str, str] = field(default_factory=SingleFlight)

    @classmethod
    def build(
        cls, settings: CacheSettings, *, clock: Callable[[], float] = time.monotonic
    ) -> DecisionCaches:
        return cls(
            tags=TtlCache(
                "tag", ttl=settings.tag_ttl, max_entries=settings.max_entries, clock=clock
            ),
            evidence=TtlCache(
                "evidence",
                ttl=settings.evidence_ttl,
                max_entries=settings.max_entries,
                clock=clock,
            ),
            failures=TtlCache(
                "failure", ttl=settings.failure_ttl, max_entries=settings.max_entries, clock=clock
            ),
            decisions=TtlCache(
                "decision",
                ttl=settings.decision_ttl,
                max_entries=settings.max_entries,
                max_bytes=settings.decision_max_bytes,
                clock=clock,
            ),
            scans=TtlCache(
                "scan", ttl=settings.evidence_ttl, max_entries=settings.max_entries, clock=clock
            ),
        )

    def all(self) -> tuple[TtlCache[object, object], ...]:
        return (self.tags, self.evidence, self.failures, self.decisions, self.scans)  # type: ignore[return-value]

    def forget_trust(self) -> None:
        """An authority changed: evidence and decisions made under the old trust go."""
        self.evidence.clear()
        self.decisions.clear()

    def forget_policy(self) -> None:
        """Another policy is active: every cached decision goes."""
        self.decisions.clear()

    def forget_scans(self) -> None:
        """A new scan was stored: decisions go (their keys hold the old scan's hash, so
        they would not be read again; this frees them at once)."""
        self.decisions.clear()
