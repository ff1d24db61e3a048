"""``sealgate registry``: talk to an OCI registry directly (resolve, referrers).

Both commands use the same ``RegistryClient`` as the service, configured by the ``SEALGATE_*``
registry settings (credentials, insecure registries, CA bundle, limits and time-outs).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from app.cli.context import run_with_services
from app.cli.groups import command_group
from app.cli.output import cli_errors, print_json

if TYPE_CHECKING:
    from app.oci.client import RegistryClient

T = TypeVar("T")

registry_cli = command_group(help="Inspect images in an OCI registry.")


def _with_client(operation: Callable[[RegistryClient], Awaitable[T]]) -> T:
    """Run ``operation`` with the configured registry client, closed afterwards."""
    return run_with_services(lambda services: operation(services.registry), database=False)


@registry_cli.command("resolve")
@cli_errors
def resolve(
    image: Annotated[str, typer.Argument(help="Image reference, e.g. ghcr.io/acme/app:v1.")],
) -> None:
    """Print the digest IMAGE's tag points at (or IMAGE's own digest)."""
    from app.oci.refs import ImageRef

    ref = ImageRef.parse(image)
    typer.echo(_with_client(lambda client: client.resolve_digest(ref)))


@registry_cli.command("referrers")
@cli_errors
def referrers(
    image: Annotated[str, typer.Argument(help="Image reference; a tag is resolved first.")],
    artifact_type: Annotated[
        str | None,
        typer.Option("--artifact-type", help="Only referrers with this artifactType."),
    ] = None,
) -> None:
    """Print the OCI 1.1 referrers of IMAGE as an OCI image index (JSON)."""
    from app.oci.refs import ImageRef

    ref = ImageRef.parse(image)

    async def _index(client: RegistryClient) -> dict[str, object]:
        pinned = ref.with_digest(await client.resolve_digest(ref))
        return await client.referrers_index(pinned, artifact_type=artifact_type)

    print_json(_with_client(_index))
