"""MARINA: compressed gradient differences with rare full synchronisations.

Gorbunov, Burlachenko, Li, Richtarik. "MARINA: Faster Non-Convex Distributed Learning with
Compression." ICML 2021 (Algorithm 1). Under a partial-participation sampler its compressed
rounds average the sampled cohort (drawn without replacement): a variant of PP-MARINA
(Algorithm 4), which ``pp_marina`` runs as written (clients drawn with replacement).

With the server at ``x^{k+1} = x^k - gamma g^k``, a shared coin ``c_k ~ Be(p)`` decides the round:
on a synchronisation round *every* client sends ``grad f_i(x^{k+1})`` and
``g^{k+1} = mean_i grad f_i(x^{k+1})``; otherwise the round's cohort sends
``C(grad f_i(x^{k+1}) - grad f_i(x^k))`` (both on the same minibatch) and
``g^{k+1} = g^k + mean(...)``. The estimator is biased but its error is controlled, which gives
the method its optimal non-convex rates. The run starts with a synchronisation round (``g^0 = 0``,
so ``x^1 = x^0``). Default ``p`` is the compressor's expected fraction of bits,
``E[bits] / (32 d)`` (the paper's ``p = zeta / d`` for sparsifiers).
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
    compress,
)
from phloem.fl.algorithms.dcgd import Gradient
from phloem.fl.compressors.base import FLOAT_BITS
from phloem.fl.local import FullGradient, LocalSolver
from phloem.fl.problem import ClientOracle
from phloem.fl.registries import ALGORITHMS
from phloem.fl.server_opt import OptState

__all__ = ["Marina", "MarinaParams", "MarinaServer"]


@dataclass(frozen=True)
class MarinaParams:
    """``p``: probability of a synchronisation round, in (0, 1]; empty takes the compressor's
    expected fraction of bits."""

    p: float | None = None

    def __post_init__(self) -> None:
        if self.p is not None and not 0.0 < self.p <= 1.0:
            raise ValueError(f"algorithm.p must be in (0, 1], got {self.p}")


@dataclass(frozen=True)
class MarinaServer:
    """``x = x^{k+1}``, ``x_prev = x^k``, the estimator ``g = g^k`` and this round's coin."""

    x: torch.Tensor
    x_prev: torch.Tensor
    g: torch.Tensor
    sync: bool
    opt: OptState = field(default_factory=OptState)


@ALGORITHMS.register
@dataclass(frozen=True)
class Marina(Algorithm[MarinaServer, None, Gradient]):
    """MARINA (the sampler's cohort on compressed rounds; see ``pp_marina`` for Algorithm 4).

    The uplink is a :class:`~phloem.fl.algorithms.dcgd.Gradient`: the full gradient on a
    synchronisation round, the compressed gradient difference otherwise.
    """

    name: ClassVar[str] = "marina"
    description: ClassVar[str] = "compressed differences, rare full syncs (Gorbunov et al., 2021)"
    Params: ClassVar[type[MarinaParams]] = MarinaParams
    local: LocalSolver = field(default_factory=FullGradient)
    p: float | None = None

    def __post_init__(self) -> None:
        MarinaParams(self.p)
        theory.require_unbiased(self.compressor, self.name)

    def sync_probability(self, d: int) -> float:
        """The probability ``p`` of a synchronisation round for dimension ``d``."""
        if self.p is not None:
            return self.p
        if self.compressor is None:
            return 1.0
        return min(1.0, self.compressor.expected_bits(d) / (FLOAT_BITS * d))

    def init_server(
        self, x0: torch.Tensor, client_states: Sequence[None], weights: np.ndarray
    ) -> MarinaServer:
        return MarinaServer(x0, x0, torch.zeros_like(x0), sync=True)

    def round_cohort(
        self, server: MarinaServer, sampled: np.ndarray, num_clients: int
    ) -> np.ndarray:
        return np.arange(num_clients, dtype=np.int64) if server.sync else sampled

    def client_update(
        self, server: MarinaServer, state: None, oracle: ClientOracle, rng: ClientRng
    ) -> tuple[Message[Gradient], None]:
        if server.sync:
            gr = self.local.gradient(oracle, server.x, rng.local)
            bits = FLOAT_BITS * gr.grad.numel()
            return Message(Gradient(gr.grad), bits, gr.loss, gr.samples), None
        new, old = self.local.gradient_pair(oracle, server.x, server.x_prev, rng.local)
        diff, bits = compress(self.compressor, new.grad - old.grad, rng.compression)
        return Message(Gradient(diff), bits, new.loss, new.samples + old.samples), None

    def server_update(
        self, server: MarinaServer, aggregate: Aggregate[Gradient], gen: np.random.Generator
    ) -> MarinaServer:
        mean = aggregate.mean(lambda u: u.g)
        g = mean if server.sync else server.g + mean
        x, opt = self.server_opt.step(server.x, g, server.opt)
        sync = bool(gen.random() < self.sync_probability(server.x.numel()))
        return MarinaServer(x, server.x, g, sync, opt)

    def downlink_bits(self, server: MarinaServer) -> int:
        # Clients need x^{k+1} and, on compressed rounds, x^k (kept from the last round).
        return FLOAT_BITS * server.x.numel()

    def theory_step(self, smoothness: theory.Smoothness, dim: int) -> float:
        omega = theory.unbiased_omega(self.compressor, dim, self.name)
        return theory.marina_step(smoothness, omega, self.sync_probability(dim))
