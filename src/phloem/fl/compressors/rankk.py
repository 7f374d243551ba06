"""Rank-K: the vector as a near-square matrix, sent as a rank-``K`` approximation (PowerSGD).

    T. Vogels, S. P. Karimireddy, M. Jaggi. "PowerSGD: Practical low-rank gradient compression
    for distributed optimization". NeurIPS 2019 (Algorithm 1, one power-iteration step).

Reshape rule: ``v`` of dimension ``d`` is written row by row into an ``m x n`` matrix ``M`` with
``n = ceil(sqrt(d))`` columns and ``m = ceil(d / n) <= n`` rows; the last ``m n - d`` entries are
zero padding, which the receiver (knowing ``d``) drops again. ``||M||_F = ||v||``.

``method = "power"`` (default): PowerSGD's single power-iteration step, applied to ``M^T`` so
that the random start lives on the shorter side. ``Q`` is an ``m x K`` standard Gaussian drawn
from the generator (a fresh start on every call; PowerSGD's warm start would need state that
lives across calls, which a compressor here does not keep), ``P = orth(M^T Q)`` (``n x K``, by a
reduced QR), ``R = M P`` (``m x K``), and ``C(M) = R P^T``: the rows of ``M`` projected onto the
span of ``P``.

``method = "svd"``: the truncated SVD ``M_K`` (deterministic; the best rank-``K``
approximation), sent as ``U_K S_K`` and ``V_K``; a reference for the power step.

Constants: biased (``omega = inf``) and contractive with ``alpha = K / m = K / min(m, n)``.

- svd: ``||M - M_K||^2 = sum_{j > K} sigma_j^2 <= (1 - K / rank(M)) ||M||^2`` for every ``v``,
  and ``rank(M) <= m``.
- power, in expectation over ``Q``: ``C(M) = M P P^T`` is an orthogonal projection, so
  ``||C(M) - M||^2 = ||M||^2 - ||P P^T M^T||^2``. With ``H H^T`` the orthogonal projection onto
  the span of ``Q`` (uniformly random among ``K``-dimensional subspaces of ``R^m``, as the
  Gaussian law is rotation invariant, so ``E[H H^T] = (K / m) I``), the columns of ``M^T H`` lie
  in the span of ``P``, hence ``||P P^T M^T||^2 >= ||P P^T M^T H H^T||^2 = ||M^T H H^T||^2``
  whose expectation is ``tr(M^T E[H H^T] M) = (K / m) ||M||^2``.

Both bounds are attained, e.g. by ``M = [I_m 0]`` (all singular values equal), for which every
draw gives ``||C(M) - M||^2 = (1 - K/m) ||M||^2``. Dropping the padding only removes error.

Bits: ``FLOAT_BITS * K * (m + n)`` -- the two factors as float32. The padding is not sent; it
costs only through ``m n >= d``. When ``K (m + n) >= d`` the factors would be no smaller than
``v`` itself, so ``v`` is sent uncompressed (``FLOAT_BITS * d``, ``alpha = 1``).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar, Self

import torch

from phloem.core.errors import ConfigError
from phloem.fl.compressors.base import FLOAT_BITS, Compressed, Compressor, check_vector
from phloem.fl.registries import COMPRESSORS

__all__ = ["RankK", "RankKParams", "RankMethod", "matrix_shape"]


class RankMethod(StrEnum):
    """How the rank-``K`` factors are found (``compressor.method``)."""

    #: PowerSGD's one power-iteration step from a Gaussian start
    POWER = "power"
    #: the exact truncated SVD
    SVD = "svd"


def matrix_shape(d: int) -> tuple[int, int]:
    """``(m, n)``: ``n = ceil(sqrt(d))`` columns, ``m = ceil(d / n)`` rows (``m <= n``)."""
    n = max(1, math.isqrt(d - 1) + 1) if d > 1 else 1
    return -(-d // n), n


@dataclass(frozen=True)
class RankKParams:
    """``rank`` K >= 1; ``method``: ``power`` (PowerSGD step) or ``svd`` (truncated SVD)."""

    rank: int = 1
    method: RankMethod = RankMethod.POWER

    def __post_init__(self) -> None:
        if not self.rank >= 1:
            raise ValueError(f"compressor.rank must be an integer >= 1, got {self.rank}")


@COMPRESSORS.register
@dataclass(frozen=True)
class RankK(Compressor):
    """Rank-``K`` approximation of ``v`` reshaped to ``m x n``: contractive, ``alpha = K / m``.

    Parameters
    ----------
    rank
        ``K >= 1``. When ``K (m + n) >= d`` the vector is sent uncompressed.
    method
        ``RankMethod.POWER`` (one PowerSGD step, random) or ``RankMethod.SVD`` (exact).
    """

    rank: int
    method: RankMethod = RankMethod.POWER

    name: ClassVar[str] = "rankk"
    description: ClassVar[str] = (
        "rank-K PowerSGD step (or truncated SVD) of v as a near-square matrix, contractive "
        "(Vogels et al., NeurIPS 2019)"
    )
    Params: ClassVar[type[RankKParams]] = RankKParams
    unbiased: ClassVar[bool] = False

    @classmethod
    def from_params(cls, params: RankKParams, *, dim: int) -> Self:
        return cls(params.rank, params.method)

    def __post_init__(self) -> None:
        k = self.rank
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
            raise ConfigError("RankK.rank", f"must be an integer >= 1, got {k!r}")
        object.__setattr__(self, "rank", int(k))
        try:
            object.__setattr__(self, "method", RankMethod(self.method))
        except ValueError:
            allowed = [m.value for m in RankMethod]
            raise ConfigError("RankK.method", f"unknown {self.method!r}", allowed) from None

    def dense(self, d: int) -> bool:
        """Whether ``v`` of dimension ``d`` is sent uncompressed (``K (m + n) >= d``)."""
        m, n = matrix_shape(d)
        return self.rank * (m + n) >= d

    def compress(self, v: torch.Tensor, gen: torch.Generator) -> Compressed:
        """The rank-``K`` approximation of ``v`` as an ``m x n`` matrix, flattened back."""
        d = check_vector(v)
        if self.dense(d):
            return Compressed(v.clone(), FLOAT_BITS * d)
        m, n = matrix_shape(d)
        mat = torch.zeros(m * n, dtype=v.dtype, device=v.device)
        mat[:d] = v
        mat = mat.reshape(m, n)
        if self.method is RankMethod.SVD:
            u, s, vh = torch.linalg.svd(mat, full_matrices=False)
            approx = (u[:, : self.rank] * s[: self.rank]) @ vh[: self.rank]
        else:
            q = torch.randn((m, self.rank), generator=gen, dtype=v.dtype, device=gen.device)
            p, _ = torch.linalg.qr(mat.T @ q.to(v.device))  # n x K, orthonormal columns
            approx = (mat @ p) @ p.T
        return Compressed(approx.reshape(-1)[:d].clone(), self._bits(d))

    def omega(self, d: int) -> float:
        """``inf``: a low-rank approximation is biased."""
        return math.inf

    def alpha(self, d: int) -> float:
        """``K / m`` with ``m = ceil(d / ceil(sqrt(d)))`` (``1`` when sent uncompressed)."""
        if d < 1 or self.dense(d):
            return 1.0
        return self.rank / matrix_shape(d)[0]

    def expected_bits(self, d: int) -> float:
        """``FLOAT_BITS K (m + n)``, or ``FLOAT_BITS d`` when that is no smaller."""
        return float(self._bits(d))

    def _bits(self, d: int) -> int:
        if self.dense(d):
            return FLOAT_BITS * d
        m, n = matrix_shape(d)
        return FLOAT_BITS * self.rank * (m + n)
