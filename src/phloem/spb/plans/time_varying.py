"""``time-varying``: deep early, shallow late.

The first ``full_ranks`` ranks always backpropagate through every block (so that every block
keeps receiving an update); the others start at ``start_fraction`` of the blocks and shrink
linearly to ``end_fraction`` over the run, where the early blocks have mostly converged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from phloem.core import checks
from phloem.core.errors import ConfigError
from phloem.spb.plans.base import DepthPlan, fraction_depth
from phloem.spb.registries import DEPTH_PLANS

__all__ = ["TimeVarying", "TimeVaryingParams"]


@dataclass(frozen=True)
class TimeVaryingParams:
    """The shallow ranks' share of the blocks at the first and last step, and how many ranks
    stay at full depth."""

    start_fraction: float = 1.0
    end_fraction: float = 0.25
    full_ranks: int = 1

    def __post_init__(self) -> None:
        checks.real("start_fraction", self.start_fraction, low=0.0, high=1.0, low_open=True)
        checks.real("end_fraction", self.end_fraction, low=0.0, high=1.0, low_open=True)
        checks.integer("full_ranks", self.full_ranks, low=0)
        if self.end_fraction > self.start_fraction:
            raise ConfigError(
                "end_fraction",
                f"{self.end_fraction} is deeper than start_fraction {self.start_fraction}",
                [f"<= {self.start_fraction}"],
            )


@DEPTH_PLANS.register
class TimeVarying(DepthPlan):
    """Shallow ranks' depth interpolates from ``start_fraction`` to ``end_fraction``."""

    name: ClassVar[str] = "time-varying"
    description: ClassVar[str] = "deep early, shallow late (full ranks stay at full depth)"
    Params: ClassVar[type[TimeVaryingParams]] = TimeVaryingParams

    def plan(
        self, world_size: int, num_blocks: int, step: int, total_steps: int
    ) -> tuple[int, ...]:
        p = self.params
        t = step / (total_steps - 1) if total_steps > 1 else 1.0
        low = fraction_depth(p.start_fraction + (p.end_fraction - p.start_fraction) * t, num_blocks)
        return tuple(num_blocks if r < p.full_ranks else low for r in range(world_size))
