"""FRECON: COFIG's shifts with a recursive (SARAH-type) gradient estimator.

Zhao, Burlachenko, Li, Richtarik. "Faster Rates for Compressed Federated Learning with
Client-Variance Reduction." SIAM J. Math. Data Sci. 6(1), 2024 (arXiv:2112.13097, 2021),
Algorithm 2 (FRECON).

Clients keep shifts ``h_i`` (``h_i^0 = 0``), the server ``h = sum_i w_i h_i``, the previous
point ``x^{t-1}`` and estimator ``g^{t-1}`` (``x^{-1} = x^0``, ``g^{-1} = h^0 = 0``). In round
``t`` two cohorts of the same size are drawn independently, ``S_t`` (``[sampling]``) and
``S~_t``, as in COFIG. Each member of ``S_t`` sends, on one minibatch,

    u_i = C(grad f_i(x^t) - h_i^t),        q_i = C(grad f_i(x^t) - grad f_i(x^{t-1})),

(two independent compressions); each member of ``S~_t`` sends ``u_i`` (once if it is in both)
and moves ``h_i^{t+1} = h_i^t + alpha u_i``. With ``mean`` the weighted mean over ``S_t``, the
server forms the compressed ZeroSARAH-type estimator

    g^t = mean(q) + (1 - lambda) g^{t-1} + lambda (h^t + mean(u)),

steps ``x^{t+1} = x^t - eta g^t`` and keeps ``h^{t+1} = h^t + alpha sum_{i in S~_t} w_i u_i``.
The recursive part tracks the gradient's change at the cost of one compressed difference; the
``lambda`` part (a COFIG estimator) pulls the recursion back to the truth, and the shifts make
both errors vanish at ``x*``: FRECON converges to the exact optimum of a strongly convex problem
under partial participation and compression.

Defaults as in the paper's theory: ``alpha = 1 / (1 + omega)`` and ``lambda = S / (2 (1 + omega)
N)``, where ``S / N`` is taken as the cohort's share of the weight, ``sum_{i in S_t} w_i`` (equal
to ``S / N`` for equal weights). To let the server compute it under secure aggregation, each
uplink carries the number 1 (``one``), whose weighted total is that share; it is not counted as
uplink bits, since a real server knows whom it sampled. ``algorithm.shift_cohort`` as in ``cofig``
(``same``: ``S~_t = S_t``, as FL_PyTorch runs it). Two interpretations: the compressions of
``u_i`` and ``q_i`` are independent draws, and ``x^{-1} = x^0``, ``g^{-1} = h^0``. Downlink:
``x^t`` and ``x^{t-1}`` (a member may have missed the previous round), and the member's two role
flags.

No theory step size (``server.lr_rule = "theory"`` says so): the paper's theorems bound the
number of rounds (non-convex: ``O((1 + omega)^(3/2) sqrt(N) / (S eps^2) + (1 + omega) N^(2/3) /
(S eps^2))`` for COFIG, ``O((1 + omega) sqrt(N) / (S eps^2))`` for FRECON; convex COFIG:
``O((1 + omega) sqrt(N) / (S eps))``) with step sizes in ``L``, ``omega`` and ``S / N`` whose
numerical constants could not be checked here, so none is implemented rather than a guessed one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import ClassVar

import numpy as np
import torch

from phloem.fl.algorithms.base import (
    Aggregate,
    Algorithm,
    ClientRng,
    Message,
    Uplink,
    compress,
    weighted_sum,
)
from phloem.fl.algorithms.cofig import Roles, ShiftCohort, draw_roles, shift_step
from phloem.fl.compressors.base import FLOAT_BITS
from phloem.fl.local import FullGradient, LocalSolver
from phloem.fl.problem import ClientOracle
from phloem.fl.registries import ALGORITHMS
from phloem.fl.server_opt import OptState
from phloem.fl.theory import require_unbiased

__all__ = ["Frecon", "FreconParams", "FreconServer", "FreconUplink"]


@dataclass(frozen=True)
class FreconParams:
    """``alpha``: shift step in (0, 1] (empty: ``1 / (1 + omega)``); ``lam``: the weight of
    the COFIG estimator, in (0, 1] (empty: ``S / (2 (1 + omega) N)``); ``shift_cohort``:
    ``independent`` (the paper) or ``same``."""

    alpha: float | None = None
    lam: float | None = None
    shift_cohort: ShiftCohort = ShiftCohort.INDEPENDENT

    def __post_init__(self) -> None:
        for key in ("alpha", "lam"):
            v = getattr(self, key)
            if v is not None and not (isinstance(v, float | int) and 0.0 < v <= 1.0):
                raise ValueError(f"algorithm.{key} must be in (0, 1], got {v}")
        if self.shift_cohort not in set(ShiftCohort):
            raise ValueError(
                f"algorithm.shift_cohort must be 'independent' or 'same', got {self.shift_cohort!r}"
            )


@dataclass(frozen=True)
class FreconUplink(Uplink):
    """From a member of ``S_t``: ``u = C(grad f_i(x^t) - h_i)``,
    ``q = C(grad f_i(x^t) - grad f_i(x^{t-1}))`` and ``one = 1``; from a member of ``S~_t``:
    ``v = u``. Zeros where the client has no such part."""

    u: torch.Tensor
    q: torch.Tensor
    v: torch.Tensor
    one: torch.Tensor


@dataclass(frozen=True)
class FreconServer:
    """``x = x^t``, ``x_prev = x^{t-1}``, ``g = g^{t-1}``, ``h = sum_i w_i h_i``, roles."""

    x: torch.Tensor
    x_prev: torch.Tensor
    g: torch.Tensor
    h: torch.Tensor
    roles: Roles
    opt: OptState = field(default_factory=OptState)


@ALGORITHMS.register
@dataclass(frozen=True)
class Frecon(Algorithm[FreconServer, torch.Tensor, FreconUplink]):
    """FRECON: shifted compression plus a compressed recursive estimator."""

    name: ClassVar[str] = "frecon"
    description: ClassVar[str] = (
        "COFIG shifts + recursive estimator (Zhao et al., SIAM J. Math. Data Sci. 2024)"
    )
    Params: ClassVar[type[FreconParams]] = FreconParams
    local: LocalSolver = field(default_factory=FullGradient)
    alpha: float | None = None
    lam: float | None = None
    shift_cohort: ShiftCohort = ShiftCohort.INDEPENDENT

    def __post_init__(self) -> None:
        FreconParams(self.alpha, self.lam, self.shift_cohort)
        require_unbiased(self.compressor, self.name)
        object.__setattr__(self, "shift_cohort", ShiftCohort(self.shift_cohort))

    def mixing(self, share: float, d: int) -> float:
        """``lambda`` for a cohort holding ``share`` of the weight (dimension ``d``)."""
        if self.lam is not None:
            return float(self.lam)
        omega = 0.0 if self.compressor is None else self.compressor.omega(d)
        return min(1.0, share / (2.0 * (1.0 + omega)))

    def init_server(
        self, x0: torch.Tensor, client_states: Sequence[torch.Tensor], weights: np.ndarray
    ) -> FreconServer:
        h = weighted_sum(client_states, weights)
        return FreconServer(x0, x0, h.clone(), h, Roles.none(len(weights)))

    def init_client(
        self, x0: torch.Tensor, oracle: ClientOracle, gen: torch.Generator
    ) -> torch.Tensor:
        return torch.zeros_like(x0)

    def begin_round(
        self, server: FreconServer, sampled: np.ndarray, num_clients: int, gen: np.random.Generator
    ) -> FreconServer:
        return replace(server, roles=draw_roles(sampled, num_clients, gen, self.shift_cohort))

    def round_cohort(
        self, server: FreconServer, sampled: np.ndarray, num_clients: int
    ) -> np.ndarray:
        return server.roles.cohort()

    def client_update(
        self, server: FreconServer, state: torch.Tensor, oracle: ClientOracle, rng: ClientRng
    ) -> tuple[Message[FreconUplink], torch.Tensor]:
        in_grad = bool(server.roles.grad[rng.client])
        in_shift = bool(server.roles.shift[rng.client])
        saved = rng.local.get_state()  # the same minibatch at both points
        new = self.local.gradient(oracle, server.x, rng.local)
        u, bits = compress(self.compressor, new.grad - state, rng.compression)
        zero = torch.zeros_like(u)
        q, samples = zero, new.samples
        if in_grad:
            rng.local.set_state(saved)
            old = self.local.gradient(oracle, server.x_prev, rng.local)
            q, bits_q = compress(self.compressor, new.grad - old.grad, rng.compression)
            bits, samples = bits + bits_q, samples + old.samples
        h = state + shift_step(self.alpha, self.compressor, u.numel()) * u if in_shift else state
        one = torch.full((1,), 1.0 if in_grad else 0.0, dtype=u.dtype)
        up = FreconUplink(u if in_grad else zero, q, u if in_shift else zero, one)
        return Message(up, bits, new.loss, samples), h

    def server_update(
        self, server: FreconServer, aggregate: Aggregate[FreconUplink], gen: np.random.Generator
    ) -> FreconServer:
        d = server.x.numel()
        share = float(aggregate.total(lambda u: u.one)[0])  # sum of w_i over S_t
        g = (1.0 - self.mixing(share, d)) * server.g
        if share > 0:
            lam = self.mixing(share, d)
            mean_u = aggregate.total(lambda u: u.u) / share
            g = aggregate.total(lambda u: u.q) / share + g + lam * (server.h + mean_u)
        x, opt = self.server_opt.step(server.x, g, server.opt)
        h = server.h + shift_step(self.alpha, self.compressor, d) * aggregate.total(lambda u: u.v)
        return FreconServer(x, server.x, g, h, server.roles, opt)

    def downlink_bits(self, server: FreconServer) -> int:
        return 2 * FLOAT_BITS * server.x.numel() + 2  # and the two role flags
