"""Rich consoles and progress bars shared by the library and the commands.

Progress and notes go to stderr so that stdout stays clean for ``--json`` output.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

err_console = Console(stderr=True)
console = Console()

T = TypeVar("T")


def quiet() -> bool:
    """True when progress bars are switched off (DCGAN_QUIET=1)."""
    return os.environ.get("DCGAN_QUIET", "") not in ("", "0")


class RateColumn(ProgressColumn):
    """Items per second over the task's lifetime, e.g. '412 img/s'."""

    def __init__(self, unit: str = "img"):
        super().__init__()
        self.unit = unit

    def render(self, task) -> Text:
        unit = task.fields.get("unit", self.unit)
        speed = task.fields.get("rate") or task.speed
        if not speed:
            return Text(f"- {unit}/s", style="progress.data.speed")
        return Text(f"{speed:,.0f} {unit}/s" if speed >= 10 else f"{speed:.2f} {unit}/s", style="progress.data.speed")


def make_progress(*extra_columns: ProgressColumn, unit: str = "img") -> Progress:
    """A progress bar with count, rate, elapsed time and ETA."""
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        RateColumn(unit),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        *extra_columns,
        console=err_console,
        disable=quiet(),
        transient=False,
    )


@contextmanager
def progress_task(description: str, total: int | None, unit: str = "img") -> Iterator:
    """Context manager yielding ``advance(n)`` for one progress bar."""
    with make_progress(unit=unit) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n=1: progress.advance(task, n)


def track(items: Iterable[T], description: str, total: int | None = None, unit: str = "item") -> Iterator[T]:
    """Iterate with a progress bar."""
    with progress_task(description, total, unit=unit) as advance:
        for item in items:
            yield item
            advance(1)


def note(message: str) -> None:
    """A short informational line on stderr."""
    err_console.print(message, soft_wrap=True, highlight=False)
