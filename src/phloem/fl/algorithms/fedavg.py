"""FedAvg: Federated Averaging.

McMahan, Moore, Ramage, Hampson, Aguera y Arcas. "Communication-Efficient Learning of Deep
Networks from Decentralized Data." AISTATS 2017.

Each sampled client runs its local solver from the server model ``x`` and sends
``delta_i = x_i - x`` (optionally compressed). The server averages the deltas with weights
proportional to the clients' weights and steps along the pseudo-gradient ``-mean(delta)``
with its server optimiser (server lr 1 and plain SGD = the original FedAvg; Adam = FedAdam).

Theory step (``[server] lr_rule = "theory"``, which then sets ``[local] lr``): local GD, i.e.
FedAvg with full local gradients, all clients and server lr 1, with ``eta_l <= 1 / (4 L)``,
``L = max_i L(f_i)`` -- Khaled, Mishchenko, Richtarik, "Tighter Theory for Local SGD on
Identical and Heterogeneous Data", AISTATS 2020 (heterogeneous data); see
:func:`phloem.fl.theory.local_gd_step`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch

from phloem.core.errors import ConfigError
from phloem.fl import theory
from phloem.fl.algorithms.base import (
    Aggregate,
    Algorithm,
    ClientRng,
    Message,
    ModelServer,
    Uplink,
    compress,
)
from phloem.fl.local import LocalSolver, MinibatchSGD
from phloem.fl.problem import ClientOracle
from phloem.fl.registries import ALGORITHMS

__all__ = ["FedAvg", "ModelDelta"]


@dataclass(frozen=True)
class ModelDelta(Uplink):
    """``delta = x_i - x``: where local training moved the model (compressed)."""

    delta: torch.Tensor


@ALGORITHMS.register
@dataclass(frozen=True)
class FedAvg(Algorithm[ModelServer, None, ModelDelta]):
    """Federated Averaging with any local solver, compressor and server optimiser."""

    name: ClassVar[str] = "fedavg"
    description: ClassVar[str] = "Federated Averaging (McMahan et al., AISTATS 2017)"
    theory_bounds_local_step: ClassVar[bool] = True
    local: LocalSolver = field(default_factory=MinibatchSGD)

    def init_server(
        self, x0: torch.Tensor, client_states: Sequence[None], weights: np.ndarray
    ) -> ModelServer:
        return ModelServer(x0)

    def theory_step(self, smoothness: theory.Smoothness, dim: int) -> float | None:
        """The local step ``1 / (4 max_i L(f_i))`` of Khaled et al. (AISTATS 2020).

        Raises
        ------
        ConfigError
            When the server does not plainly average (``server.lr`` not 1, momentum) or the
            uplink is compressed: the theorem covers neither.
        """
        theory.check_plain_local_method(self.name, self.compressor, self.server_opt, self.local)
        if self.server_opt.lr != 1.0:
            raise ConfigError(
                "server.lr",
                f"must be 1 for {self.name}'s theory step (local GD averages the local models)",
            )
        return theory.local_gd_step(smoothness)

    def local_objective(self, oracle: ClientOracle, x: torch.Tensor) -> ClientOracle:
        """The objective local training minimises, starting from the server model ``x``."""
        return oracle

    def client_update(
        self, server: ModelServer, state: None, oracle: ClientOracle, rng: ClientRng
    ) -> tuple[Message[ModelDelta], None]:
        res = self.local.run(self.local_objective(oracle, server.x), server.x, rng.local)
        delta, bits = compress(self.compressor, res.x - server.x, rng.compression)
        return Message(ModelDelta(delta), bits, res.loss, res.samples), None

    def server_update(
        self, server: ModelServer, aggregate: Aggregate[ModelDelta], gen: np.random.Generator
    ) -> ModelServer:
        delta = aggregate.mean(lambda u: u.delta)
        x, opt = self.server_opt.step(server.x, -delta, server.opt)
        return ModelServer(x, opt)
