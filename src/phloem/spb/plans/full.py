"""``full``: every worker backpropagates through every block: plain data-parallel training, the
baseline every other plan is measured against (with ``[spb] sync = "ddp"``, torch's own
``DistributedDataParallel`` runs it)."""

from __future__ import annotations

from typing import ClassVar

from phloem.spb.plans.base import DepthPlan
from phloem.spb.registries import DEPTH_PLANS

__all__ = ["Full"]


@DEPTH_PLANS.register
class Full(DepthPlan):
    """``[L, ..., L]``."""

    name: ClassVar[str] = "full"
    description: ClassVar[str] = "baseline: full backprop on every worker (plain data parallel)"

    def plan(
        self, world_size: int, num_blocks: int, step: int, total_steps: int
    ) -> tuple[int, ...]:
        return (num_blocks,) * world_size
