"""The Philly-derived trace of the Pollux artifact (``traces/philly.csv``: ``timestamp,
duration,num_gpus,gpu_time,cluster``; 82,247 jobs of Microsoft's Philly cluster, Jeon et al.,
ATC 2019).

Each job keeps its GPU count and runs exactly ``duration`` seconds when alone on as few nodes as
possible; its application (for placement sensitivity, co-location and SPB) is assigned by its
GPU-hours as Pollux assigned them.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from phloem.core import checks
from phloem.jigsaw.apps import ThroughputModel
from phloem.jigsaw.jobs import Job, Trace
from phloem.jigsaw.registries import TRACES
from phloem.jigsaw.traces.base import (
    TraceReader,
    csv_rows,
    duration_work,
    finite,
    pick_app,
    trace_file,
)

__all__ = ["PhillyTrace"]


@dataclass(frozen=True)
class PhillyParams:
    """``limit``: the first N jobs by arrival (``None``: all); ``max_gpus``: jobs asking for
    more are skipped (counted); ``path``: another file of the same columns."""

    limit: int | None = None
    max_gpus: int = 1024
    path: str | None = None

    def __post_init__(self) -> None:
        if self.limit is not None:
            checks.integer("limit", self.limit, low=1)
        checks.integer("max_gpus", self.max_gpus, low=1)


@TRACES.register
class PhillyTrace(TraceReader):
    """The Philly-derived trace (82,247 jobs over 109 days)."""

    name: ClassVar[str] = "philly"
    description: ClassVar[str] = "the Philly-derived trace of the Pollux artifact (82k jobs)"
    Params: ClassVar[type[PhillyParams]] = PhillyParams
    params: PhillyParams

    def read(self, data_dir: Path | None, model: ThroughputModel) -> Trace:
        path = trace_file(
            self.params.path, data_dir, "traces/pollux/traces/philly.csv", "the Philly trace"
        )
        skipped: Counter[str] = Counter()
        raw = []
        for k, row in enumerate(
            csv_rows(path, ("timestamp", "duration", "num_gpus"), what="the Philly trace")
        ):
            try:
                stamp = dt.datetime.fromisoformat(row["timestamp"].strip())
                # naive times are UTC: the same arrivals on every machine
                t = stamp.replace(tzinfo=stamp.tzinfo or dt.UTC).timestamp()
            except (ValueError, OverflowError):
                skipped["timestamp: unreadable"] += 1
                continue
            d = finite(row, "duration", skipped)
            n = finite(row, "num_gpus", skipped, low=1)
            if d is None or n is None:
                continue
            if n > self.params.max_gpus or n != int(n):
                skipped["num_gpus: above max_gpus or fractional"] += 1
                continue
            if d <= 0:
                skipped["duration: zero"] += 1
                continue
            raw.append((t, k, d, int(n)))
        raw.sort()
        if self.params.limit is not None:
            raw = raw[: self.params.limit]
        jobs = []
        for i, (t, k, d, n) in enumerate(raw):
            app = pick_app(d * n / 3600.0, i)
            batch, work = duration_work(model, app, n, d)
            jobs.append(Job(f"philly-{k}", t, app, n, batch, work))
        return Trace(tuple(jobs), skipped, str(path))
