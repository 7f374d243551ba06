"""Tiresias's discretised two-dimensional least-attained-service (Gu et al., "Tiresias: A GPU
Cluster Manager for Distributed Deep Learning", NSDI 2019).

A job's attained service is its GPU-seconds (GPUs x time held). Jobs start in the highest-
priority queue and move down when their service crosses a queue's threshold; queues are served
in order, each first come first served (by the time a job entered the queue), and a job that
does not fit is skipped for smaller ones behind it. A lower queue's job holding GPUs is
preempted when higher-priority jobs need them. With ``starvation_factor > 0`` a job waiting
longer than that many times its last run returns to the top queue (Tiresias's promotion knob;
0: off, as in the Pollux artifact's Tiresias, which this policy's defaults follow: two queues,
threshold 16 GPU-hours).

The policy asks to be woken when a running job will cross its next threshold, so demotions
take effect without a periodic poll.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from phloem.core import checks
from phloem.core.errors import ConfigError
from phloem.jigsaw.policies.base import Allocation, ClusterState, SchedulingPolicy, keep_or_place
from phloem.jigsaw.registries import POLICIES

__all__ = ["Tiresias"]


@dataclass(frozen=True)
class TiresiasParams:
    """``thresholds_gpu_s``: attained GPU-seconds at which a job moves to the next queue
    (ascending; ``[57600]``: two queues split at 16 GPU-hours); ``starvation_factor``: promote a
    job waiting longer than this times its last run (0: never)."""

    thresholds_gpu_s: tuple[float, ...] = (57600.0,)
    starvation_factor: float = 0.0

    def __post_init__(self) -> None:
        ts = tuple(self.thresholds_gpu_s)
        for k, t in enumerate(ts):
            checks.real(f"thresholds_gpu_s[{k}]", t, low=0.0, low_open=True)
        if list(ts) != sorted(ts):
            raise ConfigError("thresholds_gpu_s", f"{list(ts)} is not ascending")
        object.__setattr__(self, "thresholds_gpu_s", tuple(float(t) for t in ts))
        checks.real("starvation_factor", self.starvation_factor, low=0.0)


@dataclass
class _Entry:
    queue: int = 0
    entered: tuple[float, int] = (0.0, 0)  # when it entered its queue; ties: trace order
    last_run_s: float = 0.0  # length of its last run
    run_started: float = math.nan
    waiting_since: float = math.nan
    service_at_promotion: float = 0.0


@POLICIES.register
class Tiresias(SchedulingPolicy):
    """Discretised 2D-LAS, preemptive."""

    name: ClassVar[str] = "tiresias"
    description: ClassVar[str] = "Tiresias discretised 2D-LAS (GPU-time queues), preemptive"
    Params: ClassVar[type[TiresiasParams]] = TiresiasParams
    params: TiresiasParams

    def __init__(self, params: TiresiasParams | None = None) -> None:
        super().__init__(params)
        self._jobs: dict[int, _Entry] = {}

    def reset(self) -> None:
        self._jobs = {}

    def allocate(self, state: ClusterState) -> Allocation:
        th = self.params.thresholds_gpu_s
        now = state.now_s
        live = {s.index for s in state.jobs}
        self._jobs = {j: e for j, e in self._jobs.items() if j in live}
        for s in state.jobs:
            e = self._jobs.get(s.index)
            if e is None:
                e = self._jobs[s.index] = _Entry(entered=(now, s.index), waiting_since=now)
            service = s.attained_gpu_s - e.service_at_promotion
            q = sum(1 for t in th if service >= t - 1e-6)
            if q > e.queue:
                e.queue, e.entered = q, (now, s.index)
            f = self.params.starvation_factor
            if (f > 0 and not s.gpus and e.queue > 0 and e.last_run_s > 0
                    and now - e.waiting_since >= f * e.last_run_s):  # fmt: skip
                e.queue, e.entered = 0, (now, s.index)
                e.service_at_promotion = s.attained_gpu_s
        order = sorted(
            state.jobs, key=lambda s: (self._jobs[s.index].queue, self._jobs[s.index].entered)
        )
        # admitted in priority order, skipping jobs that do not fit; the rest are preempted
        gpus = keep_or_place(state, order, backfill=True)
        wake = math.inf
        for s in state.jobs:
            e = self._jobs[s.index]
            was_running = bool(s.gpus)
            runs = s.index in gpus
            if runs and not was_running:
                e.run_started = now
            if was_running and not runs:
                e.last_run_s = now - e.run_started
                e.waiting_since = now
            if runs and e.queue < len(th):
                # GPU-seconds left to the next threshold, at num_gpus per second
                left = th[e.queue] - (s.attained_gpu_s - e.service_at_promotion)
                wake = min(wake, now + max(left, 1e-3) / s.job.num_gpus)
        return Allocation(gpus, review_at_s=wake if math.isfinite(wake) else None)
