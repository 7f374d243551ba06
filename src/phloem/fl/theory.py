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
- ProxSkip / Scaffnew: the local step ``gamma = 1 / max_i L_i`` -- Mishchenko, Malinovsky,
  Stich, Richtarik, ICML 2022 (every ``f_i`` ``L``-smooth and ``mu``-strongly convex: the
  Lyapunov function contracts by ``1 - min(gamma mu, p^2)`` per iteration, so
  ``p = sqrt(mu / L)`` gives ``O(sqrt(L / mu) log 1/eps)`` communications). An empty
  ``algorithm.p`` takes that value, ``sqrt(mu / max_i L_i)`` (:func:`proxskip_probability`),
  when ``mu`` is known.
- GradSkip: the same local step ``gamma = 1 / max_i L_i`` -- Maranjyan, Safaryan, Richtarik,
  "GradSkip", 2022 (arXiv:2210.16402), its linear-convergence theorem for GradSkip (every
  ``f_i`` ``L_i``-smooth and ``mu_i``-strongly convex, exact gradients): ``gamma <= min_i
  1/L_i``, any ``p`` and ``q_i`` in (0, 1]; the ``q_i`` enter the rate, not the step
  (``q_i = 1`` is ProxSkip's theorem).
- EF21-BC with an uncompressed broadcast (``[downlink] name = "none"``): the method is EF21,
  and so is its step; the paper's EF21-BC theorem for a compressed broadcast couples the two
  contraction constants in a way not reproduced here (no step then).
- EF21 (contractive ``alpha``): ``1 / (L + L_tilde sqrt(beta / theta))`` with
  ``theta = 1 - sqrt(1 - alpha)``, ``beta = (1 - alpha) / (1 - sqrt(1 - alpha))`` -- Richtarik,
  Sokolov, Fatkhullin, NeurIPS 2021, Theorem 1.
- EF21-PP (each client taking part with probability ``q``): the same with ``theta_q = q theta / 2``
  and ``beta_q = q beta + (1 - q)(1 + 1/rho)``, ``rho = q theta / (2 (1 - q))`` -- Fatkhullin et
  al., "EF21 with Bells & Whistles", 2021 (its EF21-PP argument, worked out for equal
  ``p_i = q``; see ``phloem.fl.algorithms.ef21_pp``).

The local methods bound the clients' step ``eta_l`` (``[local] lr``) instead, in terms of
``L_client = max_i L(f_i)``, the largest smoothness constant of a client's own objective (the
one its local steps descend on; ``= L_max`` when the weights are equal):

- FedAvg / local GD (full local gradients, server lr 1): ``1 / (4 L_client)`` -- Khaled,
  Mishchenko, Richtarik, "Tighter Theory for Local SGD on Identical and Heterogeneous Data",
  AISTATS 2020: their heterogeneous-data analysis of local GD (convex, L-smooth f_m, uniform
  average over all M clients) assumes ``gamma <= 1/(4L)``. The bound does not shrink with the
  number of local steps ``H``; the error term it leaves (from the clients' drift, growing
  with ``gamma^2 (H-1)^2``) means FedAvg converges to a neighbourhood of ``x*``, not to it.
- SCAFFOLD: ``1 / (81 L_client K eta_g)`` with ``K`` local steps and server step ``eta_g`` --
  Karimireddy, Kale, Mohri, Reddi, Stich, Suresh, "SCAFFOLD", ICML 2020, Theorem III (convex
  and mu-strongly convex cases: ``eta_l <= 1 / (81 beta K eta_g)``, beta-smooth ``f_i``). The
  strongly convex case also asks ``eta_l <= S / (15 mu N K eta_g)`` (``S`` of ``N`` clients
  sampled), which binds only when ``S / N < 15 mu / (81 L)``; it is not applied here.

No step is given (``lr_rule = "theory"`` names the methods that have one) for COFIG and FRECON
(Zhao et al.: their theorems' numerical constants could not be checked), FedDyn (Acar et al.,
ICLR 2021: the theorem assumes exactly solved local problems and is stated in ``alpha``),
FedNova (Wang et al., NeurIPS 2020: a horizon-dependent learning rate), FedProx, and EF21-BC
with a compressed broadcast (see each module).

Smoothness is computed once per problem (``Problem.smoothness``) with torch pinned to one
thread (:func:`pinned_threads`), so the constants, and the theory steps, are the same bits
whatever the machine's thread count.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from phloem.core.errors import ConfigError
from phloem.fl.registries import COMPRESSORS

if TYPE_CHECKING:
    from phloem.fl.compressors.base import Compressor

