"""``static``: a fixed share of the workers runs a fixed fraction of the blocks.

With ``shallow_fraction = 0.5`` and ``depth_fraction = 0.5`` four workers get
``[L, L, L/2, L/2]``: the last ``round(shallow_fraction * W)`` ranks are the shallow ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from phloem.core import checks
from phloem.spb.plans.base import DepthPlan, fraction_depth
from phloem.spb.registries import DEPTH_PLANS

__all__ = ["Static", "StaticParams", "static_pattern"]


@dataclass(frozen=True)
class StaticParams:
    """``shallow_fraction`` of the ranks (rounded) backpropagate through ``depth_fraction`` of
    the blocks (rounded up, at least one); the others through all of them."""

    shallow_fraction: float = 0.5
    depth_fraction: float = 0.5

    def __post_init__(self) -> None:
        checks.real("shallow_fraction", self.shallow_fraction, low=0.0, high=1.0)
        checks.real("depth_fraction", self.depth_fraction, low=0.0, high=1.0, low_open=True)


def static_pattern(p: StaticParams, world_size: int, num_blocks: int) -> tuple[int, ...]:
    """The full ranks first, then the shallow ones."""
    shallow = round(p.shallow_fraction * world_size)
    low = fraction_depth(p.depth_fraction, num_blocks)
    return tuple(num_blocks if r < world_size - shallow else low for r in range(world_size))


@DEPTH_PLANS.register
class Static(DepthPlan):
    """Fixed depths: ``[L, ..., L, d, ..., d]``."""

    name: ClassVar[str] = "static"
    description: ClassVar[str] = "a fixed share of the workers backpropagates a fixed fraction"
    Params: ClassVar[type[StaticParams]] = StaticParams

    def plan(
        self, world_size: int, num_blocks: int, step: int, total_steps: int
    ) -> tuple[int, ...]:
        return static_pattern(self.params, world_size, num_blocks)
