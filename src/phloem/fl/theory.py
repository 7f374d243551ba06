"""Smoothness constants and the step sizes the convergence theorems allow (FL_PyTorch-style).

For ``f = sum_i w_i f_i`` written as ``(1/n) sum_i F_i`` with ``F_i = n w_i f_i``, the theorems
use ``L`` (smoothness of ``f``), ``L_max = max_i L(F_i)`` and ``L_tilde = sqrt(mean_i L(F_i)^2)``.
The step sizes below are the largest each cited theorem allows; ``server.lr_rule = "theory"``
multiplies them by ``server.lr_scale``.

- GD: ``1 / L``.
- DCGD (unbiased ``omega``): ``1 / (L + 2 omega L_max / n)`` -- Gorbunov, Hanzely, Richtarik,
  "A Unified Theory of SGD", AISTATS 2020 (Table 2, distributed compressed SGD).
- DIANA: ``1 / (L + 6 omega L_max / n)`` with ``alpha = 1 / (omega + 1)`` -- same paper,
  DIANA row; Horvath et al. 2019.
- MARINA: ``1 / (L + L_tilde sqrt((1 - p) omega / (p n)))`` -- Gorbunov et al., ICML 2021,
  Theorem 2.1.
- PP-MARINA (``r`` clients with replacement): ``1 / (L + L_tilde sqrt((1 - p)(1 + omega) / (p r)))``
  -- Gorbunov et al., ICML 2021, Theorem 4.1.
- PAGE (``b'`` components per difference): ``1 / (L + L_tilde sqrt((1 - p) / (p b')))`` -- Li, Bao,
  Zhang, Richtarik, ICML 2021, Theorem 1.
- EF21 (contractive ``alpha``): ``1 / (L + L_tilde sqrt(beta / theta))`` with
  ``theta = 1 - sqrt(1 - alpha)``, ``beta = (1 - alpha) / (1 - sqrt(1 - alpha))`` -- Richtarik,
  Sokolov, Fatkhullin, NeurIPS 2021, Theorem 1.
- EF21-PP (each client taking part with probability ``q``): the same with ``theta_q = q theta / 2``
  and ``beta_q = q beta + (1 - q)(1 + 1/rho)``, ``rho = q theta / (2 (1 - q))`` -- Fatkhullin et
  al., "EF21 with Bells & Whistles", 2021 (its EF21-PP argument, worked out for equal
  ``p_i = q``; see ``phloem.fl.algorithms.ef21_pp``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from phloem.core.errors import ConfigError
from phloem.fl.registries import COMPRESSORS

if TYPE_CHECKING:
    from phloem.fl.compressors.base import Compressor

__all__ = [
    "Smoothness",
    "contraction",
    "dcgd_step",
    "diana_step",
    "ef21_pp_step",
    "ef21_step",
    "gd_step",
    "marina_step",
    "page_step",
    "pp_marina_step",
    "smoothness_from_clients",
    "unbiased_omega",
]


@dataclass(frozen=True)
class Smoothness:
    """Smoothness (and strong convexity, when known) of a federated objective.

    Attributes
    ----------
    L
        Smoothness constant of ``f``.
    L_max, L_tilde
        Max and quadratic mean of the scaled client constants ``n w_i L_i``.
    n
        Number of clients.
    mu
        Strong-convexity constant of ``f``, or ``None`` when unknown.
    """

    L: float
    L_max: float
    L_tilde: float
    n: int
    mu: float | None = None

    @property
    def condition_number(self) -> float:
        """``L / mu`` (``inf`` when ``mu`` is unknown or zero)."""
        return self.L / self.mu if self.mu else math.inf


def smoothness_from_clients(
    L: float, client_L: np.ndarray, weights: np.ndarray, mu: float | None = None
) -> Smoothness:
    """Build :class:`Smoothness` from ``f``'s constant and the clients' own ``L_i``."""
    n = len(client_L)
    scaled = n * np.asarray(weights, dtype=np.float64) * np.asarray(client_L, dtype=np.float64)
    return Smoothness(float(L), float(scaled.max()), float(np.sqrt(np.mean(scaled**2))), n, mu)


def gd_step(s: Smoothness) -> float:
    """``1 / L``."""
    return 1.0 / s.L


def dcgd_step(s: Smoothness, omega: float) -> float:
    """DCGD with an unbiased compressor of variance ``omega``."""
    return 1.0 / (s.L + 2.0 * omega * s.L_max / s.n)


def diana_step(s: Smoothness, omega: float) -> float:
    """DIANA with ``alpha = 1/(omega+1)``."""
    return 1.0 / (s.L + 6.0 * omega * s.L_max / s.n)


def marina_step(s: Smoothness, omega: float, p: float) -> float:
    """MARINA with synchronisation probability ``p``."""
    if not 0.0 < p <= 1.0:
        raise ValueError(f"p must be in (0, 1], got {p}")
    return 1.0 / (s.L + s.L_tilde * math.sqrt((1.0 - p) * omega / (p * s.n)))


def pp_marina_step(s: Smoothness, omega: float, p: float, r: int) -> float:
    """PP-MARINA with synchronisation probability ``p`` and ``r`` clients per compressed round."""
    if not 0.0 < p <= 1.0:
        raise ValueError(f"p must be in (0, 1], got {p}")
    return 1.0 / (s.L + s.L_tilde * math.sqrt((1.0 - p) * (1.0 + omega) / (p * r)))


def page_step(s: Smoothness, p: float, batch: int) -> float:
    """PAGE with full-gradient probability ``p`` and ``batch`` components per difference."""
    if not 0.0 < p <= 1.0:
        raise ValueError(f"p must be in (0, 1], got {p}")
    return 1.0 / (s.L + s.L_tilde * math.sqrt((1.0 - p) / (p * batch)))


def ef21_step(s: Smoothness, alpha: float) -> float:
    """EF21 with a contractive compressor of constant ``alpha``."""
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"EF21 needs a contractive compressor (0 < alpha <= 1), got alpha={alpha}")
    if alpha == 1.0:
        return 1.0 / s.L
    root = math.sqrt(1.0 - alpha)
    theta, beta = 1.0 - root, (1.0 - alpha) / (1.0 - root)
    return 1.0 / (s.L + s.L_tilde * math.sqrt(beta / theta))


def _ef21_constants(alpha: float) -> tuple[float, float]:
    """EF21's ``(theta, beta)`` for a contractive compressor of constant ``alpha`` (< 1)."""
    root = math.sqrt(1.0 - alpha)
    return 1.0 - root, (1.0 - alpha) / (1.0 - root)


