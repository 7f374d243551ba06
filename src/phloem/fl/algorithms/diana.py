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

from phloem.fl import theory
from phloem.fl.algorithms.base import (
    Aggregate,
    Algorithm,
    ClientRng,
    Message,
    Uplink,
    compress,
)
from phloem.fl.local import FullGradient, LocalSolver
from phloem.fl.problem import ClientOracle
from phloem.fl.registries import ALGORITHMS
from phloem.fl.server_opt import OptState

__all__ = ["Diana", "DianaParams", "DianaServer", "GradientDifference"]


@dataclass(frozen=True)
class GradientDifference(Uplink):
    """``delta = C(grad f_i(x) - h_i)``: the compressed gradient minus the client's shift."""

    delta: torch.Tensor


@dataclass(frozen=True)
class DianaParams:
    """``alpha``: the shift step in (0, 1]; empty takes ``1 / (omega + 1)``."""

    alpha: float | None = None

    def __post_init__(self) -> None:
        if self.alpha is not None and not 0.0 < self.alpha <= 1.0:
            raise ValueError(f"algorithm.alpha must be in (0, 1], got {self.alpha}")


@dataclass(frozen=True)
class DianaServer:
    """Model, the mean shift ``h`` and optimiser state."""

    x: torch.Tensor
    h: torch.Tensor
    opt: OptState = field(default_factory=OptState)


@ALGORITHMS.register
@dataclass(frozen=True)
class Diana(Algorithm[DianaServer, torch.Tensor, GradientDifference]):
    """DIANA; ``alpha=None`` picks ``1/(omega+1)`` for the configured compressor."""

    name: ClassVar[str] = "diana"
    description: ClassVar[str] = "compressed gradient differences (Mishchenko et al., 2019)"
    Params: ClassVar[type[DianaParams]] = DianaParams
    local: LocalSolver = field(default_factory=FullGradient)
    alpha: float | None = None

    def __post_init__(self) -> None:
        DianaParams(self.alpha)
        theory.require_unbiased(self.compressor, self.name)

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
    ) -> tuple[Message[GradientDifference], torch.Tensor]:
        gr = self.local.gradient(oracle, server.x, rng.local)
        delta, bits = compress(self.compressor, gr.grad - state, rng.compression)
        h_new = state + self.shift_step(delta.numel()) * delta
        return Message(GradientDifference(delta), bits, gr.loss, gr.samples), h_new

    def server_update(
        self,
        server: DianaServer,
        aggregate: Aggregate[GradientDifference],
        gen: np.random.Generator,
    ) -> DianaServer:
        g = server.h + aggregate.mean(lambda u: u.delta)
        x, opt = self.server_opt.step(server.x, g, server.opt)
        alpha = self.shift_step(server.x.numel())
        h = server.h + alpha * aggregate.total(lambda u: u.delta)
        return DianaServer(x, h, opt)

    def theory_step(self, smoothness: theory.Smoothness, dim: int) -> float:
        return theory.diana_step(smoothness, theory.unbiased_omega(self.compressor, dim, self.name))
