"""``profile``: shallow workers' depth chosen from the model's measured per-depth costs.

Before the run the trainer measures one worker's step at every depth
(:func:`~phloem.spb.accounting.profile_model`: backward FLOPs and activation bytes saved) and
hands the table to :meth:`Profiled.fit`. The last ``round(shallow_fraction * W)`` ranks then
take the deepest depth whose backward FLOPs stay within ``backward_budget`` of a full worker's
and whose saved activation bytes stay within ``bytes_budget`` of a full worker's (at least one
block); the others run at full depth. So "half the backward work" means half the measured
work, not half the blocks: on a CNN whose early blocks are the expensive ones, that is most of
the blocks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from phloem.core import checks
from phloem.spb.plans.base import DepthPlan
from phloem.spb.registries import DEPTH_PLANS

if TYPE_CHECKING:
    from phloem.spb.accounting import Profile

__all__ = ["Profiled", "ProfiledParams", "depth_within"]


@dataclass(frozen=True)
class ProfiledParams:
    """The share of shallow ranks and their budgets, as fractions of a full worker's step."""

    shallow_fraction: float = 0.5
    backward_budget: float = 0.5
    bytes_budget: float = 1.0

    def __post_init__(self) -> None:
        checks.real("shallow_fraction", self.shallow_fraction, low=0.0, high=1.0)
        checks.real("backward_budget", self.backward_budget, low=0.0, high=1.0, low_open=True)
        checks.real("bytes_budget", self.bytes_budget, low=0.0, high=1.0, low_open=True)


def depth_within(profile: Profile, backward_budget: float, bytes_budget: float) -> int:
    """The deepest depth whose measured backward FLOPs and saved bytes fit the budgets (as
    fractions of full depth's), at least 1."""
    by_depth = {c.depth: c for c in profile.depths}
    full = by_depth[max(by_depth)]
    best = 1
    for d, c in sorted(by_depth.items()):
        if (
            c.backward_flops <= backward_budget * full.backward_flops
            and c.saved_bytes <= bytes_budget * full.saved_bytes
        ):
            best = d
    return best


@DEPTH_PLANS.register
class Profiled(DepthPlan):
    """``[L, ..., L, d, ..., d]`` with ``d`` from the measured costs (:func:`depth_within`)."""

    name: ClassVar[str] = "profile"
    description: ClassVar[str] = "shallow ranks' depth from measured backward FLOPs and bytes"
    Params: ClassVar[type[ProfiledParams]] = ProfiledParams

    def __init__(self, params: ProfiledParams | None = None) -> None:
        super().__init__(params)
        self._depth: int | None = None
        self._blocks: int | None = None

    def fit(self, profile: Profile) -> None:
        p = self.params
        self._depth = depth_within(profile, p.backward_budget, p.bytes_budget)
        self._blocks = len(profile.blocks)

    def plan(
        self, world_size: int, num_blocks: int, step: int, total_steps: int
    ) -> tuple[int, ...]:
        if self._depth is None or self._blocks != num_blocks:
            raise RuntimeError(
                "the profile plan needs the model's measured costs: call fit(profile) with a "
                f"profile of this {num_blocks}-block model first (the trainer does)"
            )
        shallow = round(self.params.shallow_fraction * world_size)
        return tuple(
            num_blocks if r < world_size - shallow else self._depth for r in range(world_size)
        )
