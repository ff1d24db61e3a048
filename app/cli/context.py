"""How a CLI command gets the same ``Services`` the API uses, and runs async domain code."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from app.config import get_settings
from app.services import Services

T = TypeVar("T")


@contextmanager
def open_services() -> Iterator[Services]:
    """Services built from the environment's settings, closed when the command ends."""
    services = Services.from_settings(get_settings())
    try:
        yield services
    finally:
        asyncio.run(services.aclose())


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)
