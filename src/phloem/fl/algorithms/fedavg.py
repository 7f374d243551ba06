"""FedAvg: Federated Averaging.

McMahan, Moore, Ramage, Hampson, Aguera y Arcas. "Communication-Efficient Learning of Deep
Networks from Decentralized Data." AISTATS 2017.

Each sampled client runs its local solver from the server model ``x`` and sends
``delta_i = x_i - x`` (optionally compressed). The server averages the deltas with weights
proportional to the clients' weights and steps along the pseudo-gradient ``-mean(delta)``
with its server optimiser (server lr 1 and plain SGD = the original FedAvg; Adam = FedAdam).
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
    local: LocalSolver = field(default_factory=MinibatchSGD)

    def init_server(
        self, x0: torch.Tensor, client_states: Sequence[None], weights: np.ndarray
    ) -> ModelServer:
        return ModelServer(x0)

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
