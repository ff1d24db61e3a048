"""How CLI commands print results and fail: JSON on stdout, one clear line on stderr.

Times in the JSON are ISO 8601 in UTC with ``Z`` (``app.timestamps.iso_utc``), whether a
command prints a model or a plain dict.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, ParamSpec, TypeVar

import typer

from app.errors import Error
from app.timestamps import iso_utc

P = ParamSpec("P")
R = TypeVar("R")

_state = {"debug": False}


def set_debug(debug: bool) -> None:
    _state["debug"] = debug


def print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, sort_keys=False, default=_json_value))


def _json_value(value: object) -> str:
    """What ``json`` cannot write itself: times as ISO 8601 with ``Z``, the rest as text."""
    if isinstance(value, dt.datetime):
        return iso_utc(value)
    return str(value)


def fail(message: str, *, code: int = 1) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def cli_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn Sealgate errors (and anything unexpected) into one line on stderr and exit 1.

    With ``sealgate --debug`` the traceback is shown as well.
    """

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except Error as e:
            if _state["debug"]:
                raise
            raise fail(f"{e.message} [{e.code}]") from None
        except KeyboardInterrupt:
            raise fail("interrupted", code=130) from None
        except Exception as e:
            if _state["debug"]:
                raise
            typer.echo(
                f"error: unexpected {type(e).__name__}: {e} (run with --debug for details)",
                err=True,
            )
            sys.exit(1)

    return wrapper
