"""``quantise``: uniform quantisation of each sample's IR to ``2^bits`` levels.

Each sample's IR is mapped to ``2^bits`` evenly spaced levels between its own minimum and
maximum (round to nearest, ties to even), as a low-precision IR would be sent: the levels and
the two floats of the range. A deterministic defence (the generator is not used). A sample
whose entries are all equal is sent unchanged. The rounding has zero gradient almost
everywhere, so a white-box attacker differentiating through it sees the gradient of the
straight-through estimator instead (the identity), the usual convention.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from phloem.attacks.defences.base import Defence
from phloem.attacks.registries import DEFENCES
from phloem.core import checks as _checks

__all__ = ["Quantise", "QuantiseParams"]


@dataclass(frozen=True)
class QuantiseParams:
    """Parameters of :class:`Quantise`.

    Attributes
    ----------
    bits
        Bits per entry, in ``[1, 16]``: ``2^bits`` levels per sample.
    """

    bits: int = 4

    def __post_init__(self) -> None:
        object.__setattr__(self, "bits", _checks.integer("bits", self.bits, low=1, high=16))


@DEFENCES.register
class Quantise(Defence):
    """Rounds each sample's IR to ``2^bits`` levels spanning its own ``[min, max]``."""

    name: ClassVar[str] = "quantise"
    description: ClassVar[str] = "uniform quantisation to 2^bits levels of each sample's range"
    Params: ClassVar[type[QuantiseParams]] = QuantiseParams
    params: QuantiseParams

    def apply(self, ir: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """``min + round((ir - min) / step) * step``, ``step = (max - min) / (2^bits - 1)``."""
        flat = ir.detach().flatten(1)
        shape = (-1, *([1] * (ir.ndim - 1)))
        lo = flat.min(dim=1).values.view(shape)
        span = flat.max(dim=1).values.view(shape) - lo
        step = span / (2**self.params.bits - 1)
        safe = torch.where(span > 0, step, torch.ones_like(step))
        q = lo + torch.round((ir.detach() - lo) / safe) * safe
        q = torch.where(span > 0, q, ir.detach())
        return q + (ir - ir.detach())  # straight-through: exactly q's value, ir's gradient
