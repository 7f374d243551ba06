"""Callbacks: optional hooks around a run, all no-ops by default (pfl-style)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from phloem.core.history import Row

__all__ = ["Callback", "CallbackList", "EarlyStop"]


class Callback:
    """Override any hook. ``on_round_end`` returns ``True`` to stop the run after this round."""

    def on_run_start(self, info: dict[str, Any]) -> None:
        """Called once, before the first round (after resuming, when resuming)."""

    def on_round_end(self, row: Row) -> bool:
        """Called with each round's metrics row; return ``True`` to stop."""
        return False

    def on_run_end(self, rows: Sequence[Row]) -> None:
        """Called once at the end, also after an interruption or divergence."""


class CallbackList(Callback):
    """Fans every hook out to a list of callbacks (any of them may stop the run)."""

    def __init__(self, callbacks: Sequence[Callback] = ()) -> None:
        self.callbacks = list(callbacks)

    def on_run_start(self, info: dict[str, Any]) -> None:
        for c in self.callbacks:
            c.on_run_start(info)

    def on_round_end(self, row: Row) -> bool:
        stop = False
        for c in self.callbacks:
            stop = c.on_round_end(row) or stop
        return stop

    def on_run_end(self, rows: Sequence[Row]) -> None:
        for c in self.callbacks:
            c.on_run_end(rows)


class EarlyStop(Callback):
    """Stop when ``metric`` reaches ``target``: at or below (``"min"``) or above (``"max"``)."""

    def __init__(self, metric: str, target: float, mode: str = "min") -> None:
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        self.metric, self.target, self.mode = metric, target, mode

    def on_round_end(self, row: Row) -> bool:
        v = row.get(self.metric)
        if not isinstance(v, (int, float)):
            return False
        return v <= self.target if self.mode == "min" else v >= self.target
