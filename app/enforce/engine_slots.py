"""Policy evaluations on a small pool of worker threads, each within its decision's deadline.

The embedded engine cannot be interrupted: an evaluation that overruns keeps its worker
until it ends. So a decision first needs a worker, and one that cannot get a worker before
its deadline fails with its own code (``policy.busy``) instead of queueing behind another
image's slow evaluation; one whose evaluation started but did not finish in time fails
with ``deadline.policy``. Either way it never waits past its deadline.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from app.enforce.deadline import Deadline
from app.errors import DeadlineError, PolicyError

T = TypeVar("T")

DEFAULT_WORKERS = 2


class EngineSlots:
    """Runs engine calls on ``workers`` threads, never past a deadline."""

    def __init__(self, workers: int = DEFAULT_WORKERS) -> None:
        self.workers = workers
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="policy-eval")

    async def run(self, call: Callable[[], T], *, deadline: Deadline, what: str) -> T:
        """``call()`` on a worker; PolicyError ``policy.busy`` when no worker is free before
        the deadline, DeadlineError ``deadline.policy`` when it started but overran."""
        started = threading.Event()

        def _run() -> T:
            started.set()
            return call()

        future: Future[T] = self._pool.submit(_run)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), deadline.remaining())
        except TimeoutError as e:
            if future.cancel() or not started.is_set():
                raise PolicyError(
                    f"no policy engine worker became free for {what} within "
                    f"{deadline.seconds:g} s (every worker is busy)",
                    code="policy.busy",
                ) from e
            raise DeadlineError(
                f"the policy engine did not decide {what} within {deadline.seconds:g} s",
                code="deadline.policy",
            ) from e

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
