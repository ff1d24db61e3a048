"""``sealgate token``: create, list and revoke API bearer tokens."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import typer

from app.cli.context import open_services
from app.cli.groups import command_group
from app.cli.output import cli_errors, print_json
from app.errors import InputError

token_cli = command_group(help="API bearer tokens (stored hashed).")


@token_cli.command("create")
@cli_errors
def create(
    name: Annotated[str, typer.Argument(help="A name for the token (who or what uses it).")],
    scope: Annotated[
        list[str],
        typer.Option(
            "--scope",
            metavar="<scope>",
            help="'admin' or ACTION:IMAGE_GLOB, e.g. 'sign:ghcr.io/acme/*'. Repeatable.",
        ),
    ],
    expires_in_days: Annotated[
        int | None, typer.Option("--expires-in-days", min=1, help="Expire after N days.")
    ] = None,
) -> None:
    """Create a token and print it once (it cannot be shown again)."""
    from app.auth.tokens import create_token
    from app.db.session import session_scope

    if not scope:
        raise InputError("give at least one --scope")
    expires = (
        dt.datetime.now(dt.UTC) + dt.timedelta(days=expires_in_days) if expires_in_days else None
    )
    with open_services() as services, session_scope(services.sessions) as session:
        issued = create_token(session, name=name, scopes=scope, expires_at=expires)
    print_json(
        {
            "name": issued.name,
            "token": issued.token,
            "scopes": list(issued.scopes),
            "expires_at": issued.expires_at,
        }
    )


@token_cli.command("list")
@cli_errors
def list_() -> None:
    """List tokens (names, scopes, dates; never the secrets)."""
    from app.auth.tokens import list_tokens
    from app.db.session import session_scope

    with open_services() as services, session_scope(services.sessions) as session:
        print_json(list_tokens(session))


@token_cli.command("revoke")
@cli_errors
def revoke(name: Annotated[str, typer.Argument(help="The token's name.")]) -> None:
    """Revoke a token; it is refused from then on."""
    from app.auth.tokens import revoke_token
    from app.db.session import session_scope

    with open_services() as services, session_scope(services.sessions) as session:
        revoke_token(session, name=name)
    typer.echo(f"revoked {name}", err=True)
