"""How long the registry work under way may still take, for sharing time among mirrors.

A registry client call has its own ``registry_total_timeout``, and the decision that made
the call may have less time left (admission's deadline). ``within(seconds)`` tells the
registry code below it that it has at most ``seconds`` (nested blocks keep the earliest
end); ``remaining()`` answers how much is left, or None when nobody said. The client
gives each mirror endpoint a share of what remains, so that one hanging mirror cannot eat
the whole deadline before the next endpoint is asked.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_ends_at: ContextVar[float | None] = ContextVar("sealgate_registry_ends_at", default=None)


@contextmanager
def within(seconds: float) -> Iterator[None]:
    """Registry work inside the block has at most ``seconds`` (or less, if an outer block
    said so)."""
    end = time.monotonic() + max(0.0, seconds)
    outer = _ends_at.get()
    token = _ends_at.set(end if outer is None else min(outer, end))
    try:
        yield
    finally:
        _ends_at.reset(token)


def remaining() -> float | None:
    """Seconds left for the registry work under way (never negative), None if unbounded."""
    end = _ends_at.get()
    return None if end is None else max(0.0, end - time.monotonic())
