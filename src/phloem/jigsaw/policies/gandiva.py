"""Gandiva-style packing (Xiao et al., "Gandiva: Introspective Cluster Scheduling for Deep
Learning", OSDI 2018).

Jobs are admitted in arrival order on free GPUs (running jobs are not preempted). A job that
does not fit is packed onto the GPUs of a running job of the same size, the two running
concurrently, when Gavel's measured pair factors say packing pays: the two jobs' normalised
throughputs together exceed ``1 + margin`` (each alone counts 1), and both fit the GPU's
memory. A packed job moves to free GPUs of its own as soon as they exist (unpacking).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from phloem.core import checks
from phloem.jigsaw.policies.base import (
    Allocation,
    ClusterState,
    JobStatus,
    SchedulingPolicy,
    Sharing,
    keep_or_place,
)
from phloem.jigsaw.policies.packing import memory_fits, pack_pairs, without_guests
from phloem.jigsaw.registries import POLICIES

__all__ = ["Gandiva"]


@dataclass(frozen=True)
class GandivaParams:
    """``margin``: pack only when the pair's summed normalised throughput exceeds
    ``1 + margin``."""

    margin: float = 0.1

    def __post_init__(self) -> None:
        checks.real("margin", self.margin, low=0.0, high=1.0)


@POLICIES.register
class Gandiva(SchedulingPolicy):
    """Arrival order, with packing of same-size jobs that gain from it."""

    name: ClassVar[str] = "gandiva"
    description: ClassVar[str] = "Gandiva packing: FIFO admission, concurrent pairs that pay"
    Params: ClassVar[type[GandivaParams]] = GandivaParams
    params: GandivaParams
    sharing: ClassVar[Sharing] = Sharing.CONCURRENT

    def allocate(self, state: ClusterState) -> Allocation:
        hosts = without_guests(state)
        order = [s for s in hosts.jobs if s.gpus] + [s for s in hosts.jobs if not s.gpus]
        gpus = keep_or_place(hosts, order, backfill=False)
        waiting = [s for s in state.jobs if s.index not in gpus]

        def gain(host: JobStatus, guest: JobStatus) -> float | None:
            pair = state.pair_factors(host.index, guest.index)
            if pair is None or not memory_fits(state, host.index, guest.index, state.memory_gb):
                return None
            total = pair[0] + pair[1]
            return total if total > 1.0 + self.params.margin else None

        gpus.update(pack_pairs(state, gpus, waiting, gain))
        return Allocation(gpus)
