"""Muri-style interleaving (Zhao et al., "Multi-Resource Interleaving for Deep Learning
Training", SIGCOMM 2022).

Jobs are ranked by least attained service (Muri-L's order; here Tiresias's queues, so that the
two differ only by interleaving) and admitted on free GPUs. Each job left waiting is then
interleaved with a running job of the same size: their iterations take turns by phase (one
computes while the other synchronises), both at the speed the phases allow
(:meth:`~.base.Oracle.interleave_speed`). A pair is formed only when both run at least
``min_speed`` of their speed alone, with the best-matched host (highest speed) first.
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
)
from phloem.jigsaw.policies.packing import memory_fits, pack_pairs, without_guests
from phloem.jigsaw.policies.tiresias import Tiresias
from phloem.jigsaw.registries import POLICIES

__all__ = ["Muri"]


@dataclass(frozen=True)
class MuriParams:
    """``min_speed``: interleave two jobs only when each keeps at least this share of its
    speed alone."""

    min_speed: float = 0.75

    def __post_init__(self) -> None:
        checks.real("min_speed", self.min_speed, low=0.0, high=1.0, low_open=True)


@POLICIES.register
class Muri(SchedulingPolicy):
    """Least attained service, plus interleaving of complementary same-size jobs."""

    name: ClassVar[str] = "muri"
    description: ClassVar[str] = "Muri interleaving: 2D-LAS order, phase-interleaved pairs"
    Params: ClassVar[type[MuriParams]] = MuriParams
    params: MuriParams
    sharing: ClassVar[Sharing] = Sharing.INTERLEAVE

    def __init__(self, params: MuriParams | None = None) -> None:
        super().__init__(params)
        self._base = Tiresias()

    def reset(self) -> None:
        self._base.reset()

    def allocate(self, state: ClusterState) -> Allocation:
        # the base sees each job as exclusive: a guest is "waiting" for it
        exclusive = without_guests(state)
        base = self._base.allocate(exclusive)
        gpus = dict(base.gpus)
        waiting = [s for s in state.jobs if s.index not in gpus]

        def gain(host: JobStatus, guest: JobStatus) -> float | None:
            if not memory_fits(state, host.index, guest.index, state.memory_gb):
                return None
            eh = state.estimate(host.index, gpus[host.index])
            eg = state.estimate(guest.index, gpus[host.index])
            speed = state.oracle.interleave_speeds([(eh, False), (eg, False)])[0]
            return speed if speed >= self.params.min_speed else None

        gpus.update(pack_pairs(state, gpus, waiting, gain))
        return Allocation(gpus, review_at_s=base.review_at_s)
