"""COFIG: compressed federated learning with client-variance reduction (shifts).

Zhao, Burlachenko, Li, Richtarik. "Faster Rates for Compressed Federated Learning with
Client-Variance Reduction." SIAM J. Math. Data Sci. 6(1), 2024 (arXiv:2112.13097, 2021),
Algorithm 1 (COFIG).

Every client keeps a shift ``h_i`` (``h_i^0 = 0``) and the server keeps
``h = sum_i w_i h_i`` exactly. In round ``t`` two cohorts of the same size are drawn
independently: ``S_t`` (``[sampling]``) and ``S~_t``. Each member of either computes
``c_i = C(grad f_i(x^t) - h_i^t)`` and

    g^t     = h^t + sum_{i in S_t} w_i c_i / sum_{i in S_t} w_i,
    x^{t+1} = x^t - eta g^t,
    h_i^{t+1} = h_i^t + alpha c_i  (i in S~_t; the others keep theirs),
    h^{t+1}   = h^t + alpha sum_{i in S~_t} w_i c_i.

For equal weights this is the paper's ``g^t = h^t + (1/S) sum_{i in S_t} c_i`` and
``h^{t+1} = h^t + (alpha / N) sum_{i in S~_t} c_i``. The shifts learn ``grad f_i(x*)``, so the
compression variance *and* the client variance (the spread of ``grad f_i(x*)`` that makes
compressed partial-participation SGD stall) vanish at the optimum: on a strongly convex problem
COFIG converges to ``x*`` itself, not to a neighbourhood, without ever contacting every client
(the paper's convex rate ``O((1 + omega) sqrt(N) / (S eps))`` has no floor).

Reconstructed from the paper (the detail to check against its box): the shift cohort ``S~_t``
is drawn independently of ``S_t`` for the analysis; FL_PyTorch's implementation notes
``S~ = S`` as its simplification. ``algorithm.shift_cohort = "independent"`` (the default) is the
paper's Algorithm 1: a member
of ``S~_t`` sends ``c_i`` for the shift update, a member of ``S_t`` for the gradient, and a
member of both sends one compressed vector that serves both (the paper writes the same
``C_i(grad f_i(x^t) - h_i^t)`` in both places). ``shift_cohort = "same"`` takes ``S~_t = S_t``,
as FL_PyTorch (in which the paper's experiments ran) does; that is DIANA under partial
participation. The server draws ``S~_t`` from the round's own stream and broadcasts each
participant's part with the model (two flags, counted as downlink bits). So that the server can
normalise over ``S_t`` under secure aggregation, each uplink carries ``1`` for a member of
``S_t`` (``one``; not counted as uplink bits, since a real server knows whom it sampled).
Default ``alpha = 1 / (1 + omega)``.

No theory step size (``server.lr_rule = "theory"`` says so): the paper's theorems bound the
number of rounds (non-convex: ``O((1 + omega)^(3/2) sqrt(N) / (S eps^2) + (1 + omega) N^(2/3) /
(S eps^2))`` for COFIG, ``O((1 + omega) sqrt(N) / (S eps^2))`` for FRECON; convex COFIG:
``O((1 + omega) sqrt(N) / (S eps))``) with step sizes in ``L``, ``omega`` and ``S / N`` whose
numerical constants could not be checked here, so none is implemented rather than a guessed one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
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
from phloem.fl.compressors.base import FLOAT_BITS, Compressor
from phloem.fl.local import FullGradient, LocalSolver
from phloem.fl.problem import ClientOracle
from phloem.fl.registries import ALGORITHMS
from phloem.fl.server_opt import OptState
from phloem.fl.theory import require_unbiased

__all__ = [
    "Cofig",
    "CofigParams",
    "CofigServer",
    "CofigUplink",
    "Roles",
    "ShiftCohort",
    "draw_roles",
    "shift_step",
]


class ShiftCohort(StrEnum):
    """Which clients update their shifts: a second cohort drawn independently (the paper's
    algorithm), or the gradient cohort itself."""

    INDEPENDENT = "independent"
    SAME = "same"


def shift_step(alpha: float | None, compressor: Compressor | None, d: int) -> float:
    """``alpha``, or ``1 / (1 + omega)`` of ``compressor``."""
    if alpha is not None:
        return float(alpha)
    omega = 0.0 if compressor is None else compressor.omega(d)
    return 1.0 / (1.0 + omega)


@dataclass(frozen=True)
class Roles:
    """Each client's part in the round (bool, one per client): in ``S_t`` (``grad``), in
    ``S~_t`` (``shift``)."""

    grad: torch.Tensor
    shift: torch.Tensor

    @staticmethod
    def none(n: int) -> Roles:
        empty = torch.zeros(n, dtype=torch.bool)
        return Roles(empty, empty)

    def cohort(self) -> np.ndarray:
        """The clients with a part: ``S_t | S~_t``."""
        return np.flatnonzero((self.grad | self.shift).numpy()).astype(np.int64)


def draw_roles(sampled: np.ndarray, n: int, gen: np.random.Generator, how: ShiftCohort) -> Roles:
    """``S_t`` = ``sampled``; ``S~_t`` the same set, or as many clients drawn uniformly without
    replacement from ``gen``."""
    grad = torch.zeros(n, dtype=torch.bool)
    grad[torch.from_numpy(np.asarray(sampled, dtype=np.int64))] = True
    if how is ShiftCohort.SAME:
        return Roles(grad, grad)
    shift = torch.zeros(n, dtype=torch.bool)
    picked = gen.choice(n, size=len(sampled), replace=False)
    shift[torch.from_numpy(np.asarray(picked, dtype=np.int64))] = True
    return Roles(grad, shift)


@dataclass(frozen=True)
class CofigParams:
    """``alpha``: the shift step in (0, 1] (empty: ``1 / (1 + omega)``); ``shift_cohort``:
    ``independent`` (the paper) or ``same``."""

    alpha: float | None = None
    shift_cohort: ShiftCohort = ShiftCohort.INDEPENDENT

    def __post_init__(self) -> None:
        a = self.alpha
        if a is not None and not (isinstance(a, float | int) and 0.0 < a <= 1.0):
            raise ValueError(f"algorithm.alpha must be in (0, 1], got {a}")
        if self.shift_cohort not in set(ShiftCohort):
            raise ValueError(
                f"algorithm.shift_cohort must be 'independent' or 'same', got {self.shift_cohort!r}"
            )


@dataclass(frozen=True)
class CofigUplink(Uplink):
    """``u = c_i`` from a member of ``S_t`` (else 0), ``v = c_i`` from a member of ``S~_t``
    (else 0), with ``c_i = C(grad f_i(x^t) - h_i)``; ``one`` is 1 for a member of ``S_t``."""

    u: torch.Tensor
    v: torch.Tensor
    one: torch.Tensor


def roles_uplink(c: torch.Tensor, in_grad: bool, in_shift: bool) -> CofigUplink:
    """The uplink of a client with compressed vector ``c`` and its parts."""
    zero = torch.zeros_like(c)
    one = torch.ones(1, dtype=c.dtype) if in_grad else torch.zeros(1, dtype=c.dtype)
    return CofigUplink(c if in_grad else zero, c if in_shift else zero, one)


@dataclass(frozen=True)
class CofigServer:
    """``x = x^t``, the mean shift ``h = sum_i w_i h_i``, this round's roles, optimiser state."""

    x: torch.Tensor
    h: torch.Tensor
    roles: Roles
    opt: OptState = field(default_factory=OptState)


