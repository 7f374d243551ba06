"""Placing a second job on GPUs a first one holds: what Gandiva, Muri and Jigsaw share."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from phloem.jigsaw.policies.base import ClusterState, JobStatus

__all__ = ["memory_fits", "pack_pairs", "without_guests"]


def without_guests(state: ClusterState) -> ClusterState:
    """``state`` with every job that shares its GPUs with an earlier-arrived job shown as
    waiting, so that a base policy places hosts only."""
    owner: set[int] = set()
    jobs = []
    for s in state.jobs:
        if s.gpus and any(g in owner for g in s.gpus):
            s = JobStatus(s.index, s.job, s.attained_s, s.attained_gpu_s, ())
        else:
            owner.update(s.gpus)
        jobs.append(s)
    return ClusterState(state.now_s, state.cluster, jobs, state.oracle)


def memory_fits(state: ClusterState, a: int, b: int, memory_gb: Callable[[int], float]) -> bool:
    """Whether one worker of job ``a`` and one of job ``b`` fit one GPU's memory."""
    return memory_gb(a) + memory_gb(b) <= state.cluster.gpu_memory_gb + 1e-9


def pack_pairs(
    state: ClusterState,
    gpus: Mapping[int, tuple[int, ...]],
    waiting: Sequence[JobStatus],
    gain: Callable[[JobStatus, JobStatus], float | None],
) -> dict[int, tuple[int, ...]]:
    """Each job of ``waiting`` (in order) onto the GPUs of one running job of the same size
    that hosts nobody yet, the one of highest ``gain(host, guest)`` (``None``: not allowed);
    a guest that held GPUs keeps its host while the pairing stays allowed. Returns the guests'
    GPUs."""
    by_index = {s.index: s for s in state.jobs}
    hosts = [by_index[j] for j in gpus if j in by_index]
    taken: set[int] = set()
    out: dict[int, tuple[int, ...]] = {}
    owner = {g: j for j, gs in gpus.items() for g in gs}
    for guest in waiting:
        best: JobStatus | None = None
        best_gain = 0.0
        if guest.gpus and owner.get(guest.gpus[0]) is not None:
            mine = owner[guest.gpus[0]]
            if mine not in taken and gpus[mine] == guest.gpus:
                g = gain(by_index[mine], guest)
                if g is not None:
                    best, best_gain = by_index[mine], float("inf")
        if best is None:
            for h in hosts:
                if h.index in taken or h.job.num_gpus != guest.job.num_gpus:
                    continue
                g = gain(h, guest)
                if g is not None and g > best_gain:
                    best, best_gain = h, g
        if best is not None:
            taken.add(best.index)
            out[guest.index] = gpus[best.index]
    return out
