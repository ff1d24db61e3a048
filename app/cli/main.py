"""``sealgate``: the root command and the registration of every command group.

Importing this module (and every ``app.cli`` module) stays cheap: ``sealgate --help`` and
``sealgate version`` answer without loading SQLAlchemy, sigstore, pydantic, httpx, FastAPI
or the policy engine. Each command imports what it needs when it runs
(``benchmarks/cli_startup.py`` measures it; ``tests/cli/test_startup.py`` keeps it so).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from app import __version__
from app.cli.groups import command_group
from app.cli.output import cli_errors, set_debug

# ``--install-completion`` / ``--show-completion`` for bash, zsh, fish and PowerShell.
cli = command_group(
    name="sealgate",
    help="Sign container images and enforce Rego policies at push and at deploy.",
    add_completion=True,
)


@cli.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
) -> None:
    set_debug(debug)


@cli.command()
def version() -> None:
    """Print Sealgate's version."""
    typer.echo(__version__)


@cli.command()
@cli_errors
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on [SEALGATE_HOST].")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on [SEALGATE_PORT].")] = None,
    tls_cert: Annotated[
        Path | None, typer.Option("--tls-cert", help="PEM certificate chain for HTTPS.")
    ] = None,
    tls_key: Annotated[
        Path | None, typer.Option("--tls-key", help="PEM private key for HTTPS.")
    ] = None,
) -> None:
    """Run the HTTP service (API, registry webhooks, admission webhook).

    With --tls-cert and --tls-key it serves HTTPS and reloads the certificate when the files
    change (cert-manager rotations), without a restart.
    """
    from app.config import get_settings
    from app.errors import InputError
    from app.serving import TlsFiles
    from app.serving import serve as serve_app

    settings = get_settings()
    if (tls_cert is None) != (tls_key is None):
        raise InputError("--tls-cert and --tls-key go together")
    serve_app(
        app="app.main:create_app",
        host=host or settings.host,
        port=port or settings.port,
        tls=TlsFiles(cert=tls_cert, key=tls_key) if tls_cert and tls_key else None,
        # Past this many connections or tasks, new requests get 503 at once; idle
        # keep-alive connections are closed after the time-out (read time-outs: README).
        limit_concurrency=settings.max_connections,
        timeout_keep_alive=settings.keepalive_timeout,
    )


db_cli = command_group(help="Database schema migrations.")


@db_cli.command("upgrade")
@cli_errors
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Apply migrations to SEALGATE_DATABASE_URL (default: ./sealgate.db)."""
    from app.config import get_settings
    from app.db.migrate import upgrade

    settings = get_settings()
    upgrade(settings.database_url, revision)
    typer.echo(f"database at revision {revision}", err=True)


cli.add_typer(db_cli, name="db")

# Command groups of each domain register here, one line each.
from app.cli import audit as _audit  # noqa: E402
from app.cli import authority as _authority  # noqa: E402
from app.cli import error_codes as _error_codes  # noqa: E402
from app.cli import inbox as _inbox  # noqa: E402
from app.cli import k8s as _k8s  # noqa: E402
from app.cli import key as _key  # noqa: E402
from app.cli import policy as _policy  # noqa: E402
from app.cli import registry as _registry  # noqa: E402
from app.cli import scan as _scan  # noqa: E402
from app.cli import sign as _sign  # noqa: E402
from app.cli import token as _token  # noqa: E402
from app.cli import transfer as _transfer  # noqa: E402
from app.cli import verify as _verify  # noqa: E402

cli.add_typer(_registry.registry_cli, name="registry")
cli.add_typer(_token.token_cli, name="token")
cli.add_typer(_scan.scan_cli, name="scan")
cli.add_typer(_policy.policy_cli, name="policy")
cli.add_typer(_key.key_cli, name="key")
cli.command("sign")(_sign.sign_command)
cli.command("verify")(_verify.verify_command)
cli.add_typer(_authority.authority_cli, name="authority")
cli.add_typer(_k8s.k8s_cli, name="k8s")
cli.add_typer(_audit.audit_cli, name="audit")
cli.add_typer(_inbox.inbox_cli, name="inbox")
cli.command("worker")(_inbox.worker_command)
cli.command("copy")(_transfer.copy_command)
cli.command("export")(_transfer.export_command)
cli.command("import")(_transfer.import_command)
cli.command("errors")(_error_codes.errors_command)


# The long-running commands, which decide with the embedded engine for hours.
_SERVING_COMMANDS = frozenset({"serve", "worker"})


def main() -> None:
    command = next((a for a in sys.argv[1:] if not a.startswith("-")), None)
    if command in _SERVING_COMMANDS:
        from app.policy.go_gc import restart_with_go_gc_defaults

        restart_with_go_gc_defaults()
    cli()
