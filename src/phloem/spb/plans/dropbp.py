"""``dropbp``: the DropBP baseline (Woo, Park, Lee & Shin, *DropBP: accelerating fine-tuning of
large language models by dropping backward propagation*, NeurIPS 2024) as a plan.

Every worker runs the full forward pass; at each step every residual block is dropped from the
backward pass with probability ``rate`` (the same draw on every rank, from ``(seed, step)``):
its branch runs without autograd, so it saves no activations and gets no gradient, while the
gradient reaches the blocks below through its identity path. Non-residual blocks (a stem, a
classifier) always train. DropBP sets per-layer rates from a sensitivity analysis; this is its
uniform-rate form. A model without residual blocks cannot use it (a clear error says so).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from phloem.core import checks
from phloem.spb.plans.base import DepthPlan
from phloem.spb.registries import DEPTH_PLANS

__all__ = ["DropBP", "DropBPParams"]


@dataclass(frozen=True)
class DropBPParams:
    """``rate``: the probability that a residual block skips its backward pass at a step."""

    rate: float = 0.5

    def __post_init__(self) -> None:
        checks.real("rate", self.rate, low=0.0, high=1.0)


@DEPTH_PLANS.register
class DropBP(DepthPlan):
    """Full depth on every rank; residual blocks dropped at random from the backward pass."""

    name: ClassVar[str] = "dropbp"
    description: ClassVar[str] = (
        "baseline: random residual blocks skip the backward pass (Woo et al.)"
    )
    Params: ClassVar[type[DropBPParams]] = DropBPParams
    needs_residual: ClassVar[bool] = True

    def plan(
        self, world_size: int, num_blocks: int, step: int, total_steps: int
    ) -> tuple[int, ...]:
        return (num_blocks,) * world_size

    def dropped(
        self, num_blocks: int, residual: frozenset[int], step: int, seed: int
    ) -> frozenset[int]:
        rng = np.random.default_rng([seed, step, 0xD20B])
        draws = rng.random(num_blocks)
        return frozenset(b for b in sorted(residual) if draws[b] < self.params.rate)
