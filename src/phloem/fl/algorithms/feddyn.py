"""FedDyn: federated learning with dynamic regularisation.

Acar, Zhao, Navarro, Mattina, Whatmough, Saligrama. "Federated Learning Based on Dynamic
Regularization." ICLR 2021 (Algorithm 1).

Client ``i`` keeps ``g_i`` (the gradient of its last local solution; zero at start) and, from
the server model ``x``, approximately minimises with its local solver

    f_i(y) - <g_i, y> + alpha/2 ||y - x||^2

(its oracle wrapped in :class:`~phloem.fl.problem.ProximalOracle` and
:class:`~phloem.fl.problem.ShiftedOracle`), sends ``delta_i = y_i - x`` and updates
``g_i <- g_i - alpha delta_i`` (``= grad f_i(y_i)`` when the local problem is solved exactly).
The server keeps ``h = sum_i w_i g_i`` exactly, also under partial participation,

    h <- h - alpha sum_{i in S} w_i delta_i,    x <- sum_{i in S} p_i y_i - h / alpha

(``w_i = 1/m`` and ``p_i = 1/|S|``: the paper's ``h <- h - alpha/m sum (y_i - x)`` and
``x <- mean(y_i) - h/alpha``). The step is taken by the server optimiser along
``h/alpha - mean(delta_i)`` (``server.lr = 1``: the paper). At a fixed point every
``y_i = x`` and ``sum_i w_i grad f_i(x) = h = 0``: with accurately solved local problems the
method converges to the exact optimum of ``f`` despite heterogeneous clients, under full and
partial participation.

No theory step size (``server.lr_rule = "theory"`` says so): the paper's convergence theorem
assumes each client's local problem is solved exactly (``y_i`` its minimiser), and its rates are
stated in terms of ``alpha`` (and ``L``), not of a gradient step; the local solver's ``lr``,
which only approximates that minimiser, is not covered by it, so none is given here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch

from phloem.fl.algorithms.base import (
    Aggregate,
    Algorithm,
    ClientRng,
    Message,
    compress,
)
from phloem.fl.algorithms.fedavg import ModelDelta
from phloem.fl.local import LocalSolver, MinibatchSGD
from phloem.fl.problem import ClientOracle, ProximalOracle, ShiftedOracle
from phloem.fl.registries import ALGORITHMS
from phloem.fl.server_opt import OptState

__all__ = ["FedDyn", "FedDynParams", "FedDynServer"]


@dataclass(frozen=True)
class FedDynParams:
    """``alpha``: strength of the dynamic regulariser, ``> 0`` (the paper tries 0.1 to 0.001)."""

    alpha: float = 0.01

    def __post_init__(self) -> None:
        if not self.alpha > 0:  # false for NaN too
            raise ValueError(f"algorithm.alpha must be > 0, got {self.alpha}")


@dataclass(frozen=True)
class FedDynServer:
    """Model, ``h = sum_i w_i g_i`` and optimiser state."""

    x: torch.Tensor
    h: torch.Tensor
    opt: OptState = field(default_factory=OptState)


@ALGORITHMS.register
@dataclass(frozen=True)
class FedDyn(Algorithm[FedDynServer, torch.Tensor, ModelDelta]):
    """FedDyn; the client state is ``g_i`` (zeros at start)."""

    name: ClassVar[str] = "feddyn"
    description: ClassVar[str] = "dynamic regularisation (Acar et al., ICLR 2021)"
    Params: ClassVar[type[FedDynParams]] = FedDynParams
    local: LocalSolver = field(default_factory=MinibatchSGD)
    alpha: float = 0.01

    def __post_init__(self) -> None:
        FedDynParams(self.alpha)

    def init_server(
        self, x0: torch.Tensor, client_states: Sequence[torch.Tensor], weights: np.ndarray
    ) -> FedDynServer:
        return FedDynServer(x0, torch.zeros_like(x0))

    def init_client(
        self, x0: torch.Tensor, oracle: ClientOracle, gen: torch.Generator
    ) -> torch.Tensor:
        return torch.zeros_like(x0)

    def local_objective(
        self, oracle: ClientOracle, x: torch.Tensor, g: torch.Tensor
    ) -> ClientOracle:
        """``f_i(y) - <g_i, y> + alpha/2 ||y - x||^2``."""
        return ShiftedOracle(ProximalOracle(oracle, x, self.alpha), -g)

    def client_update(
        self, server: FedDynServer, state: torch.Tensor, oracle: ClientOracle, rng: ClientRng
    ) -> tuple[Message[ModelDelta], torch.Tensor]:
        res = self.local.run(self.local_objective(oracle, server.x, state), server.x, rng.local)
        delta, bits = compress(self.compressor, res.x - server.x, rng.compression)
        # The client keeps the g_i that the server's h accounts for.
        return Message(ModelDelta(delta), bits, res.loss, res.samples), state - self.alpha * delta

    def server_update(
        self, server: FedDynServer, aggregate: Aggregate[ModelDelta], gen: np.random.Generator
    ) -> FedDynServer:
        h = server.h - self.alpha * aggregate.total(lambda u: u.delta)
        direction = h / self.alpha - aggregate.mean(lambda u: u.delta)
        x, opt = self.server_opt.step(server.x, direction, server.opt)
        return FedDynServer(x, h, opt)
