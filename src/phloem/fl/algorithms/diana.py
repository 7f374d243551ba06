"""DIANA: compressed gradient differences with learned shifts.

Mishchenko, Gorbunov, Takac, Richtarik. "Distributed Learning with Compressed Gradient
Differences." 2019 (arXiv:1901.09269); Horvath et al., "Stochastic distributed learning with
gradient quantization and double-variance reduction", 2019.

Client ``i`` keeps a shift ``h_i`` and sends ``Delta_i = C(grad f_i(x) - h_i)``, then moves
``h_i += alpha Delta_i``. The server forms ``g = h + mean(Delta_i)`` with ``h = sum_i w_i h_i``
kept exactly, and steps along ``g``. The shifts learn ``grad f_i(x*)``, so the compression
variance vanishes at the optimum and the method converges linearly on strongly convex problems
where DCGD stalls. Default ``alpha = 1 / (omega + 1)``.
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
from phloem.fl.local import FullGradient, LocalSolver
from phloem.fl.problem import ClientOracle
from phloem.fl.server_opt import OptState

__all__ = ["Diana", "DianaServer"]


@dataclass(frozen=True)
class DianaServer:
    """Model, the mean shift ``h`` and optimiser state."""

    x: torch.Tensor
    h: torch.Tensor
    opt: OptState = field(default_factory=OptState)


@dataclass(frozen=True)
class Diana(Algorithm[DianaServer, torch.Tensor]):
    """DIANA; ``alpha=None`` picks ``1/(omega+1)`` for the configured compressor."""

    name: ClassVar[str] = "diana"
    local: LocalSolver = field(default_factory=FullGradient)
    alpha: float | None = None

    def __post_init__(self) -> None:
        if self.alpha is not None and not 0.0 < self.alpha <= 1.0:
            raise ValueError(f"algorithm.alpha must be in (0, 1], got {self.alpha}")

    def shift_step(self, d: int) -> float:
        """The shift learning rate ``alpha`` for dimension ``d``."""
        if self.alpha is not None:
            return self.alpha
        omega = 0.0 if self.compressor is None else self.compressor.omega(d)
        return 1.0 / (omega + 1.0)

    def init_server(
        self, x0: torch.Tensor, client_states: Sequence[torch.Tensor], weights: np.ndarray
    ) -> DianaServer:
        return DianaServer(x0, torch.zeros_like(x0))

    def init_client(
        self, x0: torch.Tensor, oracle: ClientOracle, gen: torch.Generator
    ) -> torch.Tensor:
        return torch.zeros_like(x0)

    def client_update(
        self, server: DianaServer, state: torch.Tensor, oracle: ClientOracle, rng: ClientRng
    ) -> tuple[Message, torch.Tensor]:
        gr = self.local.gradient(oracle, server.x, rng.local)
        delta, bits = compress(self.compressor, gr.grad - state, rng.compression)
        h_new = state + self.shift_step(delta.numel()) * delta
        return Message({"delta": delta}, bits, gr.loss, gr.samples), h_new

    def server_update(
        self,
        server: DianaServer,
        messages: Sequence[Message],
        cohort: Cohort,
        gen: np.random.Generator,
    ) -> DianaServer:
        g = server.h + weighted_sum(messages, "delta", cohort.normalised)
        x, opt = self.server_opt.step(server.x, g, server.opt)
        alpha = self.shift_step(server.x.numel())
        h = server.h + alpha * weighted_sum(messages, "delta", cohort.weights)
        return DianaServer(x, h, opt)
