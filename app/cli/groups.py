"""How every ``sealgate`` command group is made, so that all of them read the same.

Help is click's plain layout, not Rich's: option names are never cut (a long name gets
its own line and the description goes under it), flags show no metavar, defaults are
shown, and the text fits 80 columns. It also keeps ``sealgate --help`` from loading Rich.
"""

from __future__ import annotations

from typing import Any

import typer

HELP_WIDTH = 80
CONTEXT_SETTINGS: dict[str, Any] = {
    "max_content_width": HELP_WIDTH,
    "show_default": True,
}


def command_group(*, help: str, **options: Any) -> typer.Typer:
    """A Typer group with Sealgate's help settings; ``options`` go to ``typer.Typer``."""
    return typer.Typer(
        help=help,
        no_args_is_help=True,
        rich_markup_mode=None,
        pretty_exceptions_enable=False,
        context_settings=CONTEXT_SETTINGS,
        **options,
    )
