"""ProxSkip / Scaffnew: local gradient steps with control variates, communication skipped.

Mishchenko, Malinovsky, Stich, Richtarik. "ProxSkip: Yes! Local Gradient Steps Provably Lead to
Communication Acceleration! Finally!" ICML 2022 (Algorithm 2, Scaffnew: ProxSkip applied to
the consensus reformulation of federated learning).

Every iteration ``t`` each client takes one gradient step corrected by its control variate
``h_i`` (with ``sum_i w_i h_i = 0``),

    x_hat_i = x_i - gamma (g_i(x_i) - h_i),

and a coin ``theta_t ~ Be(p)``, shared by all clients, decides whether they communicate. If it
does, every client sends ``z_i = x_hat_i - (gamma / p) h_i`` and all take the average
``x = sum_i w_i z_i`` (the prox of the consensus constraint in the ``w``-weighted norm;
``= sum_i w_i x_hat_i`` while ``sum_i w_i h_i = 0``); otherwise ``x_i = x_hat_i``. Then

    h_i += (p / gamma) (x_i - x_hat_i),

which is zero except after a communication. With weights ``w_i`` the method is Scaffnew in the
norm ``sum_i w_i ||x_i||^2``, where the gradient of ``sum_i w_i f_i(x_i)`` is ``(grad f_i)_i``;
with equal weights it is the paper's algorithm exactly.

**Rounds.** A simulator round is one communication. Between two communications a client takes
``K ~ Geometric(p)`` local steps (``P(K = k) = (1 - p)^(k-1) p``, ``k >= 1``, mean ``1/p``):
the iterations up to and including the one whose coin came up. The server's generator draws
``K`` for the next round (the shared coin, like MARINA's ``sync``); the first round, drawn
before any server generator exists, takes ``K = round(1/p)``. So bits are spent only on
communications, and the oracle work of a round is ``K`` gradients per client. A client applies
its ``h_i`` update at the start of the next round, when it has learnt ``x`` (kept with
``x_hat_i`` in its state).

**Guarantees.** When every ``f_i`` is ``L``-smooth and ``mu``-strongly convex and gradients are
exact, ``gamma <= 1/L`` and any ``p`` in (0, 1] give linear convergence to the exact optimum
(a Lyapunov function contracting by ``1 - min(gamma mu, p^2)`` per iteration); ``p = sqrt(mu/L)``
needs ``O(sqrt(L/mu) log 1/eps)`` communications. An empty ``algorithm.p`` takes that value,
``p = sqrt(mu / max_i L_i)`` with ``mu`` the problem's (``Smoothness.mu``, of ``f``; see
:func:`phloem.fl.theory.proxskip_probability`), when ``mu`` is known, and ``0.2`` otherwise.
``gamma`` is the local solver's ``lr``
(``server.lr_rule = "theory"`` sets it to ``1 / max_i L_i``); the local solver gives only the
gradient estimate (``full``: exact; ``sgd``: a minibatch, converging to a neighbourhood).
Scaffnew needs every client at every communication: the round's cohort is all clients whatever
the sampler says (a client that drops out of a round keeps its old ``h_i`` and ``x_hat_i``,
which breaks ``sum_i w_i h_i = 0``: dropouts make it a heuristic). So does a compressor (on
``z_i - x``): neither is covered by the theorem.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Self

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
from phloem.fl.server_opt import ServerSGD

__all__ = ["FALLBACK_P", "ProxSkip", "ProxSkipParams", "SkipClient", "SkipServer", "SkipUplink"]

#: ``p`` when ``algorithm.p`` is empty and the problem's ``mu`` is unknown
FALLBACK_P = 0.2


def check_probability(key: str, value: float) -> None:
    """Raise ``ValueError`` naming ``algorithm.key`` unless ``value`` is in (0, 1]."""
    if not 0.0 < value <= 1.0:  # false for NaN too
        raise ValueError(f"algorithm.{key} must be in (0, 1], got {value}")


@dataclass(frozen=True)
class ProxSkipParams:
    """``p``: probability that an iteration ends in a communication, in (0, 1] (empty: the
    theory's ``sqrt(mu / max_i L_i)`` when the problem's ``mu`` is known, else
    :data:`FALLBACK_P`); a round then has ``Geometric(p)`` local steps, ``1/p`` on average."""

    p: float | None = None

    def __post_init__(self) -> None:
        if self.p is not None:
            check_probability("p", self.p)


@dataclass(frozen=True)
class SkipUplink(Uplink):
    """``delta = z_i - x`` with ``z_i = x_hat_i - (gamma / p) h_i``: what the average needs."""

    delta: torch.Tensor


@dataclass(frozen=True)
class SkipServer:
    """The model ``x`` and ``steps``: the local steps of the next round (the shared coin)."""

    x: torch.Tensor
    steps: int


@dataclass(frozen=True)
class SkipClient:
    """A client's control variate ``h`` and its last local iterate ``x_hat``, whose
    ``h += (p/gamma)(x - x_hat)`` waits for the next model ``x``; ``q``: GradSkip's
    probability of a gradient step (1 for ProxSkip)."""

    h: torch.Tensor
    x_hat: torch.Tensor
    q: float = 1.0


@ALGORITHMS.register
@dataclass(frozen=True)
class ProxSkip(Algorithm[SkipServer, SkipClient, SkipUplink]):
    """ProxSkip / Scaffnew; ``gamma`` is ``local.lr``, the local steps ``Geometric(p)``.

    ``p=None`` is filled in by :meth:`with_constants` (the experiment builder calls it); until
    then the method cannot run.
    """

    name: ClassVar[str] = "proxskip"
    description: ClassVar[str] = (
        "Scaffnew: local steps with control variates, rare communication "
        "(Mishchenko et al., ICML 2022)"
    )
    Params: ClassVar[type[ProxSkipParams]] = ProxSkipParams
    theory_bounds_local_step: ClassVar[bool] = True
    local: LocalSolver = field(default_factory=FullGradient)
    p: float | None = None

    def __post_init__(self) -> None:
        ProxSkipParams(self.p)
        opt = self.server_opt
        if not (isinstance(opt, ServerSGD) and opt.lr == 1.0 and opt.momentum == 0.0):
            raise ValueError(
                f"server.lr must be 1 with the sgd server optimiser and no momentum for "
                f"{self.name}: its communication is the exact average (gamma is local.lr)"
            )

    @property
    def prob(self) -> float:
        """``p``, the probability that an iteration ends in a communication.

        Raises
        ------
        ValueError
            When ``p`` is still empty (not filled in by :meth:`with_constants`).
        """
        if self.p is None:
            raise ValueError(
                f"algorithm.p is empty for {self.name}: set it, or build the algorithm with "
                "with_constants(problem.smoothness) (the experiment builder does)"
            )
        return self.p

    def with_constants(self, smoothness: Callable[[], theory.Smoothness | None]) -> Self:
        """With an empty ``p`` set to ``sqrt(mu / max_i L_i)`` (:data:`FALLBACK_P` when ``mu``
        is unknown)."""
        if self.p is not None:
            return self
        s = smoothness()
        p = theory.proxskip_probability(s) if s is not None else None
        return dataclasses.replace(self, p=FALLBACK_P if p is None else p)

    @property
    def gamma(self) -> float:
        """The step size ``gamma`` of the local gradient steps."""
        return self.local.lr

    def first_steps(self) -> int:
        """Local steps of round 1 (``round(1/p)``, the mean of ``Geometric(p)``)."""
        return max(1, round(1.0 / self.prob))

    def init_server(
        self, x0: torch.Tensor, client_states: Sequence[SkipClient], weights: np.ndarray
    ) -> SkipServer:
        return SkipServer(x0, self.first_steps())

    def init_client(
        self, x0: torch.Tensor, oracle: ClientOracle, gen: torch.Generator
    ) -> SkipClient:
        return SkipClient(torch.zeros_like(x0), x0.clone())

    def round_cohort(self, server: SkipServer, sampled: np.ndarray, num_clients: int) -> np.ndarray:
        return np.arange(num_clients, dtype=np.int64)

    def control_variate(self, server: SkipServer, state: SkipClient) -> torch.Tensor:
        """``h_i`` after the last communication: ``h + (p/gamma)(x - x_hat)``."""
        return state.h + (self.prob / self.gamma) * (server.x - state.x_hat)

    def client_update(
        self, server: SkipServer, state: SkipClient, oracle: ClientOracle, rng: ClientRng
    ) -> tuple[Message[SkipUplink], SkipClient]:
        h = self.control_variate(server, state)
        y = server.x.clone()
        loss = 0.0
        samples = 0
        for _ in range(server.steps):
            gr = self.local.gradient(oracle, y, rng.local)
            y -= self.gamma * (gr.grad - h)
            loss += gr.loss
            samples += gr.samples
        return self.send(server, y, h, loss / server.steps, samples, rng, state.q)

    def send(
        self,
        server: SkipServer,
        x_hat: torch.Tensor,
        h: torch.Tensor,
        loss: float,
        samples: int,
        rng: ClientRng,
        q: float,
    ) -> tuple[Message[SkipUplink], SkipClient]:
        """The message ``z_i - x`` and the state that waits for the next model."""
        z = x_hat - (self.gamma / self.prob) * h
        delta, bits = compress(self.compressor, z - server.x, rng.compression)
        return Message(SkipUplink(delta), bits, loss, samples), SkipClient(h, x_hat, q)

    def server_update(
        self, server: SkipServer, aggregate: Aggregate[SkipUplink], gen: np.random.Generator
    ) -> SkipServer:
        x = server.x + aggregate.mean(lambda u: u.delta)
        return SkipServer(x, int(gen.geometric(self.prob)))

    def theory_step(self, smoothness: theory.Smoothness, dim: int) -> float:
        return theory.proxskip_step(smoothness)
