"""EF21: error feedback, reengineered.

Richtarik, Sokolov, Fatkhullin. "EF21: A New, Simpler, Theoretically Better, and Practically
Faster Error Feedback." NeurIPS 2021; partial participation after Fatkhullin et al., "EF21 with
Bells & Whistles" (2021).

Works with any contractive (possibly biased) compressor, e.g. Top-K. Client ``i`` keeps
``g_i`` and, at the new point ``x^{t+1} = x^t - gamma g^t``, sends
``c_i = C(grad f_i(x^{t+1}) - g_i)`` and sets ``g_i += c_i``; the server keeps
``g = sum_i w_i g_i`` exactly by adding the weighted ``c_i`` of the participants. Start:
``g_i^0 = C(grad f_i(x^0))``; the bits of that initial exchange are not counted in round 1.
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
    weighted_sum,
)
from phloem.fl.local import FullGradient, LocalSolver
from phloem.fl.problem import ClientOracle
from phloem.fl.registries import ALGORITHMS
from phloem.fl.server_opt import OptState

__all__ = ["EF21", "EF21Server", "ErrorFeedback"]


@dataclass(frozen=True)
class ErrorFeedback(Uplink):
    """``c = C(grad f_i(x) - g_i)``: the compressed correction of the client's estimate."""

    c: torch.Tensor


@dataclass(frozen=True)
class EF21Server:
    """``x = x^{t+1}`` (already stepped), ``g = sum_i w_i g_i`` and optimiser state."""

    x: torch.Tensor
    g: torch.Tensor
    opt: OptState = field(default_factory=OptState)


@ALGORITHMS.register
@dataclass(frozen=True)
class EF21(Algorithm[EF21Server, torch.Tensor, ErrorFeedback]):
    """EF21 (EF21-PP under partial participation)."""

    name: ClassVar[str] = "ef21"
    #: error feedback needs a contractive compressor (alpha > 0); with an unscaled Rand-K the
    #: tracking error grows by omega each round whatever the step (checked by ``phloem fl run``)
    contractive_only: ClassVar[bool] = True
    description: ClassVar[str] = "error feedback, reengineered (Richtarik et al., NeurIPS 2021)"
    local: LocalSolver = field(default_factory=FullGradient)

    def init_client(
        self, x0: torch.Tensor, oracle: ClientOracle, gen: torch.Generator
    ) -> torch.Tensor:
        gr = self.local.gradient(oracle, x0, gen)
        g, _ = compress(self.compressor, gr.grad, gen)
        return g

    def init_server(
        self, x0: torch.Tensor, client_states: Sequence[torch.Tensor], weights: np.ndarray
    ) -> EF21Server:
        g = weighted_sum(client_states, weights)
        opt = OptState()
        x, opt = self.server_opt.step(x0, g, opt)
        return EF21Server(x, g, opt)

    def client_update(
        self, server: EF21Server, state: torch.Tensor, oracle: ClientOracle, rng: ClientRng
    ) -> tuple[Message[ErrorFeedback], torch.Tensor]:
        gr = self.local.gradient(oracle, server.x, rng.local)
        c, bits = compress(self.compressor, gr.grad - state, rng.compression)
        return Message(ErrorFeedback(c), bits, gr.loss, gr.samples), state + c

    def server_update(
        self, server: EF21Server, aggregate: Aggregate[ErrorFeedback], gen: np.random.Generator
    ) -> EF21Server:
        g = server.g + aggregate.total(lambda u: u.c)
        x, opt = self.server_opt.step(server.x, g, server.opt)
        return EF21Server(x, g, opt)

    def theory_step(self, smoothness: theory.Smoothness, dim: int) -> float:
        return theory.ef21_step(smoothness, theory.contraction(self.compressor, dim, self.name))
