"""Top-K: greedy (biased) sparsification.

Keep the ``k`` coordinates of largest magnitude and send them unscaled:

    D. Alistarh, T. Hoefler, M. Johansson, S. Khirirat, N. Konstantinov, C. Renggli. "The
    convergence of sparsified gradient methods". NeurIPS 2018.

    S. U. Stich, J.-B. Cordonnier, M. Jaggi. "Sparsified SGD with memory". NeurIPS 2018.

Constants: biased (``omega = inf``) and contractive with ``alpha = k / d``, deterministically:
``||C(v) - v||^2 <= (1 - k / d) ||v||^2`` for every ``v`` (the ``d - k`` dropped squares are
the smallest, so they are at most their average share of ``||v||^2``). With ``k >= d`` the
operator is the identity (``alpha = 1``).

Bits: ``k * (FLOAT_BITS + index_bits(d))`` -- each kept value and its index; ``FLOAT_BITS * d``
when ``k >= d``.

The operator is deterministic: the generator is ignored, and among entries of equal magnitude
the one with the lowest index is kept first.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import ClassVar, Self

import torch

from phloem.core.errors import ConfigError
from phloem.fl.compressors.base import (
    FLOAT_BITS,
    Compressed,
    Compressor,
    SparsifierParams,
    check_vector,
    index_bits,
)
from phloem.fl.registries import COMPRESSORS

__all__ = ["TopK"]


@COMPRESSORS.register
@dataclass(frozen=True)
class TopK(Compressor):
    """Greedy Top-K sparsification (biased, contractive with ``alpha = k / d``).

    Parameters
    ----------
    k
        Number of coordinates kept (``>= 1``). With ``k >= d`` the vector is sent uncompressed.
    """

    k: int

    name: ClassVar[str] = "topk"
    description: ClassVar[str] = (
        "Top-K sparsification, contractive, k or ratio (Alistarh et al., NeurIPS 2018)"
    )
    Params: ClassVar[type[SparsifierParams]] = SparsifierParams
    unbiased: ClassVar[bool] = False

    @classmethod
    def from_params(cls, params: SparsifierParams, *, dim: int) -> Self:
        return cls(params.k_for(dim, cls.name))

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, numbers.Integral) or self.k < 1:
            raise ConfigError("TopK.k", f"must be an integer >= 1, got {self.k!r}")
        object.__setattr__(self, "k", int(self.k))

    def compress(self, v: torch.Tensor, gen: torch.Generator) -> Compressed:
        """Keep the ``k`` largest-magnitude entries of ``v``, lowest index first on ties."""
        d = check_vector(v)
        if self.k >= d:
            return Compressed(v.clone(), FLOAT_BITS * d)
        a = v.abs()
        # torch.topk does not specify which of several equal entries it returns, so only its
        # threshold (the k-th largest magnitude) is used; ties at the threshold are then
        # resolved by index, which is the same on every device and every torch version.
        threshold = torch.topk(a, self.k, sorted=False).values.min()
        above = a > threshold
        at = a == threshold
        room = self.k - above.sum()
        keep = above | (at & (torch.cumsum(at, dim=0) <= room))
        out = torch.where(keep, v, torch.zeros_like(v))
        return Compressed(out, self.k * (FLOAT_BITS + index_bits(d)))

    def omega(self, d: int) -> float:
        """``inf``: Top-K is biased."""
        return math.inf

    def alpha(self, d: int) -> float:
        """``min(k, d) / d``."""
        return min(self.k, d) / d if d > 0 else 1.0

    def expected_bits(self, d: int) -> float:
        """``k * (FLOAT_BITS + index_bits(d))`` (``FLOAT_BITS * d`` when ``k >= d``)."""
        if self.k >= d:
            return float(FLOAT_BITS * d)
        return float(self.k * (FLOAT_BITS + index_bits(d)))
