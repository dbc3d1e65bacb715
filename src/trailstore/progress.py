"""A progress bar on stderr for long runs (the command line's demo, archive and prune, the
benchmark harness): one small wrapper over rich's, so that they all look and behave alike."""

from __future__ import annotations

from types import TracebackType
from typing import Self

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text


class _Rate(ProgressColumn):
    """Items per second (rich's own speed column counts bytes)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:,.0f}/s")


class ProgressBar:
    """Counts ``total`` items (``None``: not known ahead) under ``label`` on stderr, drawn
    only when ``enabled``.

    Use it as a context manager and call ``advance`` per item (it fits the ``advance``
    callbacks the library takes). On a terminal the bar redraws in place; anywhere else it
    writes its final state once, when the ``with`` block ends, so that a log gets one line.
    """

    def __init__(self, total: int | None, label: str, *, enabled: bool) -> None:
        self._progress = Progress(
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            _Rate(),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            disable=not enabled,
        )
        self._task = self._progress.add_task(label, total=total)

    def __enter__(self) -> Self:
        self._progress.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if not self._progress.disable:  # rich 13 would end even a disabled bar with a newline
            self._progress.stop()

    def advance(self, count: int = 1) -> None:
        """Count ``count`` more items done."""
        self._progress.advance(self._task, count)
