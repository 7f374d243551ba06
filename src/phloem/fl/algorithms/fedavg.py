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
    Algorithm,
    ClientRng,
    Cohort,
    Message,
    ModelServer,
    compress,
    weighted_sum,
)
from phloem.fl.local import LocalSolver, MinibatchSGD
from phloem.fl.problem import ClientOracle

__all__ = ["FedAvg"]


@dataclass(frozen=True)
class FedAvg(Algorithm[ModelServer, None]):
    """Federated Averaging with any local solver, compressor and server optimiser."""

    name: ClassVar[str] = "fedavg"
    local: LocalSolver = field(default_factory=MinibatchSGD)

    def init_server(
        self, x0: torch.Tensor, client_states: Sequence[None], weights: np.ndarray
    ) -> ModelServer:
        return ModelServer(x0)

    def _prox_mu(self) -> float:
        return 0.0

    def client_update(
        self, server: ModelServer, state: None, oracle: ClientOracle, rng: ClientRng
    ) -> tuple[Message, None]:
        res = self.local.run(oracle, server.x, rng.local, prox_mu=self._prox_mu())
        delta, bits = compress(self.compressor, res.x - server.x, rng.compression)
        return Message({"delta": delta}, bits, res.loss, res.samples), None

    def server_update(
        self,
        server: ModelServer,
        messages: Sequence[Message],
        cohort: Cohort,
        gen: np.random.Generator,
    ) -> ModelServer:
        delta = weighted_sum(messages, "delta", cohort.normalised)
        x, opt = self.server_opt.step(server.x, -delta, server.opt)
        return ModelServer(x, opt)
