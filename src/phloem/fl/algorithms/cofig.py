"""COFIG: compressed federated learning with client-variance reduction (shifts).

Zhao, Burlachenko, Li, Richtarik. "Faster Rates for Compressed Federated Learning with
Client-Variance Reduction." SIAM J. Math. Data Sci. 6(1), 2024 (arXiv:2112.13097, 2021),
Algorithm 1 (COFIG).

Every client keeps a shift ``h_i`` (``h_i^0 = 0``) and the server keeps
``h = sum_i w_i h_i`` exactly. In round ``t`` a cohort ``S_t`` (``[sampling]``) is drawn; each
member sends ``c_i = C(grad f_i(x^t) - h_i^t)``, and

    g^t     = h^t + sum_{i in S_t} w_i c_i / sum_{i in S_t} w_i,
    x^{t+1} = x^t - eta g^t,
    h_i^{t+1} = h_i^t + alpha c_i  (i in S_t; the others keep theirs),
    h^{t+1}   = h^t + alpha sum_{i in S_t} w_i c_i.

For equal weights this is the paper's ``g^t = h^t + (1/S) sum_{i in S_t} c_i`` and
``h^{t+1} = h^t + (alpha / N) sum_{i in S_t} c_i``. The shifts learn ``grad f_i(x*)``, so the
compression variance *and* the client variance (the spread of ``grad f_i(x*)`` that makes
compressed partial-participation SGD stall) vanish at the optimum: on a strongly convex problem
COFIG converges to ``x*`` itself, not to a neighbourhood, without ever contacting every client
(the paper's convex rate ``O((1 + omega) sqrt(N) / (S eps))`` has no floor).

Interpretation: the paper draws the clients that update their shifts, ``S~_t``, independently of
``S_t`` (for its proof). A phloem round has one cohort, and a client cannot tell which of two
server-drawn sets it is in, so here ``S~_t = S_t`` and a member's one compressed vector serves
both updates -- as in FL_PyTorch, in which the paper's experiments were run. In its updates this
is DIANA under partial participation; ``cofig`` names the paper's method and defaults. Default
``alpha = 1 / (1 + omega)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch

from phloem.fl.algorithms.base import Aggregate, Algorithm, ClientRng, Message, compress
from phloem.fl.algorithms.diana import GradientDifference
from phloem.fl.local import FullGradient, LocalSolver
from phloem.fl.problem import ClientOracle
from phloem.fl.registries import ALGORITHMS
from phloem.fl.server_opt import OptState

__all__ = ["Cofig", "CofigParams", "CofigServer", "shift_step"]


def shift_step(alpha: float | None, compressor: object, d: int) -> float:
    """``alpha``, or ``1 / (1 + omega)`` of ``compressor`` (a :class:`Compressor` or ``None``)."""
    if alpha is not None:
        return float(alpha)
    omega = 0.0 if compressor is None else float(compressor.omega(d))  # type: ignore[attr-defined]
    return 1.0 / (1.0 + omega)


@dataclass(frozen=True)
class CofigParams:
    """``alpha``: the shift step in (0, 1]; empty takes ``1 / (1 + omega)``."""

    alpha: float | None = None

    def __post_init__(self) -> None:
        a = self.alpha
        if a is not None and not (isinstance(a, float | int) and 0.0 < a <= 1.0):
            raise ValueError(f"algorithm.alpha must be in (0, 1], got {a}")


@dataclass(frozen=True)
class CofigServer:
    """``x = x^t``, the mean shift ``h = sum_i w_i h_i`` and optimiser state."""

    x: torch.Tensor
    h: torch.Tensor
    opt: OptState = field(default_factory=OptState)


@ALGORITHMS.register
@dataclass(frozen=True)
class Cofig(Algorithm[CofigServer, torch.Tensor, GradientDifference]):
    """COFIG: compressed shifted gradients of a partial cohort, shifts learnt (``S~ = S``)."""

    name: ClassVar[str] = "cofig"
    description: ClassVar[str] = (
        "compressed PP with client-variance reduction (Zhao et al., SIAM J. Math. Data Sci. 2024)"
    )
    Params: ClassVar[type[CofigParams]] = CofigParams
    local: LocalSolver = field(default_factory=FullGradient)
    alpha: float | None = None

    def __post_init__(self) -> None:
        CofigParams(self.alpha)

    def init_server(
        self, x0: torch.Tensor, client_states: Sequence[torch.Tensor], weights: np.ndarray
    ) -> CofigServer:
        h = torch.zeros_like(x0)
        for hi, wi in zip(client_states, weights, strict=True):
            h.add_(hi, alpha=float(wi))
        return CofigServer(x0, h)

    def init_client(
        self, x0: torch.Tensor, oracle: ClientOracle, gen: torch.Generator
    ) -> torch.Tensor:
        return torch.zeros_like(x0)

    def client_update(
        self, server: CofigServer, state: torch.Tensor, oracle: ClientOracle, rng: ClientRng
    ) -> tuple[Message[GradientDifference], torch.Tensor]:
        gr = self.local.gradient(oracle, server.x, rng.local)
        c, bits = compress(self.compressor, gr.grad - state, rng.compression)
        h = state + shift_step(self.alpha, self.compressor, c.numel()) * c
        return Message(GradientDifference(c), bits, gr.loss, gr.samples), h

    def server_update(
        self,
        server: CofigServer,
        aggregate: Aggregate[GradientDifference],
        gen: np.random.Generator,
    ) -> CofigServer:
        g = server.h + aggregate.mean(lambda u: u.delta)
        x, opt = self.server_opt.step(server.x, g, server.opt)
        alpha = shift_step(self.alpha, self.compressor, server.x.numel())
        h = server.h + alpha * aggregate.total(lambda u: u.delta)
        return CofigServer(x, h, opt)
