"""Natural dithering: unbiased rounding of ``|v_i| / ||v||_p`` to the levels ``0, 2^(1-s), ..., 1``.

    S. Horváth, C.-Y. Ho, L. Horváth, A. N. Sahu, M. Canini, P. Richtárik. "Natural compression
    for distributed deep learning". arXiv:1905.10988 (2019); MSML 2022 -- natural dithering
    ``C_nd^{p,s}`` (Section 4).

With ``s = levels`` the grid is ``0 < 2^(1-s) < ... < 1/2 < 1`` (``s + 1`` values). With
``t_i = |v_i| / ||v||_p`` in ``[0, 1]``: when ``2^(1-s) <= t_i``, ``2^e <= t_i < 2^(e+1)``,
``t_i`` becomes ``2^(e+1)`` with probability ``t_i / 2^e - 1`` and ``2^e`` otherwise (natural
compression of ``t_i``); when ``t_i < 2^(1-s)`` it becomes ``2^(1-s)`` with probability
``t_i / 2^(1-s)`` and ``0`` otherwise. Entry ``i`` is sent as ``||v||_p sign(v_i)`` times the
chosen level, independently across entries; ``C(0) = 0``. Then ``E[C(v)] = v``.

Constants (Horváth et al., Theorem on ``C_nd^{p,s}``, with ``r = min(p, 2) = 2`` for ``p`` in
``{2, inf}``): ``omega = 1/8 + (sqrt(d) / 2^(s-1)) min(1, sqrt(d) / 2^(s-1))``, i.e.
``1/8 + min(sqrt(d) / 2^(s-1), d / 2^(2(s-1)))``. Proof: between ``2^e`` and ``2^(e+1)`` the
variance is at most ``t_i^2 / 8`` (natural compression), which sums to
``||v||^2 / 8``; below ``b = 2^(1-s)`` it is ``t_i (b - t_i) <= min(b t_i, b^2 / 4)``, which sums
over the small entries, times ``||v||_p^2``, to at most
``min(b ||v||_p ||v||_1, d b^2 ||v||_p^2 / 4) <= min(b sqrt(d), d b^2) ||v||_2^2``.

Bits, with ``coding = "fixed"`` (the default): ``FLOAT_BITS + d (1 + ceil(log2(s + 1)))`` -- the
norm as a float32, then per entry a sign bit and the index of its level among the ``s + 1``.
With ``coding = "elias"``: QSGD's sparse Elias code
(:func:`phloem.fl.compressors.coding.sparse_levels_bits`), level ``2^(-j)`` written as the
integer ``s - j`` (the smallest nonzero level, the commonest, gets the shortest code);
``expected_bits`` is then the longest possible message, an upper bound.

``levels`` is at most 64, so that the smallest level ``2^-63`` is a normal float32.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from phloem.fl.compressors.base import (
    FLOAT_BITS,
    Compressed,
    check_vector,
    uniform_like,
)
from phloem.fl.compressors.coding import (
    Coding,
    elias_worst_bits,
    sparse_levels_bits,
)
from phloem.fl.compressors.dithering import DitheredLevels, check_levels, parse_norm, vector_norm
from phloem.fl.registries import COMPRESSORS

__all__ = ["MAX_NATURAL_LEVELS", "NaturalDithering", "NaturalDitheringParams"]

#: the largest ``levels`` of natural dithering (the smallest level ``2^-63``)
MAX_NATURAL_LEVELS = 64


@dataclass(frozen=True)
class NaturalDitheringParams:
    """``levels`` s in 1..64; ``norm``: 2 or ``"inf"``; ``coding``: ``fixed`` or ``elias``."""

    levels: int = 8
    norm: int | str = 2
    coding: Coding = Coding.FIXED

    def __post_init__(self) -> None:
        check_levels(self.levels, "compressor.levels", MAX_NATURAL_LEVELS)
        parse_norm(self.norm, "compressor.norm")


@COMPRESSORS.register
@dataclass(frozen=True)
class NaturalDithering(DitheredLevels):
    """Natural dithering ``C_nd^{p,s}``: levels ``0, 2^(1-s), ..., 1/2, 1`` of ``||v||_p``.

    Parameters
    ----------
    levels
        Number of nonzero levels ``s`` in ``1..64``.
    norm
        ``p``: ``2.0`` or ``math.inf``.
    coding
        How the message's bits are counted: ``Coding.FIXED`` or QSGD's ``Coding.ELIAS``.
    """

    name: ClassVar[str] = "natural_dithering"
    description: ClassVar[str] = (
        "natural dithering, levels 1, 1/2, ..., 2^(1-s) of the 2- or inf-norm, unbiased "
        "(Horvath et al., MSML 2022)"
    )
    Params: ClassVar[type[NaturalDitheringParams]] = NaturalDitheringParams
    unbiased: ClassVar[bool] = True
    most_levels: ClassVar[int] = MAX_NATURAL_LEVELS

    def compress(self, v: torch.Tensor, gen: torch.Generator) -> Compressed:
        """Round each ``|v_i| / ||v||_p`` to a neighbouring level, unbiasedly."""
        check_vector(v)
        u = uniform_like(v, gen)
        norm = vector_norm(v, self.norm)
        if float(norm) == 0.0:
            zero = torch.zeros_like(v)
            return Compressed(zero, self._bits(zero))
        t = (v.abs() / norm).clamp_(max=1.0)
        smallest = 2.0 ** (1 - self.levels)
        # t = m 2^e with 1/2 <= m < 1: the lower power of two is t / (2m) and the probability
        # of rounding up is 2m - 1, both exact (as in natural compression)
        mantissa, _ = torch.frexp(t)
        two_m = mantissa.mul_(2.0)
        upper = torch.lt(u, two_m - 1.0).to(v.dtype).add_(1.0)
        big = t.div(two_m.clamp_min(1.0)).mul_(upper)
        small = torch.lt(u, t / smallest).to(v.dtype).mul_(smallest)
        w = torch.where(t < smallest, small, big)
        return Compressed(torch.sign(v) * w * norm, self._bits(w))

    def omega(self, d: int) -> float:
        """``1/8 + min(sqrt(d) / 2^(s-1), d / 2^(2(s-1)))``."""
        x = math.sqrt(d) / 2.0 ** (self.levels - 1)
        return 0.125 + x * min(1.0, x)

    def expected_bits(self, d: int) -> float:
        """``FLOAT_BITS + d (1 + ceil(log2(s + 1)))``; with Elias coding, an upper bound."""
        if self.coding is Coding.ELIAS:
            return float(elias_worst_bits(d, self.levels))
        return float(FLOAT_BITS + d * (1 + math.ceil(math.log2(self.levels + 1))))

    def _bits(self, w: torch.Tensor) -> int:
        """Bits for the levels ``w`` (``0`` or ``2^-j``, sent as the integers 0 or ``s - j``)."""
        if self.coding is Coding.ELIAS:
            _, e = torch.frexp(w)  # w = 2^-j = (1/2) 2^(1-j): e = 1 - j, and 0 for w = 0
            index = torch.where(w > 0, self.levels - 1 + e, 0)
            return sparse_levels_bits(index)
        return int(self.expected_bits(w.numel()))
