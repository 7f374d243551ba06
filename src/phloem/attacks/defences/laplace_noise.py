"""``laplace_noise``: additive Laplace noise on the IR.

The Laplace mechanism's noise (Dwork, McSherry, Nissim & Smith, TCC 2006) on every IR entry:
the edge device sends ``ir + e``, ``e_i ~ Laplace(0, scale)`` independently (density
``exp(-|e| / scale) / (2 scale)``, standard deviation ``sqrt(2) scale``), as in the noise
defences of Titcombe et al. ("Practical defences against model inversion attacks for split
neural networks", 2021). No privacy budget is claimed: the IR's sensitivity is not bounded
here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from phloem.attacks.defences.base import Defence
from phloem.attacks.defences.gaussian_noise import sample_scale
from phloem.attacks.registries import DEFENCES
from phloem.core import checks as _checks

__all__ = ["LaplaceNoise", "LaplaceNoiseParams"]


@dataclass(frozen=True)
class LaplaceNoiseParams:
    """Parameters of :class:`LaplaceNoise`.

    Attributes
    ----------
    scale
        The Laplace scale ``b >= 0`` (std ``sqrt(2) b``), in IR units or relative.
    relative
        Whether ``scale`` multiplies each sample's IR standard deviation (population std over
        the sample's entries); ``False``: absolute.
    """

    scale: float = 0.1
    relative: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "scale", _checks.real("scale", self.scale, low=0.0))
        _checks.boolean("relative", self.relative)


@DEFENCES.register
class LaplaceNoise(Defence):
    """Sends ``ir + e``, ``e_i ~ Laplace(0, b)`` i.i.d."""

    name: ClassVar[str] = "laplace_noise"
    description: ClassVar[str] = "additive Laplace noise on the IR (scale b, std sqrt(2) b)"
    Params: ClassVar[type[LaplaceNoiseParams]] = LaplaceNoiseParams
    params: LaplaceNoiseParams

    def apply(self, ir: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """``ir`` plus Laplace noise: the difference of two Exp(1) draws, times ``b``."""
        u = torch.rand((2, *ir.shape), generator=gen, dtype=ir.dtype, device=ir.device)
        e = -torch.log1p(-u)  # Exp(1), finite: u < 1
        scale = sample_scale(ir, self.params.scale, relative=self.params.relative)
        return ir + scale * (e[0] - e[1])
