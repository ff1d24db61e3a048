"""``sealgate worker`` and ``sealgate inbox list|retry|purge``: the push gate's queue."""

from __future__ import annotations

from typing import Annotated

import typer

from app.cli.output import cli_errors, print_json

inbox_cli = typer.Typer(help="The registry-event inbox (push gate).", no_args_is_help=True)


@cli_errors
def worker_command(
    once: Annotated[
        bool, typer.Option("--once", help="Process what is due now, then exit.")
    ] = False,
) -> None:
    """Run the inbox worker in this process (as many as wanted, on any host) until stopped."""
    from app.cli.context import run_with_services
    from app.hooks.worker import run_worker
    from app.services import Services

    async def _work(services: Services) -> None:
        await run_worker(services, once=once)

    run_with_services(_work)


@inbox_cli.command("list")
@cli_errors
def list_(
    status: Annotated[
        str | None, typer.Option(help="Only events in this state: pending, done, ignored, dead.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="At most this many events.")] = 100,
) -> None:
    """List inbox events, newest first, with the counts per state."""
    from app.cli.context import open_services
    from app.db.models import InboxStatus
    from app.db.session import session_scope
    from app.errors import InputError
    from app.hooks.inbox import counts, list_events

    try:
        wanted = InboxStatus(status) if status else None
    except ValueError:
        raise InputError(
            f"--status must be one of {', '.join(s.value for s in InboxStatus)}"
        ) from None
    with open_services() as services, session_scope(services.sessions) as session:
        rows = list_events(session, status=wanted, limit=limit)
        print_json({"counts": counts(session), "events": [r.model_dump(mode="json") for r in rows]})


@inbox_cli.command("retry")
@cli_errors
def retry_(
    ids: Annotated[list[int] | None, typer.Argument(help="Ids of dead events.")] = None,
    all_dead: Annotated[bool, typer.Option("--all-dead", help="Every dead event.")] = False,
) -> None:
    """Put dead events back in the queue with their attempts reset."""
    from app.cli.context import open_services
    from app.db.session import session_scope
    from app.errors import InputError
    from app.hooks.inbox import retry

    if not ids and not all_dead:
        raise InputError("name event ids or give --all-dead")
    with open_services() as services, session_scope(services.sessions) as session:
        n = retry(session, ids=ids or [], all_dead=all_dead)
    print_json({"requeued": n})


@inbox_cli.command("purge")
@cli_errors
def purge_(
    older_than_days: Annotated[
        int, typer.Option("--older-than-days", min=0, help="Only events received before.")
    ] = 30,
    include_dead: Annotated[
        bool, typer.Option("--include-dead", help="Purge dead events too.")
    ] = False,
) -> None:
    """Delete finished (done, ignored; --include-dead: dead too) events; verdicts stay."""
    import datetime as dt

    from app.cli.context import open_services
    from app.db.session import session_scope
    from app.hooks.inbox import purge

    with open_services() as services, session_scope(services.sessions) as session:
        n = purge(session, older_than=dt.timedelta(days=older_than_days), include_dead=include_dead)
    print_json({"purged": n})
