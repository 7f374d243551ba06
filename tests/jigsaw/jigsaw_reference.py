"""A slow, obviously correct reference simulator for FIFO and Tiresias (test helper).

It steps round by round (every ``round_s``), re-deciding at every round from scratch with its
own copy of each policy and its own placement rule, and advances each job with plain Python
arithmetic. Only the throughput tables are shared with phloem's simulator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from phloem.jigsaw.apps import ThroughputModel
from phloem.jigsaw.jobs import Job


@dataclass
class RefJob:
    job: Job
    done: float = 0.0
    service: float = 0.0
    gpus: tuple[int, ...] = ()
    resume_at: float = 0.0
    start: float = math.nan
    finish: float = math.nan
    queue: int = 0
    entered: float = math.nan


def _placement(gpus: tuple[int, ...], per_node: int) -> tuple[int, ...]:
    counts: dict[int, int] = {}
    for g in gpus:
        counts[g // per_node] = counts.get(g // per_node, 0) + 1
    return tuple(sorted(counts.values()))


def _place(free: list[list[int]], n: int) -> tuple[int, ...]:
    out: list[int] = []
    while len(out) < n:
        best = 0
        for i in range(len(free)):
            if len(free[i]) > len(free[best]):
                best = i
        take = min(n - len(out), len(free[best]))
        out += free[best][:take]
        free[best] = free[best][take:]
    return tuple(sorted(out))


def reference(
    jobs: tuple[Job, ...],
    model: ThroughputModel,
    *,
    nodes: int,
    per_node: int,
    policy: str,
    round_s: float,
    restart_s: float,
    threshold_gpu_s: float = 57600.0,
) -> list[float]:
    """Finish times of ``jobs`` under ``policy``: ``fifo``, ``fifo-backfill`` or ``tiresias``."""
    js = [RefJob(j) for j in jobs]
    total = nodes * per_node
    t = 0.0
    while any(math.isnan(r.finish) for r in js):
        active = [i for i, r in enumerate(js) if r.job.arrival_s <= t and math.isnan(r.finish)]
        for i in active:
            if math.isnan(js[i].entered):
                js[i].entered = t
            if (
                policy == "tiresias"
                and js[i].queue == 0
                and js[i].service >= threshold_gpu_s - 1e-6
            ):
                js[i].queue, js[i].entered = 1, t
        if policy == "tiresias":
            order = sorted(active, key=lambda i: (js[i].queue, js[i].entered, i))
        else:
            order = [i for i in active if js[i].gpus] + [i for i in active if not js[i].gpus]
        chosen, left = [], total
        for i in order:
            n = js[i].job.num_gpus
            if n <= left:
                chosen.append(i)
                left -= n
            elif policy == "fifo":
                break
        used = {g for i in chosen for g in js[i].gpus}
        free = [
            [g for g in range(k * per_node, (k + 1) * per_node) if g not in used]
            for k in range(nodes)
        ]
        for i in active:
            if i not in chosen:
                js[i].gpus = ()
        for i in chosen:
            if not js[i].gpus:
                js[i].gpus = _place(free, js[i].job.num_gpus)
                js[i].resume_at = t + restart_s
                if math.isnan(js[i].start):
                    js[i].start = t
        # advance one round
        end = t + round_s
        for i in chosen:
            r = js[i]
            rate = model.solo_rate(r.job.app, _placement(r.gpus, per_node), r.job.batch_size)
            begin = max(t, r.resume_at)
            if begin < end and r.done + rate * (end - begin) >= r.job.work:
                r.finish = begin + (r.job.work - r.done) / rate
                r.service += (r.finish - t) * len(r.gpus)
                r.done = r.job.work
                r.gpus = ()
            else:
                r.done += rate * max(0.0, end - begin)
                r.service += round_s * len(r.gpus)
        t = end
    return [r.finish for r in js]