__all__ = [
    "Smoothness",
    "check_plain_local_method",
    "contraction",
    "dcgd_step",
    "diana_step",
    "ef21_pp_step",
    "ef21_step",
    "gd_step",
    "local_gd_step",
    "marina_step",
    "page_step",
    "pinned_threads",
    "pp_marina_step",
    "proxskip_probability",
    "proxskip_step",
    "require_unbiased",
    "scaffold_step",
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
    L_client
        ``max_i L(f_i)``: the largest constant of a client's own (unscaled) objective, or
        ``None`` when unknown.
    """

    L: float
    L_max: float
    L_tilde: float
    n: int
    mu: float | None = None
    L_client: float | None = None

    @property
    def local_smoothness(self) -> float:
        """``max_i L(f_i)`` (``L_client``), or ``L_max`` when it is not known."""
        return self.L_client if self.L_client is not None else self.L_max

    @property
    def condition_number(self) -> float:
        """``L / mu`` (``inf`` when ``mu`` is unknown or zero)."""
        return self.L / self.mu if self.mu else math.inf


def smoothness_from_clients(
    L: float, client_L: np.ndarray, weights: np.ndarray, mu: float | None = None
) -> Smoothness:
    """Build :class:`Smoothness` from ``f``'s constant and the clients' own ``L_i``."""
    n = len(client_L)
    own = np.asarray(client_L, dtype=np.float64)
    scaled = n * np.asarray(weights, dtype=np.float64) * own
    return Smoothness(
        float(L), float(scaled.max()), float(np.sqrt(np.mean(scaled**2))), n, mu, float(own.max())
    )


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


def proxskip_step(s: Smoothness) -> float:
    """ProxSkip / Scaffnew: ``1 / max_i L_i`` (every ``f_i`` must be smooth with that constant).

    Falls back to ``1 / L_max`` when the clients' own constants are unknown (equal for equal
    weights).
    """
    return 1.0 / (s.L_client if s.L_client is not None else s.L_max)


def proxskip_probability(s: Smoothness) -> float | None:
    """ProxSkip's communication probability ``p = sqrt(mu / max_i L_i)`` (``None``: ``mu``
    unknown).

    The Lyapunov function contracts by ``1 - min(gamma mu, p^2)`` per iteration; with
    ``gamma = 1 / max_i L_i`` this ``p`` balances the two terms, for ``O(sqrt(L / mu) log
    1/eps)`` communications (Mishchenko et al., ICML 2022). The theorem's ``mu`` is every
    ``f_i``'s; ``Smoothness.mu`` is ``f``'s, at least ``min_i mu_i``, so the ``p`` here is at
    least the theorem's balanced one (any ``p`` in (0, 1] converges).
    """
    if s.mu is None or not s.mu > 0:
        return None
    return min(1.0, math.sqrt(s.mu / s.local_smoothness))


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


def local_gd_step(s: Smoothness) -> float:
    """FedAvg / local GD: ``1 / (4 L_client)`` (Khaled et al., AISTATS 2020)."""
    return 1.0 / (4.0 * s.local_smoothness)


def scaffold_step(s: Smoothness, local_steps: int, server_lr: float) -> float:
    """SCAFFOLD: ``1 / (81 L_client K eta_g)`` (Karimireddy et al., ICML 2020, Theorem III)."""
    if local_steps < 1:
        raise ValueError(f"local_steps must be >= 1, got {local_steps}")
    if not server_lr > 0:
        raise ValueError(f"server_lr must be > 0, got {server_lr}")
    return 1.0 / (81.0 * s.local_smoothness * local_steps * server_lr)


@contextlib.contextmanager
def pinned_threads(threads: int = 1) -> Iterator[None]:
    """Run the body with torch pinned to ``threads`` intra-op threads; restore the count after.

    Kernels may sum in another order with another thread count; smoothness constants computed
    under this context are the same bits on every machine.
    """
    import torch  # here, so that importing this module stays cheap

    before = torch.get_num_threads()
    if before != threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def check_plain_local_method(
    method: str, compressor: object, server_opt: object, local: object
) -> None:
    """Refuse what the local methods' theorems leave out: compression, server momentum and
    the local solver's momentum or weight decay.

    Raises
    ------
    ConfigError
        Naming the field at fault.
    """
    if compressor is not None:
        raise ConfigError(
            "compressor.name", f"{method}'s theory step assumes no compression", ["none"]
        )
    for field, part in (("server.momentum", server_opt), ("local.momentum", local)):
        if getattr(part, "momentum", 0.0):
            raise ConfigError(field, f"must be 0 for {method}'s theory step (plain SGD steps)")
    if getattr(local, "weight_decay", 0.0):
        raise ConfigError("local.weight_decay", f"must be 0 for {method}'s theory step")


def unbiased_omega(compressor: Compressor | None, dim: int, method: str) -> float:
    """``omega`` of ``compressor`` (0 for none) for a ``method`` whose theorem needs it finite.

    Raises
    ------
    ConfigError
        On ``compressor.name``, listing the unbiased compressors, when ``omega`` is infinite.
    """
    omega = 0.0 if compressor is None else compressor.omega(dim)
    if not math.isfinite(omega):
        require_unbiased(None, method, force=True)
    return omega


def require_unbiased(compressor: Compressor | None, method: str, *, force: bool = False) -> None:
    """Refuse a biased ``compressor`` (Top-K, sign, rank-K, ``scaled``, a mixture with a biased
    part) for a ``method`` whose estimator and shift steps are built for unbiased ones (its
    ``omega`` would be infinite, so its shift step ``1 / (1 + omega)`` silently 0).

    Raises
    ------
    ConfigError
        On ``compressor.name``, listing the unbiased compressors.
    """
    if compressor is not None and compressor.name == "scaled":
        raise ConfigError(
            "compressor.scaled",
            f"{method} needs an unbiased compressor; scaled = true makes it contractive (biased)",
            ["false"],
        )
    if force or (compressor is not None and not compressor.unbiased):
        unbiased = [n for n in COMPRESSORS.names() if getattr(COMPRESSORS.get(n), "unbiased", 0)]
        raise ConfigError("compressor.name", f"{method} needs an unbiased compressor", unbiased)


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
