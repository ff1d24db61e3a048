"""One deadline per decision: every step inside it gets only the time left.

A ``Deadline`` is fixed when a decision starts (admission's budget, the push worker's
own) and each step of the pipeline runs inside ``deadline.step(...)``. When the time runs
out the step is cancelled (an HTTP request in flight included: a registry that hangs or
dribbles one byte a second cannot hold a decision past its deadline) and
``DeadlineExceeded`` says which step ran out, with a stable code such as
``deadline.registry`` and a message naming what was being fetched from where.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from app.errors import DeadlineError
from app.oci import budget


class Deadline:
    """An absolute point on the monotonic clock by which a decision must be made."""

    def __init__(self, seconds: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        if seconds <= 0:
            raise ValueError("a deadline needs a positive number of seconds")
        self.seconds = seconds
        self._clock = clock
        self.started_at = clock()
        self.expires_at = self.started_at + seconds

    def remaining(self) -> float:
        """Seconds left (never negative)."""
        return max(0.0, self.expires_at - self._clock())

    def elapsed(self) -> float:
        return self._clock() - self.started_at

    @property
    def expired(self) -> bool:
        return self.remaining() <= 0

    @asynccontextmanager
    async def step(self, code: str, what: Callable[[], str]) -> AsyncIterator[None]:
        """Run the body within the time left; ``DeadlineError`` (``code``) when it runs out.

        ``what`` says who did not answer and what was being asked ("registry H (resolving
        R)"); it is called only then, so it may read state the body updated. The message
        reads "registry H did not answer within 3 s (resolving R)".
        """
        try:
            # The registry client shares what is left among mirror endpoints.
            with budget.within(self.remaining()):
                async with asyncio.timeout(self.remaining()):
                    yield
        except TimeoutError as e:
            who, _, doing = what().partition(" (")
            during = f" ({doing}" if doing else ""
            raise DeadlineError(
                f"{who} did not answer within {self.seconds:g} s{during}", code=code
            ) from e
