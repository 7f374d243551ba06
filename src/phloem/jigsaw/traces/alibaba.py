"""Alibaba's 2023 GPU cluster trace (Weng et al., "Beware of Fragmentation: Scheduling GPU-Sharing
Workloads with Fusion Bin Packing", ATC 2023; ``openb_pod_list_default.csv``): 8,152 pods with
``num_gpu``, ``gpu_milli`` (thousandths of a GPU a pod uses; below 1000 it can share a GPU),
``creation_time``, ``scheduled_time`` and ``deletion_time`` in seconds.

A pod becomes a job of ``num_gpu`` GPUs (pods with none are skipped and counted) using
``gpu_milli / 1000`` of each, that runs ``deletion_time - scheduled_time`` seconds alone; its
throughput profile is the reader's ``app``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from phloem.core import checks
from phloem.core.errors import ConfigError
from phloem.jigsaw.apps import APPLICATIONS, ThroughputModel
from phloem.jigsaw.jobs import Job, Trace
from phloem.jigsaw.registries import TRACES
from phloem.jigsaw.traces.base import TraceReader, csv_rows, duration_work, finite, trace_file

__all__ = ["AlibabaPods"]


@dataclass(frozen=True)
class AlibabaParams:
    """``app``: the throughput profile pods run by; ``limit``: the first N pods by creation;
    ``path``: another pod list of the same columns."""

    app: str = "cifar10"
    limit: int | None = None
    path: str | None = None

    def __post_init__(self) -> None:
        if self.app not in APPLICATIONS:
            raise ConfigError("app", f"unknown application {self.app!r}", list(APPLICATIONS))
        if self.limit is not None:
            checks.integer("limit", self.limit, low=1)


@TRACES.register
class AlibabaPods(TraceReader):
    """GPU pods of Alibaba's 2023 trace, fractional GPUs included."""

    name: ClassVar[str] = "alibaba"
    description: ClassVar[str] = "Alibaba 2023 GPU pods (fractional GPU sharing)"
    Params: ClassVar[type[AlibabaParams]] = AlibabaParams
    params: AlibabaParams

    def read(self, data_dir: Path | None, model: ThroughputModel) -> Trace:
        path = trace_file(
            self.params.path,
            data_dir,
            "traces/alibaba/openb_pod_list_default.csv",
            "the Alibaba pod list",
        )
        cols = ("name", "num_gpu", "gpu_milli", "creation_time", "scheduled_time", "deletion_time")
        skipped: Counter[str] = Counter()
        raw = []
        for row in csv_rows(path, cols, what="the Alibaba pod list"):
            vals = [finite(row, c, skipped) for c in cols[1:]]
            if any(v is None for v in vals):
                continue
            n, milli, created, start, end = (float(v) for v in vals)  # type: ignore[arg-type]
            if n < 1 or n != int(n):
                skipped["num_gpu: none or fractional"] += 1
                continue
            if not 0 < milli <= 1000:
                skipped["gpu_milli: outside (0, 1000]"] += 1
                continue
            if end <= start:
                skipped["deletion_time: not after scheduled_time"] += 1
                continue
            raw.append((created, row["name"], int(n), milli / 1000.0, end - start))
        raw.sort()
        if self.params.limit is not None:
            raw = raw[: self.params.limit]
        jobs = []
        for created, name, n, frac, duration in raw:
            batch, work = duration_work(model, self.params.app, n, duration)
            jobs.append(Job(name, created, self.params.app, n, batch, work, gpu_fraction=frac))
        return Trace(tuple(jobs), skipped, str(path))
