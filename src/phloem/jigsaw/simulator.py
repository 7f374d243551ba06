"""The discrete-event simulator: one loop, whatever the policy.

Events are arrivals (the trace, sorted), completions (each running job's finish time at its
current rate; the earliest is found over the running jobs at once) and the wake-up the policy
asks for (``review_at_s``: Tiresias's next demotion, Gavel's next round; each answer replaces
the previous request). With ``round_s > 0`` decisions happen on a grid of rounds,
as in the Pollux simulator (a job arriving mid-round waits for the next round; a finished job's
GPUs return at the next round); with ``round_s = 0`` at each event. At a decision the
simulator advances every running job at its rate (vectorised over the running jobs), retires
those that finished, asks the policy, checks its answer and restarts the jobs whose GPUs
changed (``restart_s`` without progress: a checkpoint-restart). Between decisions rates are
constant.

Ties at one instant are ordered completions, then arrivals, then the policy.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from phloem.core import checks
from phloem.core.errors import PhloemError
from phloem.jigsaw.cluster import ClusterSpec
from phloem.jigsaw.jobs import Trace
from phloem.jigsaw.policies.base import (
    Allocation,
    ClusterState,
    JobStatus,
    SchedulingPolicy,
    Sharing,
)
from phloem.jigsaw.rates import RateModel

__all__ = ["AllocationError", "Segment", "SimOptions", "SimResult", "simulate"]


class AllocationError(PhloemError, RuntimeError):
    """A policy answered with an allocation the cluster cannot hold (a policy's bug)."""


@dataclass(frozen=True)
class SimOptions:
    """``[sim]``: ``round_s`` (decision grid; 0: every event), ``restart_s`` (a job whose GPUs
    change makes no progress for this long), ``interleave_overhead`` (speed lost to switching
    between interleaved jobs), ``penalty`` (SPB's statistical-efficiency penalty on or off),
    ``max_time_s`` (stop there; unfinished jobs are reported), ``segments`` (record who held
    which GPUs when, for Gantt strips), ``nic_contention`` (jobs crossing a node's NIC beyond
    its ``nic_gbps`` slow each other's synchronisation)."""

    round_s: float = 60.0
    restart_s: float = 30.0
    interleave_overhead: float = 0.05
    penalty: bool = True
    max_time_s: float = 1e10
    segments: bool = True
    nic_contention: bool = True

    def __post_init__(self) -> None:
        checks.real("sim.round_s", self.round_s, low=0.0, high=86400.0)
        checks.real("sim.restart_s", self.restart_s, low=0.0, high=86400.0)
        checks.real("sim.interleave_overhead", self.interleave_overhead, low=0.0, high=0.9)
        checks.boolean("sim.penalty", self.penalty)
        checks.real("sim.max_time_s", self.max_time_s, low=0.0, low_open=True, high=1e15)
        checks.boolean("sim.segments", self.segments)
        checks.boolean("sim.nic_contention", self.nic_contention)


@dataclass(frozen=True)
class Segment:
    """Job ``job`` held ``gpus`` from ``start_s`` to ``end_s`` (``shallow``: its lent GPUs)."""

    job: int
    start_s: float
    end_s: float
    gpus: tuple[int, ...]
    shallow: frozenset[int] = frozenset()


@dataclass
class SimResult:
    """What a simulation produced (metrics are computed from it in :mod:`.metrics`).

    Per job (arrays indexed like ``trace.jobs``): ``start_s`` (first time it held GPUs; NaN:
    never), ``finish_s`` (NaN: unfinished), ``gpu_s`` (GPU-seconds held), ``useful_gpu_s``,
    ``samples``, ``network_bytes``, ``restarts``, ``spb_s`` (seconds run with shallow workers),
    ``work_done``.
    Over time: ``timeline`` rows ``(time, busy GPUs, running jobs, waiting jobs)`` at each
    decision; ``busy_gpu_s`` (GPU-seconds with at least one job); ``decisions`` (policy
    calls); ``end_s``; ``segments`` (when recorded).
    """

    trace: Trace
    cluster: ClusterSpec
    policy: str
    start_s: np.ndarray
    finish_s: np.ndarray
    gpu_s: np.ndarray
    useful_gpu_s: np.ndarray
    samples: np.ndarray
    network_bytes: np.ndarray
    restarts: np.ndarray
    spb_s: np.ndarray
    timeline: list[tuple[float, int, int, int]]
    busy_gpu_s: float
    decisions: int
    end_s: float
    segments: list[Segment] = field(default_factory=list)
    refused: dict[str, int] = field(default_factory=dict)
    work_done: np.ndarray = field(default_factory=lambda: np.zeros(0))


def _check(
    alloc: Allocation,
    previous: Allocation,
    active: Mapping[int, object],
    cluster: ClusterSpec,
    rates: RateModel,
    sharing: Sharing,
) -> None:
    """Raise :class:`AllocationError` unless ``alloc`` fits the cluster (jobs whose GPUs did
    not change since ``previous`` were checked then)."""
    cap = cluster.num_gpus
    total = 0
    for j, gpus in alloc.gpus.items():
        total += len(gpus)
        if previous.gpus.get(j) == gpus:
            continue
        if j not in active:
            raise AllocationError(f"policy allocated GPUs to job {j}, which is not active")
        job = rates.jobs[j]
        if len(gpus) != job.num_gpus or len(set(gpus)) != len(gpus):
            raise AllocationError(
                f"job {job.name} asks for {job.num_gpus} GPUs and got {len(set(gpus))}"
            )
        if gpus and not (min(gpus) >= 0 and max(gpus) < cap):
            raise AllocationError(f"job {job.name}: GPUs outside the cluster (0..{cap - 1})")
    for j, sh in alloc.shallow.items():
        if j not in alloc.gpus or not sh <= set(alloc.gpus[j]) or not rates.jobs[j].spb:
            raise AllocationError(f"job {j}: shallow GPUs must be its own and it must allow SPB")
        if len(sh) >= len(alloc.gpus[j]):
            raise AllocationError(f"job {j}: at least one of its GPUs must stay deep")
    distinct = len({g for gs in alloc.gpus.values() for g in gs})
    if distinct == total:
        return
    if sharing is Sharing.NONE:
        raise AllocationError("a GPU given to two jobs by a policy that does not share")
    per_gpu: dict[int, list[int]] = {}
    for j, gpus in alloc.gpus.items():
        for g in gpus:
            per_gpu.setdefault(g, []).append(j)
    mem = cluster.gpu_memory_gb
    for g, js in per_gpu.items():
        if len(js) > 1:
            used = sum(rates.memory_gb(j) for j in js)
            if used > mem + 1e-9:
                raise AllocationError(f"GPU {g}: jobs {js} need {used:g} GB of {mem:g} GB")


def simulate(
    trace: Trace,
    cluster: ClusterSpec,
    policy: SchedulingPolicy,
    rates: RateModel,
    options: SimOptions | None = None,
    *,
    on_progress: Callable[[int, int], None] | None = None,
) -> SimResult:
    """Run ``trace`` on ``cluster`` under ``policy``.

    Jobs asking for more GPUs than the cluster has are refused and counted (``refused``).

    Raises
    ------
    AllocationError
        When the policy's answer breaks capacity, memory or job sizes.
    """
    opt = options or SimOptions()
    jobs = trace.jobs
    n = len(jobs)
    refused = {}
    too_big = [i for i, j in enumerate(jobs) if j.num_gpus > cluster.num_gpus]
    if too_big:
        refused["more GPUs than the cluster"] = len(too_big)
    skip = set(too_big)
    arrival = np.array([j.arrival_s for j in jobs], dtype=float)
    work = np.array([j.work for j in jobs], dtype=float)
    done = np.zeros(n)
    start = np.full(n, np.nan)
    finish = np.full(n, np.nan)
    gpu_s = np.zeros(n)
    useful = np.zeros(n)
    samples = np.zeros(n)
    net = np.zeros(n)
    restarts = np.zeros(n, dtype=np.int64)
    spb_s = np.zeros(n)
    attained = np.zeros(n)
    resume_at = np.zeros(n)
    # rates of the running jobs, in the order of `running`
    running: list[int] = []
    r_work = np.zeros(0)
    r_useful = np.zeros(0)
    r_net = np.zeros(0)
    r_samples = np.zeros(0)
    r_ngpu = np.zeros(0)
    r_spb = np.zeros(0)
    alloc = Allocation({})
    active: dict[int, None] = {}  # arrival order
    timeline: list[tuple[float, int, int, int]] = []
    segments: list[Segment] = []
    seg_open: dict[int, float] = {}
    busy_gpu_s = 0.0
    busy_now = 0
    decisions = 0
    policy.reset()
    sharing = policy.sharing
    review = math.inf  # the policy's latest wake-up request (each answer replaces it)
    next_arrival = 0
    while next_arrival < n and next_arrival in skip:
        next_arrival += 1
    now = 0.0
    finished = len(skip)

    def close_segment(j: int, t: float) -> None:
        if opt.segments and j in seg_open:
            segments.append(
                Segment(j, seg_open.pop(j), t, alloc.gpus[j], frozenset(alloc.shallow.get(j, ())))
            )

    while finished < n:
        force = False
        # the next instant something happens
        t_event = math.inf
        if next_arrival < n:
            t_event = arrival[next_arrival]
        if running:
            idx = np.fromiter(running, dtype=np.int64, count=len(running))
            eff_start = np.maximum(now, resume_at[idx])
            with np.errstate(divide="ignore"):
                t_fin = eff_start + np.where(r_work > 0, (work[idx] - done[idx]) / r_work, np.inf)
            t_event = min(t_event, float(t_fin.min()))
        if review > now:
            t_event = min(t_event, review)
        if not math.isfinite(t_event) or t_event > opt.max_time_s:
            break
        t_dec = t_event
        if opt.round_s > 0:
            t_dec = math.ceil(t_event / opt.round_s - 1e-9) * opt.round_s
            if t_dec < t_event:  # within rounding of a round boundary, but after it
                t_dec += opt.round_s
        t_dec = max(t_dec, now)
        if t_dec > opt.max_time_s:
            t_dec = opt.max_time_s
        # advance the running jobs to t_dec, retiring those that finish on the way
        if running:
            idx = np.fromiter(running, dtype=np.int64, count=len(running))
            end = np.minimum(t_fin, t_dec)
            prog = np.maximum(0.0, end - np.maximum(now, resume_at[idx]))
            held = end - now
            done[idx] += r_work * prog
            useful[idx] += r_useful * prog
            net[idx] += r_net * prog
            samples[idx] += r_samples * prog
            gpu_s[idx] += r_ngpu * held
            attained[idx] += held
            spb_s[idx] += r_spb * held
            gone = t_fin <= t_dec
            if gone.any():
                free_now = 0
                for k in np.flatnonzero(gone):
                    j = int(idx[k])
                    finish[j] = float(t_fin[k])
                    done[j] = work[j]
                    close_segment(j, finish[j])
                    free_now += len(alloc.gpus[j])
                    active.pop(j, None)
                    finished += 1
                busy_gpu_s += busy_now * (t_dec - now)  # shared GPUs counted once below
                keep = ~gone
                running = [j for j, k in zip(running, keep, strict=True) if k]
                r_work, r_useful, r_net = r_work[keep], r_useful[keep], r_net[keep]
                r_samples, r_ngpu, r_spb = r_samples[keep], r_ngpu[keep], r_spb[keep]
                # GPUs of finished jobs were busy only until their finish
                for k in np.flatnonzero(gone):
                    j = int(idx[k])
                    mine = len(alloc.gpus[j]) if sharing is Sharing.NONE else _exclusive(alloc, j)
                    busy_gpu_s -= mine * (t_dec - finish[j])
                gpus = {j: g for j, g in alloc.gpus.items() if j in active}
                alloc = Allocation(gpus, {j: s for j, s in alloc.shallow.items() if j in gpus},
                                   alloc.review_at_s)  # fmt: skip
                busy_now = len({g for gs in alloc.gpus.values() for g in gs})
                force = True
            else:
                busy_gpu_s += busy_now * (t_dec - now)
        now = t_dec
        while next_arrival < n and arrival[next_arrival] <= now:
            if next_arrival not in skip:
                active[next_arrival] = None
            next_arrival += 1
            while next_arrival < n and next_arrival in skip:
                next_arrival += 1
        if finished >= n and not active:
            break
        # ask the policy
        statuses = [
            JobStatus(j, jobs[j], float(attained[j]), float(gpu_s[j]), alloc.gpus.get(j, ()))
            for j in active
        ]
        state = ClusterState(now, cluster, statuses, rates)
        new = policy.allocate(state)
        decisions += 1
        _check(new, alloc, active, cluster, rates, sharing)
        review = float(new.review_at_s) if new.review_at_s is not None else math.inf
        changed = False
        for j in list(alloc.gpus):
            if alloc.gpus[j] != new.gpus.get(j) or alloc.shallow.get(j) != new.shallow.get(j):
                close_segment(j, now)
                changed = True
        for j, g in new.gpus.items():
            old = alloc.gpus.get(j)
            if old != g or alloc.shallow.get(j) != new.shallow.get(j):
                changed = True
                if opt.segments:
                    seg_open[j] = now
                if old != g:
                    resume_at[j] = now + opt.restart_s
                    if math.isnan(start[j]):
                        start[j] = now
                    else:
                        restarts[j] += 1
        if changed or force or len(new.gpus) != len(running):
            alloc = Allocation(dict(new.gpus), dict(new.shallow), new.review_at_s)
            jr = rates.rates(alloc.gpus, alloc.shallow, sharing)
            running = list(jr)
            r_work = np.array([jr[j].work for j in running])
            r_useful = np.array([jr[j].useful_gpu for j in running])
            r_net = np.array([jr[j].network_bytes for j in running])
            r_samples = np.array([jr[j].samples for j in running])
            r_ngpu = np.array([len(alloc.gpus[j]) for j in running], dtype=float)
            r_spb = np.array([1.0 if alloc.shallow.get(j) else 0.0 for j in running])
            busy_now = len({g for gs in alloc.gpus.values() for g in gs})
        else:
            alloc = Allocation(alloc.gpus, alloc.shallow, new.review_at_s)
        timeline.append((now, busy_now, len(running), len(active) - len(running)))
        if on_progress is not None:
            on_progress(finished, n)
        if not running and next_arrival >= n and not review > now:
            break  # nothing runs, nothing will arrive, nobody asked to be woken: stalled
    for j in list(seg_open):
        if j in alloc.gpus:
            close_segment(j, now)
    return SimResult(
        trace, cluster, getattr(policy, "inner", policy).name, start, finish, gpu_s, useful,
        samples, net, restarts,
        spb_s, timeline, busy_gpu_s, decisions, now, segments, refused, done,
    )  # fmt: skip


def _exclusive(alloc: Allocation, j: int) -> int:
    """GPUs of job ``j`` that no other job in ``alloc`` holds."""
    others = {g for k, gs in alloc.gpus.items() if k != j for g in gs}
    return sum(1 for g in alloc.gpus[j] if g not in others)
