"""``sealgate errors [CODE]``: every error code with its HTTP status and meaning.

Prints the catalogue (``app.error_codes``) as plain lines, or with ``--markdown`` as
``docs/errors.md`` is written (``sealgate errors --markdown > docs/errors.md``
regenerates it). ``CODE`` narrows the list to one code or one domain (``registry``).
"""

from __future__ import annotations

from typing import Annotated

import typer

from app.cli.output import cli_errors


def errors(
    code: Annotated[
        str | None, typer.Argument(help="One code, or a domain such as registry.")
    ] = None,
    markdown: Annotated[
        bool, typer.Option("--markdown", help="Print Markdown tables (docs/errors.md).")
    ] = False,
) -> None:
    """List the error codes Sealgate produces, with HTTP status and meaning."""
    from app.error_codes import CODES, render_markdown, render_text
    from app.errors import InputError

    chosen = [e for e in CODES.values() if code in (None, e.code, e.domain)]
    if code is not None and not chosen:
        raise InputError(f"no error code or domain is named {code[:80]!r}")
    typer.echo(render_markdown(chosen) if markdown else render_text(chosen), nl=False)


errors_command = cli_errors(errors)
