"""PAGE: a probabilistic gradient estimator, in its distributed form.

Li, Bao, Zhang, Richtarik. "PAGE: A Simple and Optimal Probabilistic Gradient Estimator for
Nonconvex Optimization." ICML 2021 (Algorithm 1).

With ``x^{k+1} = x^k - gamma g^k`` and a coin ``c_k ~ Be(p)``:

    g^{k+1} = grad_b(x^{k+1})                                  with probability p,
    g^{k+1} = g^k + grad_b'(x^{k+1}) - grad_b'(x^k)            otherwise,

where ``grad_b`` is a large-batch gradient and ``grad_b'`` a minibatch one, the same minibatch at
both points. Distributed form: on a large-batch round every client sends its full local gradient
(``b``: all data) and ``g^{k+1} = sum_i w_i grad f_i(x^{k+1})``; otherwise the round's
``[sampling]`` cohort sends ``grad_b'(x^{k+1}) - grad_b'(x^k)`` on its own local minibatch (the
``[local]`` solver's gradient: ``full`` or an ``sgd`` minibatch), uncompressed, and the server
adds their weighted mean. The minibatch ``b'`` of the paper is the union of the cohort's local
minibatches. Nothing is compressed (``marina`` is the compressed relative). The run starts with
a large-batch round (``g^0 = 0``, so ``x^1 = x^0``).

Default ``p = b' / (b + b')`` with the paper's optimal ``b' = sqrt(b)``, counting clients as the
components (``b = n``): ``p = 1 / (1 + sqrt(n))``. Theory step (Theorem 1, with ``L_tilde`` the
average smoothness of the components ``n w_i f_i``): ``gamma <= 1 / (L + L_tilde
sqrt((1 - p) / (p b')))``, taken at ``b' = 1`` client, which holds for any cohort and assumes full
local gradients (per-sample smoothness, which minibatches would need, is not known here).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch

from phloem.core.errors import ConfigError
from phloem.fl import theory
from phloem.fl.algorithms.base import Aggregate, Algorithm, ClientRng, Message
from phloem.fl.algorithms.dcgd import Gradient
from phloem.fl.compressors.base import FLOAT_BITS
from phloem.fl.local import FullGradient, LocalSolver
from phloem.fl.problem import ClientOracle
from phloem.fl.registries import ALGORITHMS
from phloem.fl.server_opt import OptState

__all__ = ["Page", "PageParams", "PageServer"]


@dataclass(frozen=True)
class PageParams:
    """``p``: probability of a large-batch round, in (0, 1]; empty takes ``1 / (1 + sqrt(n))``."""

    p: float | None = None

    def __post_init__(self) -> None:
        if self.p is not None and not (isinstance(self.p, float | int) and 0.0 < self.p <= 1.0):
            raise ValueError(f"algorithm.p must be in (0, 1], got {self.p}")


@dataclass(frozen=True)
class PageServer:
    """``x = x^{k+1}``, ``x_prev = x^k``, ``g = g^k``, this round's coin, ``n`` clients."""

    x: torch.Tensor
    x_prev: torch.Tensor
    g: torch.Tensor
    full: bool
    n: int
    opt: OptState = field(default_factory=OptState)


@ALGORITHMS.register
@dataclass(frozen=True)
class Page(Algorithm[PageServer, None, Gradient]):
    """PAGE: full gradients with probability ``p``, else minibatch gradient differences."""

    name: ClassVar[str] = "page"
    description: ClassVar[str] = "probabilistic gradient estimator (Li et al., ICML 2021)"
    Params: ClassVar[type[PageParams]] = PageParams
    local: LocalSolver = field(default_factory=FullGradient)
    p: float | None = None

    def __post_init__(self) -> None:
        PageParams(self.p)
        if self.compressor is not None:
            raise ConfigError(
                "compressor.name",
                "page sends its gradients uncompressed (marina is PAGE with compression)",
                ["none"],
            )

    def probability(self, n: int) -> float:
        """The probability ``p`` of a large-batch round with ``n`` clients."""
        return float(self.p) if self.p is not None else 1.0 / (1.0 + math.sqrt(n))

    def init_server(
        self, x0: torch.Tensor, client_states: Sequence[None], weights: np.ndarray
    ) -> PageServer:
        return PageServer(x0, x0, torch.zeros_like(x0), True, len(weights))

    def round_cohort(self, server: PageServer, sampled: np.ndarray, num_clients: int) -> np.ndarray:
        return np.arange(num_clients, dtype=np.int64) if server.full else sampled

    def client_update(
        self, server: PageServer, state: None, oracle: ClientOracle, rng: ClientRng
    ) -> tuple[Message[Gradient], None]:
        bits = FLOAT_BITS * server.x.numel()
        if server.full:
            gr = oracle.grad(server.x)  # the large batch: all local data
            return Message(Gradient(gr.grad), bits, gr.loss, gr.samples), None
        new, old = self.local.gradient_pair(oracle, server.x, server.x_prev, rng.local)
        diff = new.grad - old.grad
        return Message(Gradient(diff), bits, new.loss, new.samples + old.samples), None

    def server_update(
        self, server: PageServer, aggregate: Aggregate[Gradient], gen: np.random.Generator
    ) -> PageServer:
        mean = aggregate.mean(lambda u: u.g)
        g = mean if server.full else server.g + mean
        x, opt = self.server_opt.step(server.x, g, server.opt)
        full = bool(gen.random() < self.probability(server.n))
        return PageServer(x, server.x, g, full, server.n, opt)

    def downlink_bits(self, server: PageServer) -> int:
        # x^{k+1}; on a difference round also x^k (a sampled client may have missed a round)
        return (1 if server.full else 2) * FLOAT_BITS * server.x.numel()

    def theory_step(self, smoothness: theory.Smoothness, dim: int) -> float:
        return theory.page_step(smoothness, self.probability(smoothness.n), 1)
