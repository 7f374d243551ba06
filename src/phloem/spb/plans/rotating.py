"""``rotating``: the static pattern shifted by one rank every ``period`` steps.

A static plan leaves the shallow ranks' shards out of the early blocks' gradients for good;
rotating the pattern lets every shard reach every block, one ``period`` in ``W`` at full depth.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from phloem.core import checks
from phloem.spb.plans.base import DepthPlan
from phloem.spb.plans.static import StaticParams, static_pattern
from phloem.spb.registries import DEPTH_PLANS

__all__ = ["Rotating", "RotatingParams"]


@dataclass(frozen=True)
class RotatingParams(StaticParams):
    """The static pattern's fractions, and the ``period`` in steps between shifts."""

    period: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        checks.integer("period", self.period, low=1)


@DEPTH_PLANS.register
class Rotating(DepthPlan):
    """Rank ``r`` at step ``t`` takes the static pattern's entry ``(r + t // period) mod W``."""

    name: ClassVar[str] = "rotating"
    description: ClassVar[str] = "the static pattern shifted one rank every period steps"
    Params: ClassVar[type[RotatingParams]] = RotatingParams

    def plan(
        self, world_size: int, num_blocks: int, step: int, total_steps: int
    ) -> tuple[int, ...]:
        pattern = static_pattern(self.params, world_size, num_blocks)
        shift = step // self.params.period
        return tuple(pattern[(r + shift) % world_size] for r in range(world_size))
