"""``gaussian_noise``: additive Gaussian noise on the IR.

The simplest noise defence, as evaluated by He, Zhang & Lee ("Model inversion attacks against
collaborative inference", ACSAC 2019) and Benkraouda & Nahrstedt (DistributedML '21): the edge
device sends ``ir + sigma * e``, ``e ~ N(0, I)``. With ``relative`` the standard deviation is
``sigma`` times the sample's own IR standard deviation (population std over all its entries),
so one ``sigma`` means the same signal-to-noise ratio at every split point.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from phloem.attacks.defences.base import Defence
from phloem.attacks.registries import DEFENCES
from phloem.core import checks as _checks

__all__ = ["GaussianNoise", "GaussianNoiseParams"]


@dataclass(frozen=True)
class GaussianNoiseParams:
    """Parameters of :class:`GaussianNoise`.

    Attributes
    ----------
    sigma
        Noise standard deviation, ``>= 0`` (in IR units, or relative: see ``relative``).
    relative
        Whether ``sigma`` multiplies each sample's IR standard deviation (population std over
        the sample's entries); ``False``: absolute.
    """

    sigma: float = 0.1
    relative: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "sigma", _checks.real("sigma", self.sigma, low=0.0))
        _checks.boolean("relative", self.relative)


@DEFENCES.register
class GaussianNoise(Defence):
    """Sends ``ir + s * e``, ``e ~ N(0, I)``, ``s = sigma`` (or ``sigma * std(ir_n)``)."""

    name: ClassVar[str] = "gaussian_noise"
    description: ClassVar[str] = "additive Gaussian noise on the IR (absolute or relative sigma)"
    Params: ClassVar[type[GaussianNoiseParams]] = GaussianNoiseParams
    params: GaussianNoiseParams

    def apply(self, ir: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """``ir`` plus Gaussian noise; the relative scale is a constant (no gradient)."""
        e = torch.randn(ir.shape, generator=gen, dtype=ir.dtype, device=ir.device)
        scale = sample_scale(ir, self.params.sigma, relative=self.params.relative)
        return ir + scale * e


def sample_scale(ir: torch.Tensor, sigma: float, *, relative: bool) -> torch.Tensor | float:
    """``sigma``, or ``sigma`` times each sample's population std, shaped to broadcast."""
    if not relative:
        return sigma
    std = ir.detach().flatten(1).std(dim=1, correction=0)
    return sigma * std.view(-1, *([1] * (ir.ndim - 1)))
