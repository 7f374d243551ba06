"""A progress bar for long work that disappears when not wanted (tests, pipes)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

__all__ = ["ProgressHandle", "progress_bar"]


class ProgressHandle(Protocol):
    def advance(self, n: int = 1, **fields: str) -> None: ...


class _Null:
    def advance(self, n: int = 1, **fields: str) -> None:
        return None


class _Rich:
    def __init__(self, progress: object, task: object) -> None:
        self._p, self._t = progress, task

    def advance(self, n: int = 1, **fields: str) -> None:
        self._p.update(self._t, advance=n, info=fields.get("info", ""))  # type: ignore[attr-defined]


@contextmanager
def progress_bar(total: int, description: str, *, enabled: bool = True) -> Iterator[ProgressHandle]:
    """A rich progress bar with ``total`` steps, or a no-op handle when ``enabled`` is false."""
    if not enabled:
        yield _Null()
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        transient=False,
    ) as p:
        task = p.add_task(description, total=total, info="")
        yield _Rich(p, task)
