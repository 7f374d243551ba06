"""Your own trace, as a CSV file (the format is documented in ``docs/jigsaw.md``).

Required columns: ``name``, ``time`` (submission, seconds; any origin) and ``num_gpus``. Then
either ``duration`` (seconds the job runs alone on ``num_gpus`` GPUs packed on as few nodes as
possible) or nothing (the application's own work, as in the Pollux workloads). Optional:
``application`` (one of the throughput tables' applications; default the reader's ``app``),
``batch_size`` (default: the application's for that many GPUs), ``spb`` (``1``/``true``: the
job accepts partial backpropagation), ``gpu_fraction`` (share of each GPU it uses, (0, 1]).
A row that is not a job is skipped and counted by why.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from phloem.core.errors import ConfigError
from phloem.jigsaw.apps import APPLICATIONS, ThroughputModel
from phloem.jigsaw.jobs import Job, Trace
from phloem.jigsaw.registries import TRACES
from phloem.jigsaw.traces.base import TraceReader, csv_rows, duration_work, finite

__all__ = ["UserTrace"]

_TRUE, _FALSE = {"1", "true", "yes"}, {"", "0", "false", "no"}


@dataclass(frozen=True)
class UserParams:
    """``path``: your CSV file (required); ``app``: the application of rows without one."""

    path: str = ""
    app: str = "cifar10"

    def __post_init__(self) -> None:
        if not str(self.path).strip():
            raise ConfigError("path", "give the CSV file of your trace")
        if self.app not in APPLICATIONS:
            raise ConfigError("app", f"unknown application {self.app!r}", list(APPLICATIONS))


@TRACES.register
class UserTrace(TraceReader):
    """A CSV trace of your own."""

    name: ClassVar[str] = "csv"
    description: ClassVar[str] = "your CSV: name,time,num_gpus[,duration,application,...]"
    Params: ClassVar[type[UserParams]] = UserParams
    params: UserParams

    def read(self, data_dir: Path | None, model: ThroughputModel) -> Trace:
        path = Path(self.params.path)
        skipped: Counter[str] = Counter()
        jobs = []
        for k, row in enumerate(csv_rows(path, ("name", "time", "num_gpus"), what="your trace")):
            app = (row.get("application") or "").strip() or self.params.app
            if app not in model.apps:
                skipped["application: unknown"] += 1
                continue
            t = finite(row, "time", skipped, low=-1e12)
            n = finite(row, "num_gpus", skipped, low=1)
            if t is None or n is None:
                continue
            if n != int(n) or n > 1 << 20:
                skipped["num_gpus: fractional or absurd"] += 1
                continue
            spb_text = (row.get("spb") or "").strip().lower()
            if spb_text not in _TRUE | _FALSE:
                skipped["spb: not a boolean"] += 1
                continue
            frac = 1.0
            if (row.get("gpu_fraction") or "").strip():
                f = finite(row, "gpu_fraction", skipped)
                if f is None:
                    continue
                if not 0 < f <= 1:
                    skipped["gpu_fraction: outside (0, 1]"] += 1
                    continue
                frac = f
            batch = model.default_batch(app, int(n))
            if (row.get("batch_size") or "").strip():
                b = finite(row, "batch_size", skipped, low=1)
                if b is None:
                    continue
                batch = int(b)
            if (row.get("duration") or "").strip():
                d = finite(row, "duration", skipped)
                if d is None:
                    continue
                if d == 0:
                    skipped["duration: zero"] += 1
                    continue
                _, work = duration_work(model, app, int(n), d, batch)
            else:
                work = model.apps[app].work
            name = (row.get("name") or "").strip() or f"job-{k}"
            jobs.append(Job(name, t, app, int(n), batch, work, spb_text in _TRUE, frac))
        return Trace(tuple(jobs), skipped, str(path))
