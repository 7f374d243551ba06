"""White-box regularised maximum-likelihood inversion (He, Zhang & Lee, ACSAC 2019, "rMLE").

He et al., *Model inversion attacks against collaborative inference*, section 4: with the edge
part's weights, find the input that reproduces the observed IR,

    x* = argmin_x  mean((f_edge(x) - ir)^2) + tv_weight * TV(x),   x in [0, 1],

by gradient descent from a neutral start (:func:`~phloem.attacks.methods.optimise.invert`);
TV (total variation, mean absolute difference of neighbouring pixels) is the natural-image
prior. ``x`` is parameterised as ``sigmoid(z)`` so it stays in ``[0, 1]`` without clipping.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from phloem.attacks.methods.base import Attack
from phloem.attacks.methods.optimise import invert
from phloem.attacks.registries import ATTACKS
from phloem.attacks.threat import Access, EdgeOracle
from phloem.core import checks as _checks

__all__ = ["RMLE", "RMLEParams"]


@dataclass(frozen=True)
class RMLEParams:
    """``steps`` of Adam at learning rate ``lr`` on ``batch`` IRs at a time; ``tv_weight`` the
    prior's weight (0: plain MLE)."""

    steps: int = 400
    lr: float = 0.05
    tv_weight: float = 0.01
    batch: int = 128

    def __post_init__(self) -> None:
        _checks.integer("steps", self.steps, low=1)
        _checks.integer("batch", self.batch, low=1)
        _checks.real("lr", self.lr, low=0.0, low_open=True)
        _checks.real("tv_weight", self.tv_weight, low=0.0)


@ATTACKS.register
class RMLE(Attack):
    """He et al.'s white-box rMLE: optimise the input to match the IR, with a TV prior."""

    name: ClassVar[str] = "rmle"
    description: ClassVar[str] = "white-box: optimise x to match the IR, TV prior (He et al.)"
    Params: ClassVar[type[RMLEParams]] = RMLEParams
    access: ClassVar[frozenset[Access]] = frozenset({Access.WHITE_BOX})

    def fit(
        self,
        oracle: EdgeOracle,
        aux: torch.Tensor,
        gen: torch.Generator,
        *,
        labels: torch.Tensor | None = None,
    ) -> None:
        self._edge = oracle.white_box()
        self._shape = oracle.input_shape
        self._gen = gen

    def reconstruct(self, irs: torch.Tensor) -> torch.Tensor:
        step = self.params.batch
        return torch.cat([self._invert(irs[i : i + step]) for i in range(0, irs.shape[0], step)])

    def _invert(self, target: torch.Tensor) -> torch.Tensor:
        p: RMLEParams = self.params
        return invert(
            self._edge,
            target,
            self._shape,
            self._gen,
            steps=p.steps,
            lr=p.lr,
            tv_weight=p.tv_weight,
        )
