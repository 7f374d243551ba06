"""PP-MARINA: MARINA with partial participation, clients drawn with replacement.

Gorbunov, Burlachenko, Li, Richtarik. "MARINA: Faster Non-Convex Distributed Learning with
Compression." ICML 2021, Algorithm 4 (PP-MARINA).

With ``x^{k+1} = x^k - gamma g^k`` and a coin ``c_k ~ Be(p)``: on a synchronisation round
(``c_k = 1``) every client sends ``grad f_i(x^{k+1})`` and
``g^{k+1} = sum_i w_i grad f_i(x^{k+1})``; otherwise the server draws ``r`` clients
``i_1, ..., i_r`` i.i.d. uniformly from ``[n]`` (with replacement) and

    g^{k+1} = g^k + (1/r) sum_{j=1}^r n w_{i_j} Q_j(grad f_{i_j}(x^{k+1}) - grad f_{i_j}(x^k)),

each draw with its own independent compression ``Q_j``. For equal weights ``w_i = 1/n`` this is
the paper's ``g^k + (1/r) sum_j Q(...)``; the factor ``n w_i`` keeps the estimator unbiased for
``f = sum_i w_i f_i``. A client drawn ``m`` times computes its difference once (on one
minibatch, replayed at both points) and sends the sum of ``m`` independent compressions (``m``
messages' bits); the server adds ``(n / r)`` times the weighted total, so the method works under
secure aggregation. Downlink: ``x^{k+1}``, and on compressed rounds also ``x^k`` and the
client's multiplicity (a drawn client may have missed the previous round).

Unlike ``marina`` (whose compressed rounds take the ``[sampling]`` cohort, without replacement,
and average it), ``pp_marina`` draws its own clients: ``algorithm.clients`` is ``r``, and a
config must leave ``[sampling] scheme = "full"`` (another scheme is refused, not ignored).
Default ``p = (E[bits] / (32 d)) r / n``, the paper's ``p = zeta_Q r / (d n)``. Theory step
(Theorem 4.1): ``gamma <= 1 / (L + L_tilde sqrt((1 - p) (1 + omega) / (p r)))``.
The run starts with a synchronisation round (``g^0 = 0``, so ``x^1 = x^0``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch

from phloem.fl import theory
from phloem.fl.algorithms.base import Aggregate, Algorithm, ClientRng, Message, compress
from phloem.fl.algorithms.dcgd import Gradient
from phloem.fl.compressors.base import FLOAT_BITS, index_bits
from phloem.fl.local import FullGradient, LocalSolver
from phloem.fl.problem import ClientOracle
from phloem.fl.registries import ALGORITHMS
from phloem.fl.server_opt import OptState

__all__ = ["PPMarina", "PPMarinaParams", "PPMarinaServer"]


#: the most clients ``r`` PP-MARINA draws (with replacement) in a round
MAX_DRAWS = 1_000_000


@dataclass(frozen=True)
class PPMarinaParams:
    """``p``: probability of a synchronisation round, in (0, 1] (empty: ``zeta r / (d n)``);
    ``clients``: ``r``, clients drawn with replacement per compressed round (empty: ``n``)."""

    p: float | None = None
    clients: int | None = None

    def __post_init__(self) -> None:
        if self.p is not None and not (isinstance(self.p, float | int) and 0.0 < self.p <= 1.0):
            raise ValueError(f"algorithm.p must be in (0, 1], got {self.p}")
        # r draws a round are materialised: 1e9 hung allocating them, 1e18 overflowed numpy
        if self.clients is not None and (
            isinstance(self.clients, bool)
            or not isinstance(self.clients, int)
            or not 1 <= self.clients <= MAX_DRAWS
        ):
            raise ValueError(
                f"algorithm.clients must be an integer in [1, {MAX_DRAWS}], got {self.clients}"
            )


@dataclass(frozen=True)
class PPMarinaServer:
    """``x = x^{k+1}``, ``x_prev = x^k``, ``g = g^k``, this round's coin and, on a compressed
    round, how many times each client was drawn (``counts``, int64, one per client)."""

    x: torch.Tensor
    x_prev: torch.Tensor
    g: torch.Tensor
    sync: bool
    counts: torch.Tensor
    opt: OptState = field(default_factory=OptState)


@ALGORITHMS.register
@dataclass(frozen=True)
class PPMarina(Algorithm[PPMarinaServer, None, Gradient]):
    """PP-MARINA: ``r`` clients i.i.d. with replacement on compressed rounds."""

    name: ClassVar[str] = "pp_marina"
    description: ClassVar[str] = (
        "MARINA, r clients drawn with replacement per round (Gorbunov et al., ICML 2021)"
    )
    Params: ClassVar[type[PPMarinaParams]] = PPMarinaParams
    #: why the method picks its own cohort (``[sampling]`` must be ``full``)
    own_cohort: ClassVar[str] = (
        "draws its own clients (algorithm.clients, with replacement); [sampling] would be ignored"
    )
    local: LocalSolver = field(default_factory=FullGradient)
    p: float | None = None
    clients: int | None = None

    def __post_init__(self) -> None:
        PPMarinaParams(self.p, self.clients)
        theory.require_unbiased(self.compressor, self.name)

    def draws(self, n: int) -> int:
        """``r`` for ``n`` clients."""
        return n if self.clients is None else self.clients

    def sync_probability(self, d: int, n: int) -> float:
        """The probability ``p`` of a synchronisation round (dimension ``d``, ``n`` clients)."""
        if self.p is not None:
            return float(self.p)
        if self.compressor is None:
            return 1.0
        zeta = self.compressor.expected_bits(d) / (FLOAT_BITS * d)
        return min(1.0, zeta * self.draws(n) / n)

    def init_server(
        self, x0: torch.Tensor, client_states: Sequence[None], weights: np.ndarray
    ) -> PPMarinaServer:
        counts = torch.zeros(len(weights), dtype=torch.int64)
        return PPMarinaServer(x0, x0, torch.zeros_like(x0), True, counts)

    def round_cohort(
        self, server: PPMarinaServer, sampled: np.ndarray, num_clients: int
    ) -> np.ndarray:
        if server.sync:
            return np.arange(num_clients, dtype=np.int64)
        return np.flatnonzero(server.counts.numpy()).astype(np.int64)

    def client_update(
        self, server: PPMarinaServer, state: None, oracle: ClientOracle, rng: ClientRng
    ) -> tuple[Message[Gradient], None]:
        if server.sync:
            gr = self.local.gradient(oracle, server.x, rng.local)
            bits = FLOAT_BITS * gr.grad.numel()
            return Message(Gradient(gr.grad), bits, gr.loss, gr.samples), None
        new, old = self.local.gradient_pair(oracle, server.x, server.x_prev, rng.local)
        diff = new.grad - old.grad
        total, bits = torch.zeros_like(diff), 0
        for _ in range(int(server.counts[rng.client])):  # one compression per draw
            part, b = compress(self.compressor, diff, rng.compression)
            total.add_(part)
            bits += b
        return Message(Gradient(total), bits, new.loss, new.samples + old.samples), None

    def server_update(
        self, server: PPMarinaServer, aggregate: Aggregate[Gradient], gen: np.random.Generator
    ) -> PPMarinaServer:
        n = server.counts.numel()
        if server.sync:
            g = aggregate.mean(lambda u: u.g)
        else:
            g = server.g + (n / self.draws(n)) * aggregate.total(lambda u: u.g)
        x, opt = self.server_opt.step(server.x, g, server.opt)
        sync = bool(gen.random() < self.sync_probability(server.x.numel(), n))
        counts = torch.zeros(n, dtype=torch.int64)
        if not sync:
            drawn = gen.integers(0, n, size=self.draws(n))
            counts = torch.from_numpy(np.bincount(drawn, minlength=n).astype(np.int64))
        return PPMarinaServer(x, server.x, g, sync, counts, opt)

    def downlink_bits(self, server: PPMarinaServer) -> int:
        # x^{k+1}; on a compressed round also x^k (a drawn client may have missed the last
        # round) and the client's multiplicity (an integer up to r)
        d = server.x.numel()
        if server.sync:
            return FLOAT_BITS * d
        return 2 * FLOAT_BITS * d + index_bits(self.draws(len(server.counts)) + 1)

    def theory_step(self, smoothness: theory.Smoothness, dim: int) -> float:
        omega = theory.unbiased_omega(self.compressor, dim, self.name)
        p = self.sync_probability(dim, smoothness.n)
        return theory.pp_marina_step(smoothness, omega, p, self.draws(smoothness.n))
