"""The Pollux artifact's workloads (Qiao et al., OSDI 2021, Sec. 5.3).

Eight workloads at each relative load (0.5x, 1x, 1.5x, 2x: 80, 160, 240 and 320 jobs; and a
"realistic" variant), each a CSV of ``name,time,application,num_replicas,batch_size``
(workload 1 at 1x is bundled, so that this reader works with no data folder): the jobs of an
8-hour window of the Microsoft Philly trace, each assigned one of six applications by its
GPU-time, with the GPU count and batch size Pollux's baselines use. A job's work is its
application's (see :mod:`..apps`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from phloem.core import checks
from phloem.core.errors import ConfigError, DataNotFoundError
from phloem.jigsaw.apps import TABLES, ThroughputModel
from phloem.jigsaw.jobs import Job, Trace
from phloem.jigsaw.registries import TRACES
from phloem.jigsaw.traces.base import TraceReader, csv_rows, finite

__all__ = ["PolluxWorkload"]

#: relative load -> the artifact's folder
LOADS = {"0.5": "workloads-0.5", "1": "workloads", "1.5": "workloads-1.5", "2": "workloads-2.0",
         "realistic": "workloads-realistic"}  # fmt: skip


@dataclass(frozen=True)
class PolluxParams:
    """``load``: ``"0.5"``, ``"1"``, ``"1.5"``, ``"2"`` or ``"realistic"``; ``workload``: 1 to 8;
    ``path``: a CSV of the same columns instead (then ``load`` and ``workload`` are ignored)."""

    load: str = "1"
    workload: int = 1
    path: str | None = None

    def __post_init__(self) -> None:
        if str(self.load) not in LOADS:
            raise ConfigError("load", f"unknown load {self.load!r}", list(LOADS))
        checks.integer("workload", self.workload, low=1, high=8)


@TRACES.register
class PolluxWorkload(TraceReader):
    """One of the Pollux artifact's workloads."""

    name: ClassVar[str] = "pollux"
    description: ClassVar[str] = "a Pollux workload (load 0.5/1/1.5/2/realistic, 1-8)"
    Params: ClassVar[type[PolluxParams]] = PolluxParams
    params: PolluxParams

    def path(self, data_dir: Path | None) -> Path:
        if self.params.path is not None:
            return Path(self.params.path)
        bundled = TABLES / "workloads" / "pollux-1x-workload-1.csv"
        if data_dir is None:
            if str(self.params.load) == "1" and self.params.workload == 1:
                return bundled
            raise DataNotFoundError(
                f"the Pollux workload {self.params.workload} at load {self.params.load}", [],
                "Set PHLOEM_DATA_DIR to the shared data folder, or give [trace] path "
                "(only load 1, workload 1 is bundled).",
            )  # fmt: skip
        folder = LOADS[str(self.params.load)]
        return data_dir / "traces" / "pollux" / folder / f"workload-{self.params.workload}.csv"

    def read(self, data_dir: Path | None, model: ThroughputModel) -> Trace:
        path = self.path(data_dir)
        skipped: Counter[str] = Counter()
        jobs = []
        cols = ("name", "time", "application", "num_replicas", "batch_size")
        for row in csv_rows(path, cols, what="a Pollux workload"):
            app = row["application"].strip()
            if app not in model.apps:
                skipped["application: unknown"] += 1
                continue
            t = finite(row, "time", skipped)
            n = finite(row, "num_replicas", skipped, low=1)
            b = finite(row, "batch_size", skipped, low=1)
            if t is None or n is None or b is None:
                continue
            jobs.append(Job(row["name"], t, app, int(n), int(b), model.apps[app].work))
        return Trace(tuple(jobs), skipped, str(path))
