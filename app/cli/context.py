"""How a CLI command gets the same ``Services`` the API uses.

- ``run_with_services(work)`` for commands that talk to a registry (or anything async):
  builds the services, awaits ``work(services)`` and closes everything in the same event
  loop (an httpx client cannot be closed from another loop);
- ``open_services()`` for commands that only use the database.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from app.services import Services

T = TypeVar("T")


def run_with_services(work: Callable[[Services], Awaitable[T]]) -> T:
    """Run ``work`` with services built from the environment; close them in its loop."""

    import asyncio

    from app.config import get_settings
    from app.services import Services

    async def _main() -> T:
        services = Services.from_settings(get_settings())
        try:
            return await work(services)
        finally:
            await services.aclose()

    return asyncio.run(_main())


@contextmanager
def open_services() -> Iterator[Services]:
    """Services for database-only commands, closed when the command ends."""
    from app.config import get_settings
    from app.services import Services

    services = Services.from_settings(get_settings())
    try:
        yield services
    finally:
        services.close()
