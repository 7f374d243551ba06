"""TernGrad: unbiased stochastic ternarisation ``{-s, 0, s}`` with ``s = ||v||_inf``.

    W. Wen, C. Xu, F. Yan, C. Wu, Y. Wang, Y. Chen, H. Li. "TernGrad: Ternary gradients to
    reduce communication in distributed deep learning". NeurIPS 2017.

With ``s = max_i |v_i|``, entry ``i`` becomes ``s sign(v_i) b_i`` where ``b_i`` is Bernoulli
with ``P(b_i = 1) = |v_i| / s``, independently across entries; ``C(0) = 0``. Then
``E[C(v)] = v``. The whole vector is one "layer" (the paper scales per layer and also clips
gradients at ``2.5`` standard deviations, a separate, biased step not done here). It is random
dithering with ``p = inf`` and ``s = 1`` (:mod:`phloem.fl.compressors.dithering`).

Constants: ``E||C(v) - v||^2 = sum_i (s |v_i| - v_i^2) = ||v||_inf ||v||_1 - ||v||_2^2``, so the
variance ratio of ``v`` is ``||v||_inf ||v||_1 / ||v||_2^2 - 1``, and its worst case over ``v`` is
``omega = (sqrt(d) - 1) / 2``, attained. Proof: scale so that ``||v||_inf = 1`` and let ``S`` be
the sum of the other ``d - 1`` magnitudes, each at most 1 (the largest entry is sent exactly).
By Cauchy-Schwarz their squares sum to at least ``S^2 / (d - 1)``, so the ratio plus one is at
most ``f(S) = (1 + S) / (1 + S^2 / (d - 1))``, maximal at ``S^2 + 2S = d - 1``, i.e.
``S = sqrt(d) - 1``, where ``f = (sqrt(d) + 1) / 2``. It is attained by one entry 1 and ``d - 1``
entries ``1 / (sqrt(d) + 1)``. The simpler ``sqrt(d) - 1`` (from
``||v||_inf ||v||_1 <= sqrt(d) ||v||_2^2``) is valid too, but twice too large.

Bits: ``FLOAT_BITS + 2 d`` -- the scale ``s`` as a float32 and two bits per ternary entry, as the
paper counts. An entropy coder would need about ``log2(3) d ~ 1.585 d`` bits in the worst case
(fewer when most ``b_i`` are 0); that is not modelled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from phloem.fl.compressors.base import (
    FLOAT_BITS,
    Compressed,
    Compressor,
    check_vector,
    uniform_like,
)
from phloem.fl.registries import COMPRESSORS

__all__ = ["TernGrad"]


@COMPRESSORS.register
@dataclass(frozen=True)
class TernGrad(Compressor):
    """TernGrad: ``||v||_inf sign(v_i) Bernoulli(|v_i| / ||v||_inf)``, unbiased."""

    name: ClassVar[str] = "terngrad"
    description: ClassVar[str] = (
        "TernGrad: ternary {-s, 0, s}, s = max |v_i|, unbiased, 2 bits/entry "
        "(Wen et al., NeurIPS 2017)"
    )
    unbiased: ClassVar[bool] = True

    def compress(self, v: torch.Tensor, gen: torch.Generator) -> Compressed:
        """Send ``sign(v_i) max |v|`` with probability ``|v_i| / max |v|``, else 0."""
        d = check_vector(v)
        u = uniform_like(v, gen)
        s = v.abs().max() if d > 0 else v.new_zeros(())
        bits = FLOAT_BITS + 2 * d
        if float(s) == 0.0:
            return Compressed(torch.zeros_like(v), bits)
        keep = u < v.abs() / s
        return Compressed(torch.where(keep, torch.sign(v) * s, torch.zeros_like(v)), bits)

    def omega(self, d: int) -> float:
        """``(sqrt(d) - 1) / 2``, the worst case over ``v``."""
        return max(0.0, (math.sqrt(d) - 1.0) / 2.0)

    def expected_bits(self, d: int) -> float:
        """``FLOAT_BITS + 2 d``."""
        return float(FLOAT_BITS + 2 * d)