def ef21_pp_step(s: Smoothness, alpha: float, q: float) -> float:
    """EF21-PP, each client taking part with probability ``q`` (see ``ef21_pp``)."""
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"EF21 needs a contractive compressor (0 < alpha <= 1), got alpha={alpha}")
    if not 0.0 < q <= 1.0:
        raise ValueError(f"participation must be in (0, 1], got {q}")
    if q == 1.0:
        return ef21_step(s, alpha)
    theta, beta = (1.0, 0.0) if alpha == 1.0 else _ef21_constants(alpha)
    rho = q * theta / (2.0 * (1.0 - q))
    theta_q, beta_q = q * theta / 2.0, q * beta + (1.0 - q) * (1.0 + 1.0 / rho)
    return 1.0 / (s.L + s.L_tilde * math.sqrt(beta_q / theta_q))


def unbiased_omega(compressor: Compressor | None, dim: int, method: str) -> float:
    """``omega`` of ``compressor`` (0 for none) for a ``method`` whose theorem needs it finite.

    Raises
    ------
    ConfigError
        On ``compressor.name``, listing the unbiased compressors, when ``omega`` is infinite.
    """
    omega = 0.0 if compressor is None else compressor.omega(dim)
    if not math.isfinite(omega):
        unbiased = [n for n in COMPRESSORS.names() if getattr(COMPRESSORS.get(n), "unbiased", 0)]
        raise ConfigError("compressor.name", f"{method} needs an unbiased compressor", unbiased)
    return omega


def contraction(compressor: Compressor | None, dim: int, method: str) -> float:
    """``alpha`` of ``compressor`` (1 for none) for a ``method`` whose theorem needs it > 0.

    Raises
    ------
    ConfigError
        On ``compressor``, saying how to get a contractive one, when ``alpha`` is 0.
    """
    alpha = 1.0 if compressor is None else compressor.alpha(dim)
    if alpha <= 0.0:
        shown = type(compressor).__name__ if compressor is not None else ""
        raise ConfigError(
            "compressor",
            f"{method} needs a contractive compressor; {shown}"
            " is not (use topk, or set compressor.scaled = true)",
        )
    return alpha