@ALGORITHMS.register
@dataclass(frozen=True)
class Cofig(Algorithm[CofigServer, torch.Tensor, CofigUplink]):
    """COFIG: compressed shifted gradients of a partial cohort; shifts learnt by a second one."""

    name: ClassVar[str] = "cofig"
    description: ClassVar[str] = (
        "compressed PP with client-variance reduction (Zhao et al., SIAM J. Math. Data Sci. 2024)"
    )
    Params: ClassVar[type[CofigParams]] = CofigParams
    local: LocalSolver = field(default_factory=FullGradient)
    alpha: float | None = None
    shift_cohort: ShiftCohort = ShiftCohort.INDEPENDENT

    def __post_init__(self) -> None:
        CofigParams(self.alpha, self.shift_cohort)
        require_unbiased(self.compressor, self.name)
        object.__setattr__(self, "shift_cohort", ShiftCohort(self.shift_cohort))

    def init_server(
        self, x0: torch.Tensor, client_states: Sequence[torch.Tensor], weights: np.ndarray
    ) -> CofigServer:
        h = weighted_sum(client_states, weights)
        return CofigServer(x0, h, Roles.none(len(weights)))

    def init_client(
        self, x0: torch.Tensor, oracle: ClientOracle, gen: torch.Generator
    ) -> torch.Tensor:
        return torch.zeros_like(x0)

    def begin_round(
        self, server: CofigServer, sampled: np.ndarray, num_clients: int, gen: np.random.Generator
    ) -> CofigServer:
        return replace(server, roles=draw_roles(sampled, num_clients, gen, self.shift_cohort))

    def round_cohort(
        self, server: CofigServer, sampled: np.ndarray, num_clients: int
    ) -> np.ndarray:
        return server.roles.cohort()

    def client_update(
        self, server: CofigServer, state: torch.Tensor, oracle: ClientOracle, rng: ClientRng
    ) -> tuple[Message[CofigUplink], torch.Tensor]:
        in_grad = bool(server.roles.grad[rng.client])
        in_shift = bool(server.roles.shift[rng.client])
        gr = self.local.gradient(oracle, server.x, rng.local)
        c, bits = compress(self.compressor, gr.grad - state, rng.compression)
        h = state + shift_step(self.alpha, self.compressor, c.numel()) * c if in_shift else state
        return Message(roles_uplink(c, in_grad, in_shift), bits, gr.loss, gr.samples), h

    def downlink_bits(self, server: CofigServer) -> int:
        # the model, and the participant's part: two flags (in S_t, in S~_t)
        return FLOAT_BITS * server.x.numel() + 2

    def server_update(
        self, server: CofigServer, aggregate: Aggregate[CofigUplink], gen: np.random.Generator
    ) -> CofigServer:
        share = float(aggregate.total(lambda u: u.one)[0])  # sum of w_i over S_t
        g = server.h.clone()
        if share > 0:
            g.add_(aggregate.total(lambda u: u.u), alpha=1.0 / share)
        x, opt = self.server_opt.step(server.x, g, server.opt)
        alpha = shift_step(self.alpha, self.compressor, server.x.numel())
        h = server.h + alpha * aggregate.total(lambda u: u.v)
        return CofigServer(x, h, server.roles, opt)
