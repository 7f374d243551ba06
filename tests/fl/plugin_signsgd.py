"""A plug-in as a user would write one (docs/extending.md walks through it): an algorithm and a
compressor that phloem does not ship, registered from outside the package.

- signSGD with majority vote: Bernstein, Zhao, Azizzadenesheli, Anandkumar. "signSGD with
  Majority Vote is Communication Efficient and Fault Tolerant." ICLR 2019.
- the scaled sign compressor: Karimireddy, Rebjock, Stich, Jaggi. "Error Feedback Fixes
  SignSGD and other Gradient Compression Schemes." ICML 2019.

Load it with ``PHLOEM_PLUGINS=plugin_signsgd`` (and the folder on ``PYTHONPATH``), or import it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch

from phloem.fl.algorithms.base import Aggregate, Algorithm, ClientRng, Message, ModelServer, Uplink
from phloem.fl.compressors.base import FLOAT_BITS, Compressed, Compressor, check_vector
from phloem.fl.local import FullGradient, LocalSolver
from phloem.fl.problem import ClientOracle
from phloem.fl.registries import ALGORITHMS, COMPRESSORS


@dataclass(frozen=True)
class Signs(Uplink):
    """``s = sign(g_i)``: one bit per coordinate."""

    s: torch.Tensor


@dataclass(frozen=True)
class SignSGDParams:
    """``vote``: the server steps along the sign of the vote (majority) or the mean sign."""

    vote: bool = True


@ALGORITHMS.register
@dataclass(frozen=True)
class SignSGD(Algorithm[ModelServer, None, Signs]):
    name: ClassVar[str] = "signsgd"
    description: ClassVar[str] = "signSGD with majority vote (Bernstein et al., ICLR 2019)"
    Params: ClassVar[type[SignSGDParams]] = SignSGDParams
    local: LocalSolver = field(default_factory=FullGradient)
    vote: bool = True

    def init_server(
        self, x0: torch.Tensor, client_states: Sequence[None], weights: np.ndarray
    ) -> ModelServer:
        return ModelServer(x0)

    def client_update(
        self, server: ModelServer, state: None, oracle: ClientOracle, rng: ClientRng
    ) -> tuple[Message[Signs], None]:
        gr = self.local.gradient(oracle, server.x, rng.local)
        s = torch.sign(gr.grad)
        return Message(Signs(s), s.numel(), gr.loss, gr.samples), None

    def server_update(
        self, server: ModelServer, aggregate: Aggregate[Signs], gen: np.random.Generator
    ) -> ModelServer:
        mean = aggregate.mean(lambda u: u.s)
        x, opt = self.server_opt.step(server.x, torch.sign(mean) if self.vote else mean, server.opt)
        return ModelServer(x, opt)


@COMPRESSORS.register
@dataclass(frozen=True)
class ScaledSign(Compressor):
    """``C(v) = ||v||_1 / d * sign(v)``: biased, contractive with ``alpha >= 1/d``."""

    name: ClassVar[str] = "scaled-sign"
    description: ClassVar[str] = "scaled sign, 1 bit/entry + a float (Karimireddy et al., 2019)"
    unbiased: ClassVar[bool] = False

    def compress(self, v: torch.Tensor, gen: torch.Generator) -> Compressed:
        d = check_vector(v)
        return Compressed(v.abs().sum() / d * torch.sign(v), FLOAT_BITS + d)

    def omega(self, d: int) -> float:
        return math.inf

    def alpha(self, d: int) -> float:
        return 1.0 / d

    def expected_bits(self, d: int) -> float:
        return float(FLOAT_BITS + d)
