"""Scaling an unbiased compressor into a contractive one.

If ``Q`` is unbiased with variance ``omega`` (``E||Q(v) - v||^2 <= omega ||v||^2``), then
``C(v) = Q(v) / (omega + 1)`` is contractive with ``alpha = 1 / (omega + 1)``:

    A. Beznosikov, S. Horváth, P. Richtárik, M. Safaryan. "On biased compression for distributed
    learning". arXiv:2002.12410 (2020).

This is how EF21 runs with Rand-K:

    P. Richtárik, I. Sokolov, I. Fatkhullin. "EF21: A new, simpler, theoretically better, and
    practically faster error feedback". NeurIPS 2021.

Constants: biased (``omega = inf``), ``alpha = 1 / (omega_Q + 1)``. Proof:
``E||Q(v)||^2 <= (omega_Q + 1) ||v||^2``, so with ``c = 1 / (omega_Q + 1)``,
``E||c Q(v) - v||^2 = c^2 E||Q(v)||^2 - 2c ||v||^2 + ||v||^2 <= (1 - c) ||v||^2``. The
contraction holds in expectation, not draw by draw (``Scaled(RandK(k))`` keeps a random subset
of ``v`` unscaled, and on an unlucky draw drops most of its mass).

Bits: those of ``Q`` (scaling by a known constant costs nothing).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from phloem.core.errors import ConfigError
from phloem.fl.compressors.base import Compressed, Compressor

if TYPE_CHECKING:
    import torch

__all__ = ["Scaled"]


@dataclass(frozen=True)
class Scaled(Compressor):
    """``C(v) = Q(v) / (omega_Q(d) + 1)`` for an unbiased ``Q``: contractive, biased.

    Parameters
    ----------
    inner
        The unbiased compressor ``Q`` to scale (``inner.unbiased`` must be ``True``).
    """

    inner: Compressor

    name: ClassVar[str] = "scaled"
    description: ClassVar[str] = "an unbiased compressor divided by (omega + 1): contractive"
    unbiased: ClassVar[bool] = False

    def __post_init__(self) -> None:
        if not isinstance(self.inner, Compressor):
            raise ConfigError("Scaled.inner", f"must be a Compressor, got {self.inner!r}")
        if not self.inner.unbiased:
            raise ConfigError(
                "Scaled.inner",
                f"must be an unbiased compressor (omega finite), got {self.inner!r}; a biased "
                "compressor is already contractive and needs no scaling",
            )

    def compress(self, v: torch.Tensor, gen: torch.Generator) -> Compressed:
        """Compress with ``inner`` using ``gen``, then divide by ``inner.omega(d) + 1``."""
        sent = self.inner.compress(v, gen)
        scale = 1.0 / (self.inner.omega(v.numel()) + 1.0)
        return Compressed(sent.value * scale, sent.bits)

    def omega(self, d: int) -> float:
        """``inf``: the scaled operator is biased (unless ``omega_Q = 0``)."""
        return math.inf

    def alpha(self, d: int) -> float:
        """``1 / (inner.omega(d) + 1)``."""
        return 1.0 / (self.inner.omega(d) + 1.0)

    def expected_bits(self, d: int) -> float:
        """``inner.expected_bits(d)``."""
        return self.inner.expected_bits(d)
