"""UnSplit: data-oblivious inversion by optimising the input and a shadow edge part together.

Erdogan, Küpçü & Çiçek, *UnSplit: Data-Oblivious Model Inversion, Model Stealing, and Label
Inference Attacks against Split Learning*, WPES 2022. The attacker knows only the edge part's
architecture and sees the IRs: it starts from a randomly initialised copy of the edge part and
a neutral input, and alternates gradient steps on the input and on the copy's weights to
minimise ``mean((f'(x) - ir)^2) + tv_weight * TV(x)``. No query, no data: it works query-free.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from phloem.attacks.methods.base import Attack
from phloem.attacks.methods.optimise import invert
from phloem.attacks.registries import ATTACKS
from phloem.attacks.threat import EdgeOracle
from phloem.core import checks as _checks

__all__ = ["UnSplit", "UnSplitParams"]


@dataclass(frozen=True)
class UnSplitParams:
    """``steps`` alternations (one Adam step on the input at ``lr``, then one on the shadow's
    weights at ``model_lr``), ``tv_weight`` the prior, ``batch`` IRs inverted together."""

    steps: int = 500
    lr: float = 0.05
    model_lr: float = 1e-3
    tv_weight: float = 0.05
    batch: int = 64

    def __post_init__(self) -> None:
        _checks.integer("steps", self.steps, low=1)
        _checks.integer("batch", self.batch, low=1)
        _checks.real("lr", self.lr, low=0.0, low_open=True)
        _checks.real("model_lr", self.model_lr, low=0.0, low_open=True)
        _checks.real("tv_weight", self.tv_weight, low=0.0)


@ATTACKS.register
class UnSplit(Attack):
    """Joint optimisation of the input and a shadow edge part (Erdogan et al. 2022)."""

    name: ClassVar[str] = "unsplit"
    description: ClassVar[str] = "query-free: optimise x and a shadow edge together (UnSplit)"
    Params: ClassVar[type[UnSplitParams]] = UnSplitParams

    def fit(
        self,
        oracle: EdgeOracle,
        aux: torch.Tensor,
        gen: torch.Generator,
        *,
        labels: torch.Tensor | None = None,
    ) -> None:
        self._oracle = oracle
        self._gen = gen
        oracle.shadow(gen)  # fails now, not at reconstruction, if the architecture is unknown

    def reconstruct(self, irs: torch.Tensor) -> torch.Tensor:
        step = self.params.batch
        return torch.cat([self._invert(irs[i : i + step]) for i in range(0, irs.shape[0], step)])

    def _invert(self, target: torch.Tensor) -> torch.Tensor:
        p: UnSplitParams = self.params
        shadow = self._oracle.shadow(self._gen)
        return invert(
            shadow,
            target,
            self._oracle.input_shape,
            self._gen,
            steps=p.steps,
            lr=p.lr,
            tv_weight=p.tv_weight,
            model_lr=p.model_lr,
        )
