"""``sealgate``: the root command and the registration of every command group."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from app import __version__
from app.cli.output import cli_errors, set_debug
from app.config import get_settings

cli = typer.Typer(
    name="sealgate",
    help="Sign container images and enforce Rego policies at push and at deploy.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
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
    """Run the HTTP service (API, registry webhooks, admission webhook)."""
    import uvicorn

    from app.errors import InputError

    settings = get_settings()
    if (tls_cert is None) != (tls_key is None):
        raise InputError("--tls-cert and --tls-key go together")
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
        ssl_certfile=str(tls_cert) if tls_cert else None,
        ssl_keyfile=str(tls_key) if tls_key else None,
        log_config=None,
        proxy_headers=False,
    )


db_cli = typer.Typer(help="Database schema migrations.", no_args_is_help=True)


@db_cli.command("upgrade")
@cli_errors
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Apply migrations to SEALGATE_DATABASE_URL (default: ./sealgate.db)."""
    from app.db.migrate import upgrade

    settings = get_settings()
    upgrade(settings.database_url, revision)
    typer.echo(f"database at revision {revision}", err=True)


cli.add_typer(db_cli, name="db")

# Command groups of each domain register here, one line each.
from app.cli import authority as _authority  # noqa: E402
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
cli.command("copy")(_transfer.copy_command)
cli.command("export")(_transfer.export_command)
cli.command("import")(_transfer.import_command)


def main() -> None:
    cli()
