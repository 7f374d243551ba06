"""What a simulation measured: job completion times, GPU-time, two cluster efficiencies,
utilisation and bytes on the network."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from phloem.jigsaw.rates import RateModel
from phloem.jigsaw.simulator import SimResult

__all__ = ["Metrics", "metrics"]


@dataclass(frozen=True)
class Metrics:
    """One simulation's figures.

    Attributes
    ----------
    jobs, finished
        Jobs in the trace (refused ones included), and those that finished.
    avg_jct_s, p99_jct_s
        Mean and 99th percentile of finish - arrival over the finished jobs.
    makespan_s
        From the first arrival to the last finish (to the simulation's end when jobs were
        left unfinished).
    avg_wait_s
        Mean time from arrival to first holding GPUs.
    gpu_time_s
        GPU-seconds the jobs held (a GPU two jobs share counts for each).
    allocated_gpu_s
        GPU-seconds in which a GPU held at least one job.
    useful_gpu_s
        Compute seconds that advanced training (see :mod:`.rates`).
    efficiency
        ``useful_gpu_s / allocated_gpu_s``: cluster efficiency, the first way.
    samples_per_gpu_s
        Samples processed per allocated GPU-second: cluster efficiency, the second way.
    work_per_gpu_s
        Work done, in single-GPU-seconds of each job's application alone, per allocated
        GPU-second (the second way made comparable across applications; 1: as good as every
        job on one dedicated GPU).
    utilisation
        ``allocated_gpu_s / (GPUs x makespan)``.
    network_bytes
        Gradient bytes sent between nodes.
    restarts, decisions, spb_job_s
        Checkpoint-restarts, policy calls, seconds jobs ran with shallow workers.
    """

    jobs: int
    finished: int
    avg_jct_s: float
    p99_jct_s: float
    makespan_s: float
    avg_wait_s: float
    gpu_time_s: float
    allocated_gpu_s: float
    useful_gpu_s: float
    efficiency: float
    samples_per_gpu_s: float
    work_per_gpu_s: float
    utilisation: float
    network_bytes: float
    restarts: int
    decisions: int
    spb_job_s: float

    def to_json(self) -> dict[str, Any]:
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                for k, v in asdict(self).items()}  # fmt: skip


def metrics(result: SimResult, rates: RateModel) -> Metrics:
    """The figures of ``result`` (``rates`` gives each application's single-GPU speed)."""
    jobs = result.trace.jobs
    arrival = np.array([j.arrival_s for j in jobs], dtype=float)
    done = ~np.isnan(result.finish_s)
    jct = (result.finish_s - arrival)[done]
    started = ~np.isnan(result.start_s)
    wait = (result.start_s - arrival)[started]
    alloc = result.busy_gpu_s
    one_gpu: dict[str, float] = {}
    work_s = 0.0
    for i, j in enumerate(jobs):
        if j.app not in one_gpu:
            b = rates.model.default_batch(j.app, 1)
            one_gpu[j.app] = rates.model.solo_rate(j.app, (1,), b)
        work_s += _work_done(result, i, j.work) / one_gpu[j.app]
    # to the last finish; with jobs left unfinished, to where the simulation stopped (GPU time
    # was allocated until then)
    end = float(np.nanmax(result.finish_s)) if done.all() else result.end_s
    makespan = end - float(arrival.min()) if len(jobs) else 0.0
    g = result.cluster.num_gpus
    return Metrics(
        jobs=len(jobs),
        finished=int(done.sum()),
        avg_jct_s=float(jct.mean()) if jct.size else math.nan,
        p99_jct_s=float(np.percentile(jct, 99)) if jct.size else math.nan,
        makespan_s=makespan,
        avg_wait_s=float(wait.mean()) if wait.size else math.nan,
        gpu_time_s=float(result.gpu_s.sum()),
        allocated_gpu_s=alloc,
        useful_gpu_s=float(result.useful_gpu_s.sum()),
        efficiency=float(result.useful_gpu_s.sum()) / alloc if alloc > 0 else math.nan,
        samples_per_gpu_s=float(result.samples.sum()) / alloc if alloc > 0 else math.nan,
        work_per_gpu_s=work_s / alloc if alloc > 0 else math.nan,
        utilisation=alloc / (g * makespan) if makespan > 0 else math.nan,
        network_bytes=float(result.network_bytes.sum()),
        restarts=int(result.restarts.sum()),
        decisions=result.decisions,
        spb_job_s=float(result.spb_s.sum()),
    )


def _work_done(result: SimResult, i: int, work: float) -> float:
    return work if not math.isnan(result.finish_s[i]) else float(result.work_done[i])
