"""``staircase``: depths fall evenly from the whole model on rank 0 to ``min_fraction`` of it
on the last rank."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from phloem.core import checks
from phloem.spb.plans.base import DepthPlan, fraction_depth
from phloem.spb.registries import DEPTH_PLANS

__all__ = ["Staircase", "StaircaseParams"]


@dataclass(frozen=True)
class StaircaseParams:
    """The last rank's share of the blocks (rounded up, at least one)."""

    min_fraction: float = 0.25

    def __post_init__(self) -> None:
        checks.real("min_fraction", self.min_fraction, low=0.0, high=1.0, low_open=True)


@DEPTH_PLANS.register
class Staircase(DepthPlan):
    """``d_r = ceil(L (1 - (1 - min_fraction) r / (W - 1)))``."""

    name: ClassVar[str] = "staircase"
    description: ClassVar[str] = "depths fall evenly from the full model on rank 0"
    Params: ClassVar[type[StaircaseParams]] = StaircaseParams

    def plan(
        self, world_size: int, num_blocks: int, step: int, total_steps: int
    ) -> tuple[int, ...]:
        if world_size == 1:
            return (num_blocks,)
        drop = 1.0 - self.params.min_fraction
        return tuple(
            fraction_depth(1.0 - drop * r / (world_size - 1), num_blocks) for r in range(world_size)
        )
