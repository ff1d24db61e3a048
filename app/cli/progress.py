"""Progress of a long CLI command on stderr: a bar on a terminal, plain lines otherwise.

stdout stays clean for the command's output (JSON Lines for a SIEM, say); on a terminal the
bar is drawn by rich (shipped with Typer), in a pipe or a CI log a line is written at each
tenth of the way and at the end, so a log shows the command alive without flooding it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Protocol


class ProgressSink(Protocol):
    def update(self, done: int, total: int) -> None: ...


class _PlainLines:
    def __init__(self, label: str) -> None:
        self.label = label
        self.reported = -1

    def update(self, done: int, total: int) -> None:
        tenth = 10 if total <= 0 else min(10, done * 10 // total)
        if tenth > self.reported:
            self.reported = tenth
            print(f"{self.label}: {done}/{total}", file=sys.stderr, flush=True)


class _Bar:
    def __init__(self, label: str) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        self._progress = Progress(
            f"[bold]{label}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self._task = self._progress.add_task(label, total=None)

    def __enter__(self) -> _Bar:
        self._progress.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._progress.stop()

    def update(self, done: int, total: int) -> None:
        self._progress.update(self._task, completed=done, total=max(total, done))


@contextmanager
def progress(label: str) -> Iterator[ProgressSink]:
    """A sink for ``update(done, total)`` calls, drawn on stderr for ``label``."""
    if sys.stderr.isatty():
        with _Bar(label) as bar:
            yield bar
    else:
        yield _PlainLines(label)
