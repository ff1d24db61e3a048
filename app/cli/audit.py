"""``sealgate audit``: verify the chain, export it for a SIEM, show one record, purge.

- ``verify [--since 7d|DATE]`` recomputes the chain; exit 0 with a count, or exit 1 naming
  the first record changed, removed or inserted;
- ``export --since 7d [-o FILE]`` writes JSON Lines, oldest first (stdout by default);
- ``show SEQ`` prints one record with its stored input;
- ``purge`` deletes what is past ``SEALGATE_AUDIT_RETENTION_DAYS`` behind a signed
  checkpoint, then signs the head (what the worker runs periodically).

Progress goes to stderr; the domain modules are imported inside each command, so the
``sealgate`` start-up stays light.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import IO, Annotated

import typer

from app.cli.output import cli_errors, fail, print_json

audit_cli = typer.Typer(
    help="The tamper-evident audit trail: verify, export, show, purge.", no_args_is_help=True
)

SinceOption = Annotated[
    str | None,
    typer.Option("--since", help="Only records from then on: 7d, 24h, 2026-12-01 or a date-time."),
]


@audit_cli.command("verify")
@cli_errors
def verify(since: SinceOption = None) -> None:
    """Recompute the hash chain and check its signed checkpoints."""
    from app.audit.checkpoints import CheckpointKey
    from app.audit.query import parse_since
    from app.audit.verification import verify_chain
    from app.cli.context import open_services
    from app.cli.progress import progress
    from app.db.session import session_scope

    start = parse_since(since, now=dt.datetime.now(dt.UTC)) if since else None
    with open_services() as services, session_scope(services.sessions) as session:
        kek = services.settings.kek()
        key = CheckpointKey.from_kek(kek) if kek is not None else None
        with progress("verifying audit chain") as shown:
            report = verify_chain(session, key=key, since=start, on_progress=shown.update)
    if report.problem is not None:
        raise fail(f"audit chain broken: {report.problem.message} [audit.{report.problem.kind}]")
    if report.checked == 0:
        typer.echo("audit chain intact: no records to check")
        return
    typer.echo(
        f"audit chain intact: {report.checked} records (seq {report.first_seq} to "
        f"{report.last_seq}), head {report.head_hash}, {report.checkpoints} checkpoint(s)"
    )


@audit_cli.command("export")
@cli_errors
def export(
    since: SinceOption = None,
    until: Annotated[str | None, typer.Option("--until", help="Only records before then.")] = None,
    kind: Annotated[str | None, typer.Option("--kind", help="Only this kind.")] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")
    ] = None,
) -> None:
    """Write records as JSON Lines (one record per line, oldest first) for a SIEM."""
    from app.audit.query import AuditFilter, count_records, iter_records, parse_since
    from app.cli.context import open_services
    from app.cli.progress import progress
    from app.db.session import session_scope

    now = dt.datetime.now(dt.UTC)
    where = AuditFilter(
        since=parse_since(since, now=now) if since else None,
        until=parse_since(until, now=now) if until else None,
        kind=kind,
    )
    sink: IO[str] = output.open("w", encoding="utf-8") if output else sys.stdout
    written = 0
    try:
        with open_services() as services, session_scope(services.sessions) as session:
            total = count_records(session, where=where)
            with progress("exporting audit records") as shown:
                shown.update(0, total)
                for record in iter_records(session, where=where):
                    sink.write(json.dumps(record.model_dump(mode="json"), sort_keys=True) + "\n")
                    written += 1
                    if written % 1000 == 0:
                        shown.update(written, total)
                shown.update(written, total)
    finally:
        if output:
            sink.close()
    typer.echo(f"exported {written} audit record(s)", err=True)


@audit_cli.command("show")
@cli_errors
def show(seq: Annotated[int, typer.Argument(help="The record's sequence number.")]) -> None:
    """Print one record and the input it was decided on."""
    from app.audit.query import get_record
    from app.cli.context import open_services
    from app.db.session import session_scope

    with open_services() as services, session_scope(services.sessions) as session:
        record, stored = get_record(session, seq=seq)
    print_json({"record": record.model_dump(mode="json"), "input": stored})


@audit_cli.command("purge")
@cli_errors
def purge() -> None:
    """Delete records past the retention period behind a signed checkpoint, and the
    decision rows and inputs that went with them."""
    from app.audit.retention import run_audit_retention
    from app.cli.context import open_services
    from app.db.session import session_scope

    with open_services() as services, session_scope(services.sessions) as session:
        result = run_audit_retention(
            session,
            kek=services.settings.kek(),
            retention_days=services.settings.audit_retention_days,
        )
    print_json(result.model_dump(mode="json"))
