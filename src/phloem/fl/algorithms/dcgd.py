"""DCGD: distributed compressed gradient descent.

Khirirat, Feyzmahdavian, Johansson. "Distributed learning with compressed gradients." 2018;
analysed for unbiased compressors by Khaled and Richtarik (2019) and in FL_PyTorch.

Each client sends ``C(grad f_i(x))``; the server steps along their weighted mean. With an
unbiased compressor of variance ``omega`` and heterogeneous clients it converges only to a
neighbourhood of the optimum whose size grows with ``omega sum_i ||grad f_i(x*)||^2``: the
noise floor that DIANA and EF21 remove.
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
    ModelServer,
    Uplink,
    compress,
)
from phloem.fl.local import FullGradient, LocalSolver
from phloem.fl.problem import ClientOracle
from phloem.fl.registries import ALGORITHMS

__all__ = ["DCGD", "Gradient"]


@dataclass(frozen=True)
class Gradient(Uplink):
    """``g``: a (compressed) gradient estimate."""

    g: torch.Tensor


@ALGORITHMS.register
@dataclass(frozen=True)
class DCGD(Algorithm[ModelServer, None, Gradient]):
    """Compressed gradient descent; ``local`` only supplies the gradient estimator."""

    name: ClassVar[str] = "dcgd"
    description: ClassVar[str] = "distributed compressed gradient descent (Khirirat et al., 2018)"
    local: LocalSolver = field(default_factory=FullGradient)

    def init_server(
        self, x0: torch.Tensor, client_states: Sequence[None], weights: np.ndarray
    ) -> ModelServer:
        return ModelServer(x0)

    def client_update(
        self, server: ModelServer, state: None, oracle: ClientOracle, rng: ClientRng
    ) -> tuple[Message[Gradient], None]:
        gr = self.local.gradient(oracle, server.x, rng.local)
        g, bits = compress(self.compressor, gr.grad, rng.compression)
        return Message(Gradient(g), bits, gr.loss, gr.samples), None

    def server_update(
        self, server: ModelServer, aggregate: Aggregate[Gradient], gen: np.random.Generator
    ) -> ModelServer:
        g = aggregate.mean(lambda u: u.g)
        x, opt = self.server_opt.step(server.x, g, server.opt)
        return ModelServer(x, opt)

    def theory_step(self, smoothness: theory.Smoothness, dim: int) -> float:
        return theory.dcgd_step(smoothness, theory.unbiased_omega(self.compressor, dim, self.name))
