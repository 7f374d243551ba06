"""The depth-plan contract, and which workers compute each block.

A plan maps ``(world_size, num_blocks, step, total_steps)`` to one depth per rank,
``1 <= d_r <= num_blocks``: rank ``r`` backpropagates through the last ``d_r`` blocks. Two
optional hooks: :meth:`DepthPlan.fit` sees the model's measured per-block costs before the
run (the ``profile`` plan chooses its depths from them), :meth:`DepthPlan.dropped` names
residual blocks whose backward pass every rank skips at a step (the DropBP baseline).
Block ``l`` (0 is the input side) is computed by the ranks with ``d_r >= num_blocks - l``
(:func:`members`): the sets are nested and grow toward the output.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar

from phloem.core import checks
from phloem.core.registry import Configured

if TYPE_CHECKING:
    from phloem.spb.accounting import Profile

__all__ = ["DepthPlan", "fraction_depth", "members"]


def fraction_depth(fraction: float, num_blocks: int) -> int:
    """``ceil(fraction * num_blocks)``, clipped to ``[1, num_blocks]``."""
    return max(1, min(num_blocks, math.ceil(fraction * num_blocks - 1e-9)))


def members(
    depths: tuple[int, ...], num_blocks: int, dropped: frozenset[int] = frozenset()
) -> list[tuple[int, ...]]:
    """For each block ``l`` (0 = input side), the ranks that backpropagate through it (none
    for a block in ``dropped``, whose backward pass every rank skips this step)."""
    return [
        ()
        if block in dropped
        else tuple(r for r, d in enumerate(depths) if d >= num_blocks - block)
        for block in range(num_blocks)
    ]


class DepthPlan(Configured, ABC):
    """How deep each worker backpropagates at each step (built from its own ``Params``)."""

    kind: ClassVar[str] = "depth plan"
    #: whether the plan needs residual blocks (:meth:`dropped` picks among them)
    needs_residual: ClassVar[bool] = False

    @abstractmethod
    def plan(
        self, world_size: int, num_blocks: int, step: int, total_steps: int
    ) -> tuple[int, ...]:
        """The plan's depths (see :meth:`depths`, which checks the arguments and the result)."""

    def fit(self, profile: Profile) -> None:
        """See the model's per-block costs before the run (no-op by default)."""

    def dropped(
        self, num_blocks: int, residual: frozenset[int], step: int, seed: int
    ) -> frozenset[int]:
        """Blocks among ``residual`` whose backward pass every rank skips at ``step`` (the
        gradient flows through their identity path only); a function of ``(seed, step)``, so
        every rank agrees without talking. None by default."""
        return frozenset()

    def depths(
        self, world_size: int, num_blocks: int, step: int = 0, total_steps: int = 1
    ) -> tuple[int, ...]:
        """One depth per rank for ``step`` of ``total_steps``, each in ``[1, num_blocks]``.

        Raises
        ------
        ConfigError
            Naming the argument, for a world size or block count below 1 or a step outside
            ``[0, total_steps)``.
        """
        checks.integer("world_size", world_size, low=1)
        checks.integer("num_blocks", num_blocks, low=1)
        checks.integer("total_steps", total_steps, low=1)
        checks.integer("step", step, low=0, high=total_steps - 1)
        out = tuple(int(d) for d in self.plan(world_size, num_blocks, step, total_steps))
        if len(out) != world_size or not all(1 <= d <= num_blocks for d in out):
            raise AssertionError(f"plan {self.name!r} gave depths {out} for {world_size} ranks")
        return out
