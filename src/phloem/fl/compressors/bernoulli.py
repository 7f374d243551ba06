"""The Bernoulli ("lazy") compressor: send the whole vector, rescaled, with probability ``p``.

One coin per vector: ``C(v) = v / p`` with probability ``p`` and ``C(v) = 0`` otherwise, so
``E[C(v)] = v``. It is the one-coin case of the randomized mean-estimation encoders of

    J. Konečný, P. Richtárik. "Randomized distributed mean estimation: accuracy vs.
    communication". Frontiers in Applied Mathematics and Statistics 4:62 (2018).

and the random full synchronisation used by probabilistic methods such as

    E. Gorbunov, K. Burlachenko, Z. Li, P. Richtárik. "MARINA: Faster non-convex distributed
    learning with compression". ICML 2021.

Constants: ``omega = 1 / p - 1``, and the bound is an equality for every ``v``:
``E||C(v) - v||^2 = p (1/p - 1)^2 ||v||^2 + (1 - p) ||v||^2 = (1/p - 1) ||v||^2``.

Bits: one bit for the coin, plus ``FLOAT_BITS * d`` when the vector is sent:
``FLOAT_BITS * d + 1`` or ``1``; in expectation ``p * FLOAT_BITS * d + 1``.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import ClassVar

import torch

from phloem.core.errors import ConfigError
from phloem.fl.compressors.base import FLOAT_BITS, Compressed, Compressor, check_vector
from phloem.fl.registries import COMPRESSORS

__all__ = ["Bernoulli", "BernoulliParams"]


@dataclass(frozen=True)
class BernoulliParams:
    """``p``: probability of sending, in (0, 1]."""

    p: float = 0.5

    def __post_init__(self) -> None:
        if not self.p > 0:
            raise ValueError(f"compressor.p must be positive, got {self.p}")


@COMPRESSORS.register
@dataclass(frozen=True)
class Bernoulli(Compressor):
    """Send ``v / p`` with probability ``p``, else nothing (the receiver reconstructs zeros).

    Parameters
    ----------
    p
        Probability of sending, in ``(0, 1]``.
    """

    p: float

    name: ClassVar[str] = "bernoulli"
    description: ClassVar[str] = (
        "Bernoulli / lazy: send with probability p, unbiased (Konecny & Richtarik, Frontiers 2018)"
    )
    Params: ClassVar[type[BernoulliParams]] = BernoulliParams
    unbiased: ClassVar[bool] = True

    def __post_init__(self) -> None:
        ok = isinstance(self.p, numbers.Real) and not isinstance(self.p, bool)
        if not ok or not (0.0 < float(self.p) <= 1.0):  # also rejects NaN
            raise ConfigError("Bernoulli.p", f"must be a probability in (0, 1], got {self.p!r}")
        object.__setattr__(self, "p", float(self.p))

    def compress(self, v: torch.Tensor, gen: torch.Generator) -> Compressed:
        """Flip one ``p``-coin from ``gen``; on heads send ``v / p``, on tails send zeros."""
        d = check_vector(v)
        coin = float(torch.rand((), generator=gen, dtype=torch.float64, device=gen.device))
        if coin < self.p:
            return Compressed(v / self.p, FLOAT_BITS * d + 1)
        return Compressed(torch.zeros_like(v), 1)

    def omega(self, d: int) -> float:
        """``1 / p - 1``."""
        return 1.0 / self.p - 1.0

    def expected_bits(self, d: int) -> float:
        """``p * FLOAT_BITS * d + 1``."""
        return self.p * FLOAT_BITS * d + 1.0
