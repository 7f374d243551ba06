"""Metrics history: one row per round, appended to a JSON-lines file as it happens."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

__all__ = ["History", "Row", "read_history"]

Row = dict[str, float | int | str | None]


def _jsonable(v: float | int | str | None) -> float | int | str | None:
    # JSON has no NaN/inf; write them as strings a reader turns back into floats.
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v


def _parse(v: object) -> float | int | str | None:
    if v in ("nan", "inf", "-inf"):
        return float(str(v))
    if isinstance(v, (int, float, str)) or v is None:
        return v
    raise ValueError(f"unexpected value in history: {v!r}")


class History:
    """Rows of metrics, optionally mirrored to a JSON-lines file that is flushed every row.

    Parameters
    ----------
    path
        File to append to; ``None`` keeps the history in memory only.
    rows
        Rows already recorded (e.g. read back when resuming).
    """

    def __init__(self, path: Path | None = None, rows: Sequence[Row] = ()) -> None:
        self.rows: list[Row] = list(rows)
        self.path = path
        self._fh: IO[str] | None = None
        if path is not None:
            # Rewrite what we were given, so a resumed file holds exactly the kept rows.
            with path.open("w", encoding="utf-8") as fh:
                for r in self.rows:
                    fh.write(json.dumps({k: _jsonable(v) for k, v in r.items()}) + "\n")
            self._fh = path.open("a", encoding="utf-8")

    def append(self, row: Row) -> None:
        """Record a row and flush it to disk.

        The file first, then memory: an interrupt (Ctrl-C, SIGTERM) between the two leaves
        the row on disk only, and a resume cuts the file back to its checkpoint's round; the
        other order could leave a row in memory, and so in the checkpoint, that the file lacks.
        """
        if self._fh is not None:
            self._fh.write(json.dumps({k: _jsonable(v) for k, v in row.items()}) + "\n")
            self._fh.flush()
        self.rows.append(row)

    def column(self, key: str) -> list[float]:
        """Values of ``key`` over the rows that have it, as floats."""
        out: list[float] = []
        for r in self.rows:
            v = r.get(key)
            if isinstance(v, (int, float)):
                out.append(float(v))
        return out

    def pairs(self, x: str, y: str) -> tuple[list[float], list[float]]:
        """``(xs, ys)`` over rows holding numeric values of both keys."""
        xs, ys = [], []
        for r in self.rows:
            a, b = r.get(x), r.get(y)
            if isinstance(a, (int, float)) and isinstance(b, (int, float)):
                xs.append(float(a))
                ys.append(float(b))
        return xs, ys

    def columns(self) -> list[str]:
        """Every metric name that appears, in first-seen order."""
        seen: dict[str, None] = {}
        for r in self.rows:
            seen.update(dict.fromkeys(r))
        return list(seen)

    def last(self) -> Row:
        return self.rows[-1] if self.rows else {}

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def __iter__(self) -> Iterator[Row]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)


def read_history(path: Path) -> History:
    """Read a JSON-lines history; a truncated last line (a crash mid-write) is dropped."""
    rows: list[Row] = []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                raw = json.loads(line)
            except json.JSONDecodeError:
                break
            rows.append({k: _parse(v) for k, v in raw.items()})
    return History(None, rows)
