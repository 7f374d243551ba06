"""SCAFFOLD: stochastic controlled averaging.

Karimireddy, Kale, Mohri, Reddi, Stich, Suresh. "SCAFFOLD: Stochastic Controlled Averaging for
Federated Learning." ICML 2020 (Algorithm 1, control variate option II).

Local steps follow ``g_i(y) - c_i + c``; after ``K`` steps of size ``eta_l`` the client updates
``c_i+ = c_i - c + (x - y) / (K eta_l)`` and sends ``(y - x, c_i+ - c_i)``. The server steps
along the mean model delta and moves ``c`` by the weighted sum of the control deltas, so that
``c = sum_i w_i c_i`` holds under partial participation.

Theory step (``[server] lr_rule = "theory"``, which then sets ``[local] lr``):
``eta_l <= 1 / (81 beta K eta_g)``, ``beta = max_i L(f_i)``, ``K`` local steps, ``eta_g`` the
server lr -- Theorem III of the paper (convex and strongly convex cases); see
:func:`phloem.fl.theory.scaffold_step`.
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
    Uplink,
    compress,
)
from phloem.fl.compressors.base import FLOAT_BITS
from phloem.fl.local import LocalSolver, MinibatchSGD
from phloem.fl.problem import ClientOracle, ShiftedOracle
from phloem.fl.registries import ALGORITHMS
from phloem.fl.server_opt import OptState

__all__ = ["ControlledDelta", "Scaffold", "ScaffoldServer"]


@dataclass(frozen=True)
class ControlledDelta(Uplink):
    """``dy = y_i - x``, the model delta, and ``dc = c_i+ - c_i``, the control-variate delta."""

    dy: torch.Tensor
    dc: torch.Tensor


@dataclass(frozen=True)
class ScaffoldServer:
    """Server model, server control variate ``c`` and optimiser state."""

    x: torch.Tensor
    c: torch.Tensor
    opt: OptState = field(default_factory=OptState)


@ALGORITHMS.register
@dataclass(frozen=True)
class Scaffold(Algorithm[ScaffoldServer, torch.Tensor, ControlledDelta]):
    """SCAFFOLD; the client state is its control variate ``c_i`` (zeros at start).

    Local steps follow the client's oracle shifted by ``c - c_i``
    (:class:`~phloem.fl.problem.ShiftedOracle`).
    """

    name: ClassVar[str] = "scaffold"
    description: ClassVar[str] = "stochastic controlled averaging (Karimireddy et al., ICML 2020)"
    theory_bounds_local_step: ClassVar[bool] = True
    local: LocalSolver = field(default_factory=MinibatchSGD)

    def init_server(
        self, x0: torch.Tensor, client_states: Sequence[torch.Tensor], weights: np.ndarray
    ) -> ScaffoldServer:
        return ScaffoldServer(x0, torch.zeros_like(x0))

    def theory_step(self, smoothness: theory.Smoothness, dim: int) -> float:
        """The local step ``1 / (81 max_i L(f_i) K eta_g)`` of Theorem III.

        Raises
        ------
        ConfigError
            When clients take different numbers of local steps (set ``local.steps``), or the
            uplink is compressed, or there is momentum.
        """
        theory.check_plain_local_method(self.name, self.compressor, self.server_opt, self.local)
        k = self.local.num_steps(1)
        if self.local.num_steps(1 << 30) != k:
            raise ConfigError(
                "local.steps",
                f"{self.name}'s theory step needs the same number K of local steps on every "
                "client: set local.steps, or use local.solver = 'full'",
            )
        return theory.scaffold_step(smoothness, k, self.server_opt.lr)

    def init_client(
        self, x0: torch.Tensor, oracle: ClientOracle, gen: torch.Generator
    ) -> torch.Tensor:
        return torch.zeros_like(x0)

    def client_update(
        self, server: ScaffoldServer, state: torch.Tensor, oracle: ClientOracle, rng: ClientRng
    ) -> tuple[Message[ControlledDelta], torch.Tensor]:
        res = self.local.run(ShiftedOracle(oracle, server.c - state), server.x, rng.local)
        k_eta = res.steps * self.local.lr
        c_new = state - server.c + (server.x - res.x) / k_eta
        dy, bits_y = compress(self.compressor, res.x - server.x, rng.compression)
        dc, bits_c = compress(self.compressor, c_new - state, rng.compression)
        # The client keeps the control variate the server can reconstruct.
        message = Message(ControlledDelta(dy, dc), bits_y + bits_c, res.loss, res.samples)
        return message, state + dc

    def server_update(
        self,
        server: ScaffoldServer,
        aggregate: Aggregate[ControlledDelta],
        gen: np.random.Generator,
    ) -> ScaffoldServer:
        dy = aggregate.mean(lambda u: u.dy)
        x, opt = self.server_opt.step(server.x, -dy, server.opt)
        c = server.c + aggregate.total(lambda u: u.dc)
        return ScaffoldServer(x, c, opt)

    def downlink_bits(self, server: ScaffoldServer) -> int:
        return 2 * FLOAT_BITS * server.x.numel()
