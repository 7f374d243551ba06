"""SCAFFOLD: stochastic controlled averaging.

Karimireddy, Kale, Mohri, Reddi, Stich, Suresh. "SCAFFOLD: Stochastic Controlled Averaging for
Federated Learning." ICML 2020 (Algorithm 1, control variate option II).

Local steps follow ``g_i(y) - c_i + c``; after ``K`` steps of size ``eta_l`` the client updates
``c_i+ = c_i - c + (x - y) / (K eta_l)`` and sends ``(y - x, c_i+ - c_i)``. The server steps
along the mean model delta and moves ``c`` by the weighted sum of the control deltas, so that
``c = sum_i w_i c_i`` holds under partial participation.
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
    compress,
    weighted_sum,
)
from phloem.fl.compressors.base import FLOAT_BITS
from phloem.fl.local import LocalSolver, MinibatchSGD
from phloem.fl.problem import ClientOracle
from phloem.fl.server_opt import OptState

__all__ = ["Scaffold", "ScaffoldServer"]


@dataclass(frozen=True)
class ScaffoldServer:
    """Server model, server control variate ``c`` and optimiser state."""

    x: torch.Tensor
    c: torch.Tensor
    opt: OptState = field(default_factory=OptState)


@dataclass(frozen=True)
class Scaffold(Algorithm[ScaffoldServer, torch.Tensor]):
    """SCAFFOLD; the client state is its control variate ``c_i`` (zeros at start)."""

    name: ClassVar[str] = "scaffold"
    local: LocalSolver = field(default_factory=MinibatchSGD)

    def init_server(
        self, x0: torch.Tensor, client_states: Sequence[torch.Tensor], weights: np.ndarray
    ) -> ScaffoldServer:
        return ScaffoldServer(x0, torch.zeros_like(x0))

    def init_client(
        self, x0: torch.Tensor, oracle: ClientOracle, gen: torch.Generator
    ) -> torch.Tensor:
        return torch.zeros_like(x0)

    def client_update(
        self, server: ScaffoldServer, state: torch.Tensor, oracle: ClientOracle, rng: ClientRng
    ) -> tuple[Message, torch.Tensor]:
        res = self.local.run(oracle, server.x, rng.local, shift=server.c - state)
        k_eta = res.steps * self.local.lr
        c_new = state - server.c + (server.x - res.x) / k_eta
        dy, bits_y = compress(self.compressor, res.x - server.x, rng.compression)
        dc, bits_c = compress(self.compressor, c_new - state, rng.compression)
        # The client keeps the control variate the server can reconstruct.
        return Message({"dy": dy, "dc": dc}, bits_y + bits_c, res.loss, res.samples), state + dc

    def server_update(
        self,
        server: ScaffoldServer,
        messages: Sequence[Message],
        cohort: Cohort,
        gen: np.random.Generator,
    ) -> ScaffoldServer:
        dy = weighted_sum(messages, "dy", cohort.normalised)
        x, opt = self.server_opt.step(server.x, -dy, server.opt)
        c = server.c + weighted_sum(messages, "dc", cohort.weights)
        return ScaffoldServer(x, c, opt)

    def downlink_bits(self, server: ScaffoldServer) -> int:
        return 2 * FLOAT_BITS * server.x.numel()
