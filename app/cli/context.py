"""How a CLI command gets the same ``Services`` the API uses.

- ``run_with_services(work)`` for commands that talk to a registry (or anything async):
  builds the services, awaits ``work(services)`` and closes everything in the same event
  loop (an httpx client cannot be closed from another loop);
- ``open_services()`` for commands that only use the database.

Both first check that the database is migrated (``app.db.migrate.check_schema``), so an
unmigrated store is reported as such, once, before the command does anything; commands
that do not use the store (``sealgate registry ...``) pass ``database=False``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from app.services import Services

T = TypeVar("T")


def _services(*, database: bool) -> Services:
    from app.config import get_settings
    from app.services import Services

    services = Services.from_settings(get_settings())
    if database:
        from app.db.migrate import check_schema

        try:
            check_schema(services.engine)
        except BaseException:
            services.close()
            raise
    return services


def run_with_services(work: Callable[[Services], Awaitable[T]], *, database: bool = True) -> T:
    """Run ``work`` with services built from the environment; close them in its loop."""
    import asyncio

    services = _services(database=database)

    async def _main() -> T:
        try:
            return await work(services)
        finally:
            await services.aclose()

    return asyncio.run(_main())


@contextmanager
def open_services() -> Iterator[Services]:
    """Services for database-only commands, closed when the command ends."""
    services = _services(database=True)
    try:
        yield services
    finally:
        services.close()
