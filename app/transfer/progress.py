"""How a transfer reports what it does, blob by blob, so a CLI can draw a bar or print lines.

Domain code calls a ``TransferProgress``; ``NO_PROGRESS`` ignores everything and
``PlainProgress`` writes one line per blob and per manifest (for logs and pipes). The CLI's
progress bar (``app.cli.transfer``) implements the same protocol.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import Protocol

from app.oci.descriptor import Descriptor


class BlobOutcome(StrEnum):
    """What happened to one blob."""

    copied = "copied"  # its bytes were sent
    mounted = "mounted"  # the registry mounted it from another repository
    present = "present"  # it was there already (a resumed or repeated transfer)


class TransferProgress(Protocol):
    def expect(self, *, blobs: int, total_bytes: int) -> None:
        """More work ahead: ``blobs`` blobs of ``total_bytes`` bytes (called once or more)."""

    def blob_done(self, blob: Descriptor, outcome: BlobOutcome) -> None:
        """One blob is at its destination."""

    def note(self, text: str) -> None:
        """One line about a manifest, a tag or a referrer."""


class _NoProgress:
    def expect(self, *, blobs: int, total_bytes: int) -> None:
        return None

    def blob_done(self, blob: Descriptor, outcome: BlobOutcome) -> None:
        return None

    def note(self, text: str) -> None:
        return None


NO_PROGRESS: TransferProgress = _NoProgress()


class PlainProgress:
    """One line per event through ``write`` (``typer.echo`` to stderr in the CLI)."""

    def __init__(self, write: Callable[[str], None]) -> None:
        self._write = write
        self._done = 0
        self._blobs = 0

    def expect(self, *, blobs: int, total_bytes: int) -> None:
        if blobs:
            self._blobs += blobs
            self._write(f"{blobs} blobs, {human_bytes(total_bytes)}")

    def blob_done(self, blob: Descriptor, outcome: BlobOutcome) -> None:
        self._done += 1
        self._write(
            f"[{self._done}/{self._blobs}] blob {blob.digest[:19]} {human_bytes(blob.size)} "
            f"{outcome.value}"
        )

    def note(self, text: str) -> None:
        self._write(text)


def human_bytes(size: int) -> str:
    """``1536`` -> ``1.5 KB``."""
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"  # pragma: no cover
