"""``ir_dropout``: zero a random fraction of the IR's entries.

After the IR-dropout defence of He, Zhang & Lee ("Model inversion attacks against
collaborative inference", ACSAC 2019; its journal version, IEEE IoT-J 2020): each entry is
zeroed independently with probability ``rate``. Their defence zeroes a fraction of the IR's
entries and does not rescale them (the default here); with
``rescale`` the kept entries are multiplied by ``1 / (1 - rate)`` (inverted dropout, as
``torch.nn.Dropout`` in training), which keeps the IR's expectation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from phloem.attacks.defences.base import Defence
from phloem.attacks.registries import DEFENCES
from phloem.core import checks as _checks

__all__ = ["IRDropout", "IRDropoutParams"]


@dataclass(frozen=True)
class IRDropoutParams:
    """Parameters of :class:`IRDropout`.

    Attributes
    ----------
    rate
        Probability that an entry is zeroed, in ``[0, 1)``.
    rescale
        Whether kept entries are multiplied by ``1 / (1 - rate)`` (inverted dropout);
        ``False`` (He et al.): kept entries are sent unchanged.
    """

    rate: float = 0.5
    rescale: bool = False

    def __post_init__(self) -> None:
        rate = _checks.real("rate", self.rate, low=0.0, high=1.0, high_open=True)
        object.__setattr__(self, "rate", rate)
        _checks.boolean("rescale", self.rescale)


@DEFENCES.register
class IRDropout(Defence):
    """Zeroes each IR entry independently with probability ``rate``."""

    name: ClassVar[str] = "ir_dropout"
    description: ClassVar[str] = "zero each IR entry with probability rate (He et al. 2019)"
    Params: ClassVar[type[IRDropoutParams]] = IRDropoutParams
    params: IRDropoutParams

    def apply(self, ir: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """``ir`` with entries zeroed (and the rest rescaled, with ``rescale``)."""
        p = self.params.rate
        keep = torch.rand(ir.shape, generator=gen, device=ir.device) >= p
        out = torch.where(keep, ir, torch.zeros_like(ir))
        return out / (1.0 - p) if self.params.rescale else out
