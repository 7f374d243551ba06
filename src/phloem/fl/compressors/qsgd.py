"""QSGD: unbiased stochastic quantisation with ``s`` levels.

    D. Alistarh, D. Grubic, J. Li, R. Tomioka, M. Vojnovic. "QSGD: Communication-efficient SGD
    via gradient quantization and encoding". NeurIPS 2017.

With ``s = levels`` and ``r_i = s |v_i| / ||v||_2`` in ``[0, s]``, entry ``i`` becomes
``||v||_2 sign(v_i) xi_i / s`` where ``xi_i = floor(r_i) + 1`` with probability
``r_i - floor(r_i)`` and ``floor(r_i)`` otherwise, independently across entries; ``C(0) = 0``.
Then ``E[C(v)] = v``.

Constants: ``omega = min(d / s^2, sqrt(d) / s)`` (Lemma 3.1 of the paper); the bound is not
tight in general.

Bits: ``FLOAT_BITS + d * (1 + ceil(log2(s + 1)))`` -- the norm as a float32, then per entry a
sign bit and the level ``xi_i`` in ``{0, ..., s}`` as a fixed-length integer. This is the plain
fixed-length code; the paper's Elias coding of the sparse levels sends fewer bits when ``s`` is
small relative to ``sqrt(d)``, and is not modelled here.
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
from phloem.fl.registries import COMPRESSORS

__all__ = ["QSGD", "QSGDParams"]


@dataclass(frozen=True)
class QSGDParams:
    """``levels``: quantisation levels s >= 1."""

    levels: int = 4

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
    """

    levels: int

    name: ClassVar[str] = "qsgd"
    description: ClassVar[str] = "QSGD with `levels` levels, unbiased"
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

    def compress(self, v: torch.Tensor, gen: torch.Generator) -> Compressed:
        """Quantise ``v`` stochastically to ``levels`` levels of its Euclidean norm."""
        d = check_vector(v)
        s = self.levels
        u = uniform_like(v, gen)
        norm = torch.linalg.vector_norm(v)
        if float(norm) == 0.0:
            return Compressed(torch.zeros_like(v), self._bits(d))
        # Rounding can push |v_i| / ||v|| a hair above 1; the clamp keeps xi_i <= s.
        r = (v.abs() / norm * s).clamp_(max=s)
        low = torch.floor(r)
        xi = low + (u < r - low).to(v.dtype)
        out = torch.sign(v) * xi * (norm / s)
        return Compressed(out, self._bits(d))

    def omega(self, d: int) -> float:
        """``min(d / s^2, sqrt(d) / s)``."""
        s = self.levels
        return min(d / s**2, math.sqrt(d) / s)

    def expected_bits(self, d: int) -> float:
        """``FLOAT_BITS + d * (1 + ceil(log2(s + 1)))``."""
        return float(self._bits(d))

    def _bits(self, d: int) -> int:
        return FLOAT_BITS + d * (1 + math.ceil(math.log2(self.levels + 1)))
