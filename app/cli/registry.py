"""``sealgate registry``: talk to an OCI registry directly (resolve, referrers)."""

from __future__ import annotations

import typer

registry_cli = typer.Typer(help="Inspect images in an OCI registry.", no_args_is_help=True)
