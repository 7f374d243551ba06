"""Run directories: ``runs/<name>-<YYYYmmdd-HHMMSS>/`` holding everything about one run.

Layout::

    config.toml      the resolved configuration (what actually ran)
    history.jsonl    one metrics row per round, appended and flushed every round
    summary.json     final metrics, status (finished / interrupted / diverged), timings
    checkpoint.pt    latest checkpoint (when checkpointing is on)
    plots/           figures
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from phloem.core.errors import RunNotFoundError
from phloem.core.history import History, read_history

__all__ = ["RunDir", "RunInfo", "list_runs"]

_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class RunInfo:
    """A one-line view of a run for listings."""

    path: Path
    name: str
    status: str
    rounds: int
    summary: dict[str, Any]


class RunDir:
    """One run's folder. Create with :meth:`create`, reopen with :meth:`open`."""

    CONFIG = "config.toml"
    HISTORY = "history.jsonl"
    SUMMARY = "summary.json"
    CHECKPOINT = "checkpoint.pt"

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def create(cls, root: Path, name: str, *, now: float | None = None) -> RunDir:
        """Create ``root/<name>-<time>/`` (a numeric suffix avoids clashes)."""
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
        base = f"{_SAFE.sub('_', name) or 'run'}-{stamp}"
        root.mkdir(parents=True, exist_ok=True)
        path, k = root / base, 1
        while path.exists():
            k += 1
            path = root / f"{base}-{k}"
        path.mkdir()
        (path / "plots").mkdir()
        return cls(path)

    @classmethod
    def open(cls, path: Path) -> RunDir:
        """An existing run folder (raises :class:`RunNotFoundError` naming it when absent)."""
        if not (path / cls.CONFIG).is_file() and not (path / cls.HISTORY).is_file():
            raise RunNotFoundError(
                f"{path} is not a phloem run folder (no {cls.CONFIG} or {cls.HISTORY})"
            )
        return cls(path)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def history_path(self) -> Path:
        return self.path / self.HISTORY

    @property
    def checkpoint_path(self) -> Path:
        return self.path / self.CHECKPOINT

    @property
    def plots(self) -> Path:
        p = self.path / "plots"
        p.mkdir(exist_ok=True)
        return p

    def write_config(self, text: str) -> None:
        (self.path / self.CONFIG).write_text(text, encoding="utf-8")

    def read_config(self) -> str:
        return (self.path / self.CONFIG).read_text(encoding="utf-8")

    def history(self) -> History:
        """The recorded history (empty when none was written yet)."""
        if not self.history_path.is_file():
            return History()
        return read_history(self.history_path)

    def write_summary(self, summary: dict[str, Any]) -> None:
        tmp = self.path / (self.SUMMARY + ".tmp")
        tmp.write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
        tmp.replace(self.path / self.SUMMARY)

    def summary(self) -> dict[str, Any]:
        p = self.path / self.SUMMARY
        if not p.is_file():
            return {}
        data: dict[str, Any] = json.loads(p.read_text(encoding="utf-8"))
        return data

    def info(self) -> RunInfo:
        s = self.summary()
        status = str(s.get("status", "running or killed"))
        return RunInfo(self.path, self.name, status, len(self.history()), s)


def list_runs(root: Path) -> list[RunInfo]:
    """Runs under ``root``, oldest first (folders that are not runs are ignored)."""
    if not root.is_dir():
        return []
    out = []
    for p in sorted(root.iterdir(), key=lambda q: q.stat().st_mtime):
        if p.is_dir() and ((p / RunDir.CONFIG).is_file() or (p / RunDir.HISTORY).is_file()):
            out.append(RunDir(p).info())
    return out
