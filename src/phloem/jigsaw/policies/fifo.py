"""First-in, first-out: jobs run in arrival order, each to completion, never preempted.

``backfill = false`` is strict FIFO (the head of the queue blocks everyone behind it);
``backfill = true`` lets a later job that fits start while the head waits (still no
preemption).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from phloem.core import checks
from phloem.jigsaw.policies.base import Allocation, ClusterState, SchedulingPolicy, keep_or_place
from phloem.jigsaw.registries import POLICIES

__all__ = ["Fifo"]


@dataclass(frozen=True)
class FifoParams:
    """``backfill``: let later jobs that fit start while the head of the queue waits."""

    backfill: bool = False

    def __post_init__(self) -> None:
        checks.boolean("backfill", self.backfill)


@POLICIES.register
class Fifo(SchedulingPolicy):
    """Arrival order, non-preemptive."""

    name: ClassVar[str] = "fifo"
    description: ClassVar[str] = "first in, first out; non-preemptive (optional backfill)"
    Params: ClassVar[type[FifoParams]] = FifoParams
    params: FifoParams

    def allocate(self, state: ClusterState) -> Allocation:
        # running jobs first (never preempted), then the queue in arrival order
        order = [s for s in state.jobs if s.gpus] + [s for s in state.jobs if not s.gpus]
        return Allocation(keep_or_place(state, order, backfill=self.params.backfill))
