"""``freezeout``: the FreezeOut baseline (Brock, Lim, Ritchie & Weston, *FreezeOut: accelerate
training by progressively freezing layers*, 2017) as a depth plan.

Every worker runs the same depth; block ``l`` (0 = input side) stops training at the fraction
``t_l = t0 + (1 - t0) l / L`` of the run (FreezeOut's linear schedule, without its
per-layer learning-rate annealing), so the backward pass shortens from the input side as
training goes on. The last block always trains. It is the baseline SPB is measured against:
the same saving in backward work, spent on every worker alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from phloem.core import checks
from phloem.spb.plans.base import DepthPlan
from phloem.spb.registries import DEPTH_PLANS

__all__ = ["FreezeOut", "FreezeOutParams"]


@dataclass(frozen=True)
class FreezeOutParams:
    """``t0``: the fraction of the run after which the first block freezes."""

    t0: float = 0.5

    def __post_init__(self) -> None:
        checks.real("t0", self.t0, low=0.0, high=1.0, high_open=True)


@DEPTH_PLANS.register
class FreezeOut(DepthPlan):
    """Every rank: ``L`` minus the blocks whose freezing time has passed."""

    name: ClassVar[str] = "freezeout"
    description: ClassVar[str] = (
        "baseline: every worker freezes blocks from the input side (Brock et al.)"
    )
    Params: ClassVar[type[FreezeOutParams]] = FreezeOutParams

    def plan(
        self, world_size: int, num_blocks: int, step: int, total_steps: int
    ) -> tuple[int, ...]:
        t = step / total_steps
        t0 = self.params.t0
        frozen = sum(1 for b in range(num_blocks - 1) if t >= t0 + (1 - t0) * b / num_blocks)
        return (num_blocks - frozen,) * world_size
