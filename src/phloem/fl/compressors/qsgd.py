"""QSGD: unbiased stochastic quantisation with ``s`` levels.

    D. Alistarh, D. Grubic, J. Li, R. Tomioka, M. Vojnovic. "QSGD: Communication-efficient SGD
    via gradient quantization and encoding". NeurIPS 2017.

With ``s = levels`` and ``r_i = s |v_i| / ||v||_2`` in ``[0, s]``, entry ``i`` becomes
``||v||_2 sign(v_i) xi_i / s`` where ``xi_i = floor(r_i) + 1`` with probability
``r_i - floor(r_i)`` and ``floor(r_i)`` otherwise, independently across entries; ``C(0) = 0``.
Then ``E[C(v)] = v``.

Constants: ``omega = min(d / s^2, sqrt(d) / s)`` (Lemma 3.1 of the paper); the bound is not
tight in general.

Bits, with ``coding = "fixed"`` (the default): ``FLOAT_BITS + d * (1 + ceil(log2(s + 1)))`` --
the norm as a float32, then per entry a sign bit and the level ``xi_i`` in ``{0, ..., s}`` as a
fixed-length integer. With ``coding = "elias"``: the length of the paper's sparse Elias code of
the realised levels (Section 3.2; :func:`phloem.fl.compressors.coding.sparse_levels_bits`),
which is shorter when ``s`` is small relative to ``sqrt(d)`` (most levels are then 0). Its
length depends on the draw, so ``expected_bits`` is then an upper bound, the longest possible
message (:func:`phloem.fl.compressors.coding.elias_worst_bits`); the bits a run counts are the
realised ones.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import ClassVar

import torch

from phloem.core.errors import ConfigError
from phloem.fl.compressors.base import (
    FLOAT_BITS,
    Compressed,
    Compressor,
    check_vector,
    uniform_like,
)
from phloem.fl.compressors.coding import (
    Coding,
    elias_worst_bits,
    parse_coding,
    sparse_levels_bits,
)
from phloem.fl.registries import COMPRESSORS

__all__ = ["QSGD", "QSGDParams"]


@dataclass(frozen=True)
class QSGDParams:
    """``levels``: quantisation levels s >= 1; ``coding``: ``fixed`` or ``elias`` bit count."""

    levels: int = 4
    coding: Coding = Coding.FIXED

    def __post_init__(self) -> None:
        if not self.levels > 0:
            raise ValueError(f"compressor.levels must be positive, got {self.levels}")


@COMPRESSORS.register
@dataclass(frozen=True)
class QSGD(Compressor):
    """QSGD random quantisation of ``|v_i| / ||v||_2`` to ``levels`` levels.

    Parameters
    ----------
    levels
        Number of quantisation levels ``s >= 1`` (``s = 1`` is random 1-bit dithering: each
        entry becomes ``0`` or ``sign(v_i) ||v||_2``).
    coding
        How the message's bits are counted: ``Coding.FIXED`` or QSGD's ``Coding.ELIAS``.
    """

    levels: int
    coding: Coding = Coding.FIXED

    name: ClassVar[str] = "qsgd"
    description: ClassVar[str] = (
        "QSGD with `levels` levels, unbiased, fixed or Elias bits (Alistarh et al., NeurIPS 2017)"
    )
    Params: ClassVar[type[QSGDParams]] = QSGDParams
    unbiased: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if (
            isinstance(self.levels, bool)
            or not isinstance(self.levels, numbers.Integral)
            or self.levels < 1
        ):
            raise ConfigError("QSGD.levels", f"must be an integer >= 1, got {self.levels!r}")
        object.__setattr__(self, "levels", int(self.levels))
        object.__setattr__(self, "coding", parse_coding(self.coding, "QSGD.coding"))

    def compress(self, v: torch.Tensor, gen: torch.Generator) -> Compressed:
        """Quantise ``v`` stochastically to ``levels`` levels of its Euclidean norm."""
        d = check_vector(v)
        s = self.levels
        u = uniform_like(v, gen)
        norm = torch.linalg.vector_norm(v)
        if float(norm) == 0.0:
            zero = torch.zeros_like(v)
            return Compressed(zero, self._bits(d, zero))
        # Rounding can push |v_i| / ||v|| a hair above 1; the clamp keeps xi_i <= s.
        r = (v.abs() / norm * s).clamp_(max=s)
        low = torch.floor(r)
        xi = low + (u < r - low).to(v.dtype)
        out = torch.sign(v) * xi * (norm / s)
        return Compressed(out, self._bits(d, xi))

    def omega(self, d: int) -> float:
        """``min(d / s^2, sqrt(d) / s)``."""
        s = self.levels
        return min(d / s**2, math.sqrt(d) / s)

    def expected_bits(self, d: int) -> float:
        """``FLOAT_BITS + d * (1 + ceil(log2(s + 1)))``; with Elias coding, an upper bound."""
        if self.coding is Coding.ELIAS:
            return float(elias_worst_bits(d, self.levels))
        return float(FLOAT_BITS + d * (1 + math.ceil(math.log2(self.levels + 1))))

    def _bits(self, d: int, levels: torch.Tensor) -> int:
        if self.coding is Coding.ELIAS:
            return sparse_levels_bits(levels)
        return FLOAT_BITS + d * (1 + math.ceil(math.log2(self.levels + 1)))
