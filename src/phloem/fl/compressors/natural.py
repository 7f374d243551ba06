"""Natural compression: unbiased stochastic rounding to a power of two.

    S. Horváth, C.-Y. Ho, L. Horváth, A. N. Sahu, M. Canini, P. Richtárik. "Natural compression
    for distributed deep learning". arXiv:1905.10988 (2019); MSML 2022.

Each entry ``x != 0`` with ``2^e <= |x| < 2^(e+1)`` becomes ``sign(x) 2^(e+1)`` with probability
``p = |x| / 2^e - 1`` and ``sign(x) 2^e`` otherwise, independently across entries; zero stays
zero. Then ``E[C(x)] = x``.

Constants: ``omega = 1/8`` (per entry, ``Var / x^2 = p (1 - p) / (1 + p)^2 <= 1/8``, with
equality at ``p = 1/3``, i.e. ``|x| = (4/3) 2^e``), so ``alpha = 7/8`` as well.

Bits: ``9 * d`` -- a sign bit and the 8-bit exponent of float32 per entry (the mantissa is
implicit). A float64 input is rounded in float64; its entries outside float32's exponent range
(below about ``1e-45`` or above about ``3e38`` in magnitude) cannot be sent in 9 bits, so the
bit count assumes they do not occur. Likewise an entry above ``2^127`` in float32 can round up to
``2^128``, which overflows to ``inf``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from phloem.fl.compressors.base import Compressed, Compressor, check_vector, uniform_like
from phloem.fl.registries import COMPRESSORS

__all__ = ["NATURAL_BITS_PER_ENTRY", "Natural"]

#: Sign bit plus the 8-bit float32 exponent.
NATURAL_BITS_PER_ENTRY = 9


@COMPRESSORS.register
@dataclass(frozen=True)
class Natural(Compressor):
    """Natural compression ``C_nat``: unbiased random rounding of each entry to a power of two."""

    name: ClassVar[str] = "natural"
    description: ClassVar[str] = (
        "natural compression, unbiased, 9 bits/entry (Horvath et al., MSML 2022)"
    )
    unbiased: ClassVar[bool] = True

    def compress(self, v: torch.Tensor, gen: torch.Generator) -> Compressed:
        """Round each entry of ``v`` up or down to a power of two, unbiasedly."""
        d = check_vector(v)
        # v = m 2^e with 1/2 <= |m| < 1 (m = 0 for zeros). The lower power of two is
        # sign(v) 2^(e-1) = v / (2|m|), and |v| / 2^(e-1) - 1 = 2|m| - 1 is the probability of
        # rounding up; both are exact in floating point (subnormals included). Zeros get
        # probability -1 (never rounded up) and divide by the clamped 1, staying zero.
        mantissa, _ = torch.frexp(v)
        two_m = mantissa.abs_().mul_(2.0)
        step = torch.lt(uniform_like(v, gen), two_m - 1.0).to(v.dtype).add_(1.0)
        out = v.div(two_m.clamp_min_(1.0)).mul_(step)
        return Compressed(out, NATURAL_BITS_PER_ENTRY * d)

    def omega(self, d: int) -> float:
        """``1/8``, for every ``d``."""
        return 0.125

    def expected_bits(self, d: int) -> float:
        """``9 * d``."""
        return float(NATURAL_BITS_PER_ENTRY * d)
