"""Scaled sign: ``C(v) = (||v||_1 / d) sign(v)``, biased and contractive.

    S. P. Karimireddy, Q. Rebjock, S. U. Stich, M. Jaggi. "Error feedback fixes SignSGD and other
    gradient compression schemes". ICML 2019 (the compressor of EF-SignSGD).

Every entry travels as one sign bit; the receiver multiplies by the mean magnitude
``||v||_1 / d``. One bit cannot say "zero", so a zero entry is sent as ``+`` (``sign(0) := +1``,
also for ``-0.0``); ``C(0) = 0``.

Constants: biased (``omega = inf``), deterministic, and for every ``v``
``||C(v) - v||^2 = ||v||^2 - ||v||_1^2 / d`` (expand: ``<C(v), v> = ||C(v)||^2 = ||v||_1^2 / d``),
so ``C`` contracts ``v`` with ``alpha(v) = ||v||_1^2 / (d ||v||_2^2)``. Since
``||v||_1 >= ||v||_2``, ``alpha(v) >= 1 / d``, and the infimum is ``1 / d`` (one large entry
and ``d - 1`` vanishing ones), so ``alpha = 1 / d`` is the constant that holds for every ``v``.
For dense vectors with entries of similar size, ``alpha(v)`` is close to 1.

Bits: ``FLOAT_BITS + d`` -- the scale as a float32 and one bit per entry.

The operator is deterministic: the generator is not used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from phloem.fl.compressors.base import FLOAT_BITS, Compressed, Compressor, check_vector
from phloem.fl.registries import COMPRESSORS

__all__ = ["Sign"]


@COMPRESSORS.register
@dataclass(frozen=True)
class Sign(Compressor):
    """Scaled sign ``(||v||_1 / d) sign(v)`` (zeros sent as ``+``): contractive, ``alpha = 1/d``."""

    name: ClassVar[str] = "sign"
    description: ClassVar[str] = (
        "scaled sign ||v||_1/d sign(v), contractive, 1 bit/entry (Karimireddy et al., ICML 2019)"
    )
    unbiased: ClassVar[bool] = False

    def compress(self, v: torch.Tensor, gen: torch.Generator) -> Compressed:
        """``(||v||_1 / d)`` times ``+1`` where ``v_i >= 0`` and ``-1`` where ``v_i < 0``."""
        d = check_vector(v)
        scale = v.abs().sum() / d
        signs = torch.where(v < 0, -1.0, 1.0).to(v.dtype)
        return Compressed(signs * scale, FLOAT_BITS + d)

    def omega(self, d: int) -> float:
        """``inf``: the scaled sign is biased."""
        return math.inf

    def alpha(self, d: int) -> float:
        """``1 / d``, the worst case over ``v`` of ``||v||_1^2 / (d ||v||_2^2)``."""
        return 1.0 / d if d > 0 else 1.0

    def expected_bits(self, d: int) -> float:
        """``FLOAT_BITS + d``."""
        return float(FLOAT_BITS + d)
