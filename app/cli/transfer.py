"""``sealgate copy``, ``sealgate export`` and ``sealgate import``: images with everything attached.

The commands only translate arguments and output: the work is ``app.transfer``'s. Each
prints its report as JSON on stdout; progress goes to stderr, as a bar on a terminal and as
one line per blob otherwise. When the copy lands under another name, the last stderr line
gives the ``--remap-identity`` an authority with signed identity ``match-repository`` needs
at the destination. They talk to registries only (no database) with the environment's
settings (credentials, CA, insecure registries, allow-list).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from app.cli.output import cli_errors, print_json

if TYPE_CHECKING:
    from app.oci.client import RegistryClient
    from app.oci.descriptor import Descriptor
    from app.oci.refs import ImageRef
    from app.transfer.graph import Platform
    from app.transfer.progress import BlobOutcome, TransferProgress

T = TypeVar("T")

PlatformOption = Annotated[
    list[str] | None,
    typer.Option(
        "--platform",
        help="Only this platform of an index (os/arch or os/arch/variant); repeat for more. The "
        "index itself is copied only when every platform is selected; its signatures always.",
    ),
]
NoReferrersOption = Annotated[
    bool,
    typer.Option("--no-referrers", help="Copy the image alone: no referrers, no .sig/.att tags."),
]
ConcurrencyOption = Annotated[
    int, typer.Option("--concurrency", min=1, max=32, help="Blobs moved at once.")
]
ProgressOption = Annotated[
    bool | None,
    typer.Option(
        "--progress/--no-progress", help="Progress bar (default: when stderr is a terminal)."
    ),
]


class _BarProgress:
    """A rich progress bar on stderr (bytes of blobs done), with notes printed above it."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self._task = self._progress.add_task("blobs", total=None)
        self._blobs = 0
        self._total = 0

    def __enter__(self) -> _BarProgress:
        self._progress.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._progress.stop()

    def expect(self, *, blobs: int, total_bytes: int) -> None:
        self._blobs += blobs
        self._total += total_bytes
        self._progress.update(self._task, total=self._total, description=f"{self._blobs} blobs")

    def blob_done(self, blob: Descriptor, outcome: BlobOutcome) -> None:
        self._progress.advance(self._task, blob.size)

    def note(self, text: str) -> None:
        self._progress.console.print(text, highlight=False, markup=False)


def _run(
    work: Callable[[RegistryClient, TransferProgress], Awaitable[T]], *, bar: bool | None
) -> T:
    """Run ``work`` with a registry client from the environment and the chosen progress."""
    from contextlib import nullcontext

    from app.config import get_settings
    from app.oci.client import RegistryClient
    from app.transfer.progress import PlainProgress

    use_bar = sys.stderr.isatty() if bar is None else bar
    progress: Any = _BarProgress() if use_bar else PlainProgress(lambda t: typer.echo(t, err=True))

    async def _main() -> T:
        client = RegistryClient.from_settings(get_settings())
        try:
            return await work(client, progress)
        finally:
            await client.aclose()

    with progress if use_bar else nullcontext():
        return asyncio.run(_main())


def _platforms(values: list[str] | None) -> list[Platform]:
    from app.transfer.graph import Platform

    return [Platform.parse(v) for v in values or []]


def _destination(text: str, source: ImageRef) -> ImageRef:
    """DST as given; without a tag or digest it keeps the source's tag (cosign copy)."""
    from app.oci.refs import ImageRef

    parsed = ImageRef.parse(text)
    last = text.rsplit("/", 1)[-1]
    if ":" not in last and "@" not in text:
        return ImageRef(registry=parsed.registry, repository=parsed.repository, tag=source.tag)
    return parsed


def _remap_hint(remaps: list[str]) -> None:
    for remap in remaps:
        typer.echo(
            "authorities with signed identity match-repository accept the source's signatures "
            f"there with: --remap-identity {remap}",
            err=True,
        )


def copy(
    source: Annotated[str, typer.Argument(help="Image to copy (tag or digest).")],
    destination: Annotated[
        str, typer.Argument(help="Repository[:tag] to copy to (default tag: the source's).")
    ],
    platform: PlatformOption = None,
    no_referrers: NoReferrersOption = False,
    concurrency: ConcurrencyOption = 4,
    progress: ProgressOption = None,
) -> None:
    """Copy an image or index with all platforms, blobs, referrers and .sig/.att tags.

    Resumable: run it again after an interruption and what is there is skipped.
    """
    from app.oci.refs import ImageRef
    from app.transfer.copy import copy_image

    src = ImageRef.parse(source)
    dst = _destination(destination, src)
    platforms = _platforms(platform)
    report = _run(
        lambda client, bar: copy_image(
            client,
            source=src,
            destination=dst,
            platforms=platforms,
            referrers=not no_referrers,
            concurrency=concurrency,
            progress=bar,
        ),
        bar=progress,
    )
    print_json(report.to_json())
    _remap_hint([report.remap_identity] if report.remap_identity else [])


def export(
    images: Annotated[list[str], typer.Argument(help="Images to export (tags or digests).")],
    output: Annotated[
        Path, typer.Option("-o", "--output", help="site.tar (a tar) or a directory.")
    ],
    platform: PlatformOption = None,
    no_referrers: NoReferrersOption = False,
    concurrency: ConcurrencyOption = 4,
    progress: ProgressOption = None,
) -> None:
    """Write images with everything attached to an OCI image layout (tar or directory)."""
    from app.oci.refs import ImageRef
    from app.transfer.export import export_images

    refs = [ImageRef.parse(i) for i in images]
    platforms = _platforms(platform)
    report = _run(
        lambda client, bar: export_images(
            client,
            images=refs,
            output=output,
            platforms=platforms,
            referrers=not no_referrers,
            concurrency=concurrency,
            progress=bar,
        ),
        bar=progress,
    )
    print_json(report.to_json())


def import_(
    layout: Annotated[Path, typer.Argument(help="A layout written by `sealgate export`.")],
    to: Annotated[
        str,
        typer.Option(
            "--to",
            help="REGISTRY or REGISTRY/PREFIX; images go to REGISTRY/PREFIX/<source path>.",
        ),
    ],
    concurrency: ConcurrencyOption = 4,
    progress: ProgressOption = None,
) -> None:
    """Check every blob of LAYOUT, then push it all into a site registry."""
    from app.config import get_settings
    from app.transfer.naming import SiteTarget
    from app.transfer.site_import import import_layout

    target = SiteTarget.parse(to)
    max_bytes = get_settings().max_manifest_bytes
    report = _run(
        lambda client, bar: import_layout(
            client,
            layout=layout,
            target=target,
            max_manifest_bytes=max_bytes,
            concurrency=concurrency,
            progress=bar,
        ),
        bar=progress,
    )
    print_json(report.to_json())
    _remap_hint(report.remap_identity)


copy_command = cli_errors(copy)
export_command = cli_errors(export)
import_command = cli_errors(import_)
