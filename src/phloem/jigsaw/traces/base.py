"""The trace-reader contract, and what every reader shares: finding files, reading numbers.

A reader turns a file (a shared trace, or the user's CSV) into a :class:`~..jobs.Trace`. A row
that is not a job (an unreadable or non-finite number, no GPUs, an unknown application, a
negative duration) is skipped and counted by why, never a traceback; a file that is missing, or
lacks a required column, is an error naming it.
"""

from __future__ import annotations

import csv
import math
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

from phloem.core.errors import ConfigError, DataNotFoundError
from phloem.core.registry import Configured
from phloem.jigsaw.apps import ThroughputModel
from phloem.jigsaw.jobs import Trace

__all__ = ["TraceReader", "csv_rows", "finite", "pick_app", "trace_file"]


class TraceReader(Configured, ABC):
    """Reads jobs from one kind of trace (built from its own ``Params``)."""

    kind: ClassVar[str] = "trace reader"

    @abstractmethod
    def read(self, data_dir: Path | None, model: ThroughputModel) -> Trace:
        """The trace's jobs; ``data_dir`` is the shared data folder (``None``: not set),
        ``model`` gives each job's work where the trace states a duration instead."""


def trace_file(given: str | None, data_dir: Path | None, relative: str, what: str) -> Path:
    """``given`` (a reader's ``path`` key) if set, else ``relative`` in the shared data folder.

    Raises
    ------
    DataNotFoundError
        When neither is there to look in.
    """
    if given is not None:
        return Path(given)
    if data_dir is None:
        raise DataNotFoundError(what, [], "Set PHLOEM_DATA_DIR, or give [trace] path.")
    return data_dir / relative


def csv_rows(path: Path, required: tuple[str, ...], *, what: str) -> Iterator[dict[str, str]]:
    """The rows of a CSV file with at least the ``required`` columns.

    Raises
    ------
    DataNotFoundError
        When the file is missing.
    ConfigError
        When it is not a CSV with those columns (naming the file and the missing ones).
    """
    if not path.is_file():
        raise DataNotFoundError(
            what, [path], "Give the path of an existing CSV file (see docs/jigsaw.md, 'Traces')."
        )
    try:
        fh = path.open(newline="", encoding="utf-8")
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise ConfigError("trace.path", f"{path} is not a readable CSV file ({e})") from e
    with fh:
        missing = [c for c in required if c not in header]
        if missing:
            raise ConfigError(
                "trace.path",
                f"{path} lacks the column(s) {', '.join(missing)} (it has: "
                f"{', '.join(header) or 'no header'})",
                required,
            )
        try:
            yield from reader
        except (UnicodeDecodeError, csv.Error) as e:
            raise ConfigError("trace.path", f"{path}: unreadable from a row on ({e})") from e


def finite(
    row: dict[str, str], key: str, skipped: Counter[str], *, low: float = 0.0
) -> float | None:
    """``row[key]`` as a finite number ``>= low``, else ``None`` with the row counted in
    ``skipped`` under a reason naming the column."""
    text = (row.get(key) or "").strip()
    try:
        v = float(text)
    except ValueError:
        skipped[f"{key}: not a number"] += 1
        return None
    if not math.isfinite(v):
        skipped[f"{key}: not finite"] += 1
        return None
    if v < low:
        skipped[f"{key}: below {low:g}"] += 1
        return None
    return v


#: Pollux's assignment of applications to Philly jobs by GPU-hours (Pollux, Sec. 5.3.1:
#: small 0-1, medium 1-10, large 10-100, extra-large 100+ GPU-hours).
GPU_HOUR_CLASSES: tuple[tuple[float, tuple[str, ...]], ...] = (
    (1.0, ("cifar10", "ncf")),
    (10.0, ("deepspeech2", "bert")),
    (100.0, ("yolov3",)),
    (math.inf, ("imagenet",)),
)


def pick_app(gpu_hours: float, index: int) -> str:
    """The application of a job of ``gpu_hours`` (alternating within a class by ``index``)."""
    for upper, apps in GPU_HOUR_CLASSES:
        if gpu_hours < upper:
            return apps[index % len(apps)]
    raise AssertionError("unreachable")


def duration_work(
    model: ThroughputModel, app: str, num_gpus: int, duration_s: float, batch: int | None = None
) -> tuple[int, float]:
    """``(batch_size, work)`` of a job that ran ``duration_s`` seconds on ``num_gpus`` GPUs
    packed on as few nodes as the throughput tables measured (4 per node), at ``batch``
    (default: the application's for that many GPUs)."""
    batch = model.default_batch(app, num_gpus) if batch is None else batch
    placement = (4,) * (num_gpus // 4) + ((num_gpus % 4,) if num_gpus % 4 else ())
    return batch, duration_s * model.solo_rate(app, placement, batch)
