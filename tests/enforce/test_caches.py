"""The cache building blocks: expiry, bounds, single flight."""

from __future__ import annotations

import asyncio

import pytest

from app.enforce.caches import SingleFlight, TtlCache


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class TestTtlCache:
    def test_hit_then_expiry(self) -> None:
        clock = Clock()
        cache: TtlCache[str, int] = TtlCache("t", ttl=10, max_entries=10, clock=clock)
        cache.put("a", 1)
        assert cache.get("a") == 1
        clock.now += 10.5
        assert cache.get("a") is None
        assert (cache.stats.hits, cache.stats.misses) == (1, 1)

    def test_a_shorter_ttl_wins_never_a_longer_one(self) -> None:
        clock = Clock()
        cache: TtlCache[str, int] = TtlCache("t", ttl=10, max_entries=10, clock=clock)
        cache.put("short", 1, ttl=1)
        cache.put("long", 2, ttl=1000)
        clock.now += 2
        assert cache.get("short") is None
        assert cache.get("long") == 2
        clock.now += 9
        assert cache.get("long") is None

    def test_bounded_in_entries_least_recently_used_goes(self) -> None:
        cache: TtlCache[str, int] = TtlCache("t", ttl=10, max_entries=2)
        cache.put("a", 1)
        cache.put("b", 2)
        assert cache.get("a") == 1  # b is now the least recently used
        cache.put("c", 3)
        assert cache.get("b") is None
        assert (cache.get("a"), cache.get("c")) == (1, 3)
        assert cache.stats.evictions == 1

    def test_bounded_in_bytes(self) -> None:
        cache: TtlCache[str, int] = TtlCache("t", ttl=10, max_entries=100, max_bytes=100)
        for i in range(10):
            cache.put(str(i), i, size=30)
        assert cache.size_bytes <= 100
        assert len(cache) == 3
        cache.put("huge", 0, size=101)
        assert cache.get("huge") is None

    def test_a_zero_ttl_disables_the_cache(self) -> None:
        cache: TtlCache[str, int] = TtlCache("t", ttl=0, max_entries=10)
        cache.put("a", 1)
        assert cache.get("a") is None


class TestSingleFlight:
    async def test_concurrent_callers_share_one_fetch(self) -> None:
        flight: SingleFlight[str, int] = SingleFlight()
        started = 0

        async def fetch() -> int:
            nonlocal started
            started += 1
            await asyncio.sleep(0.05)
            return 42

        results = await asyncio.gather(*(flight.run("k", fetch) for _ in range(50)))
        assert results == [42] * 50
        assert started == flight.calls == 1

    async def test_a_caller_that_gives_up_does_not_cancel_the_others(self) -> None:
        flight: SingleFlight[str, int] = SingleFlight()

        async def fetch() -> int:
            await asyncio.sleep(0.2)
            return 7

        impatient = asyncio.create_task(asyncio.wait_for(flight.run("k", fetch), 0.01))
        patient = asyncio.create_task(flight.run("k", fetch))
        with pytest.raises(TimeoutError):
            await impatient
        assert await patient == 7

    async def test_a_failure_reaches_every_caller_and_is_not_kept(self) -> None:
        flight: SingleFlight[str, int] = SingleFlight()

        async def fail() -> int:
            await asyncio.sleep(0.01)
            raise ValueError("boom")

        results = await asyncio.gather(
            *(flight.run("k", fail) for _ in range(3)), return_exceptions=True
        )
        assert all(isinstance(r, ValueError) for r in results)

        async def succeed() -> int:
            return 1

        assert await flight.run("k", succeed) == 1
