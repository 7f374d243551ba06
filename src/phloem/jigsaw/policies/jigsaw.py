"""Jigsaw: a base policy, plus other jobs' iterations packed into the slack that structured
partial backpropagation leaves on shallow workers (Kumar, Subramanian, Venkataraman, Akella,
"Doing More by Doing Less: How Structured Partial Backpropagation Improves Deep Learning
Clusters", DistributedML 2021).

The base policy (``base``, any registered policy that does not share GPUs; Tiresias by default)
decides which jobs run where. Then, for each job it left waiting (in least-attained-service
order), Jigsaw looks for ``num_gpus`` GPUs among the running SPB jobs' would-be shallow GPUs
(the last ``shallow_count`` of each host's GPUs) where the guest, interleaved into the shallow
worker's idle time with the host's phases first, runs at least ``min_guest_speed`` of its speed
alone, at most one guest per GPU, memory permitting, and (``require_gain``) only when the
guest's progress outweighs what the hosts lose to SPB's penalty. The guest runs there, and only
then do those hosts switch those workers to partial backprop (and pay SPB's
statistical-efficiency penalty). Placements are re-planned at every decision point: guests
follow the base policy's moves, and a host that a base decision removes takes its guests'
places with it.

With no job accepting SPB there are no shallow GPUs, and Jigsaw's allocation is the base's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from phloem.core import checks
from phloem.core.errors import ConfigError
from phloem.jigsaw.policies.base import (
    Allocation,
    ClusterState,
    JobStatus,
    SchedulingPolicy,
    Sharing,
)
from phloem.jigsaw.policies.packing import without_guests
from phloem.jigsaw.registries import POLICIES

__all__ = ["Jigsaw"]


@dataclass(frozen=True)
class JigsawParams:
    """``base``: the policy that places hosts (one that does not share GPUs);
    ``min_guest_speed``: lend slack only to a guest that runs at least this share of its speed
    alone there (a slower one waits for GPUs of its own); ``require_gain``: lend only when the
    guest's progress outweighs what its hosts lose to SPB's statistical-efficiency penalty
    (both in single-GPU-seconds of work per second)."""

    base: str = "tiresias"
    min_guest_speed: float = 0.25
    require_gain: bool = True

    def __post_init__(self) -> None:
        cls = POLICIES.get(self.base, field="base")
        if cls.sharing is not Sharing.NONE or cls.name == "jigsaw":
            raise ConfigError(
                "base", f"{self.base!r} shares GPUs itself",
                [n for n in POLICIES.names() if POLICIES.get(n).sharing is Sharing.NONE],
            )  # fmt: skip
        checks.real("min_guest_speed", self.min_guest_speed, low=0.0, high=1.0, low_open=True)
        checks.boolean("require_gain", self.require_gain)


@POLICIES.register
class Jigsaw(SchedulingPolicy):
    """A base policy plus guests in SPB hosts' shallow-worker slack."""

    name: ClassVar[str] = "jigsaw"
    description: ClassVar[str] = "Jigsaw: a base policy + guests packed into SPB slack"
    Params: ClassVar[type[JigsawParams]] = JigsawParams
    params: JigsawParams
    sharing: ClassVar[Sharing] = Sharing.INTERLEAVE

    def __init__(self, params: JigsawParams | None = None) -> None:
        super().__init__(params)
        self._base = POLICIES.get(self.params.base)()

    def reset(self) -> None:
        self._base.reset()

    def allocate(self, state: ClusterState) -> Allocation:
        base = self._base.allocate(without_guests(state))
        gpus = dict(base.gpus)
        slots: list[tuple[int, int]] = []  # (gpu, host) that may run shallow
        for j, gs in gpus.items():
            k = state.oracle.shallow_count(j)
            if k > 0:
                slots += [(g, j) for g in gs[-k:]]
        if not slots:
            return base
        waiting = sorted(
            (s for s in state.jobs if s.index not in gpus),
            key=lambda s: (s.attained_gpu_s, s.job.arrival_s, s.index),
        )
        shallow: dict[int, set[int]] = {}
        host_of = dict(slots)
        free = dict(slots)  # gpu -> host, not yet lent
        for guest in waiting:
            got = self._place(state, guest, gpus, free, host_of, shallow)
            if got is None:
                continue
            gpus[guest.index] = got
            for g in got:
                shallow.setdefault(free.pop(g), set()).add(g)
        # hosts run shallow only where they lend
        return Allocation(gpus, {j: frozenset(s) for j, s in shallow.items()}, base.review_at_s)

    def _place(
        self,
        state: ClusterState,
        guest: JobStatus,
        gpus: dict[int, tuple[int, ...]],
        free: dict[int, int],
        host_of: dict[int, int],
        shallow: dict[int, set[int]],
    ) -> tuple[int, ...] | None:
        n = guest.job.num_gpus
        if n > len(free):
            return None
        mem = state.cluster.gpu_memory_gb
        ok = []
        for g, h in free.items():
            if state.memory_gb(h) + state.memory_gb(guest.index) > mem + 1e-9:
                continue
            ok.append((g, h))
        if len(ok) < n:
            return None
        # prefer GPUs the guest holds already, then few nodes
        held = set(guest.gpus)
        k = state.cluster.gpus_per_node
        by_node: dict[int, list[int]] = {}
        for g, _ in ok:
            by_node.setdefault(g // k, []).append(g)
        pick: list[int] = [g for g, _ in ok if g in held][:n]
        for node in sorted(by_node, key=lambda x: -len(by_node[x])):
            for g in by_node[node]:
                if len(pick) < n and g not in pick:
                    pick.append(g)
        chosen = tuple(sorted(pick))
        eg = state.estimate(guest.index, chosen)
        slowest = 1.0
        for g in chosen:
            h = host_of[g]
            eh = state.estimate(h, gpus[h], frozenset({g}))
            speeds = state.oracle.interleave_speeds([(eh, True), (eg, False)], host_first=True)
            slowest = min(slowest, speeds[1])
        if slowest < self.params.min_guest_speed:
            return None
        if self.params.require_gain:
            gain = slowest * eg.rate / state.oracle.unit_rate(guest.index)
            for h in {host_of[g] for g in chosen} - set(shallow):  # hosts not yet lending
                full = state.estimate(h, gpus[h]).rate
                spb = state.estimate(h, gpus[h], frozenset({host_of_gpu(host_of, h)})).rate
                gain -= (full - spb) / state.oracle.unit_rate(h)
            if gain <= 0:
                return None
        return chosen


def host_of_gpu(host_of: dict[int, int], host: int) -> int:
    """One GPU that ``host`` may lend."""
    return next(g for g, h in host_of.items() if h == host)
