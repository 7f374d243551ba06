"""GradSkip: ProxSkip whose clients skip gradient computations.

Maranjyan, Safaryan, Richtarik. "GradSkip: Communication-Accelerated Local Gradient Methods with
Better Computational Complexity." 2022 (arXiv:2210.16402, Algorithm 1).

As in ProxSkip / Scaffnew (:mod:`phloem.fl.algorithms.proxskip`: shared coin ``theta_t ~ Be(p)``,
a simulator round = one communication, ``Geometric(p)`` local iterations between two), but in
every iteration client ``i`` also flips its own coin ``eta_i ~ Be(q_i)``:

    h_hat_i = eta_i h_i + (1 - eta_i) grad f_i(x_i)
    x_hat_i = x_i - gamma (grad f_i(x_i) - h_hat_i)

so with ``eta_i = 0`` the client does not move (``x_hat_i = x_i``) and its control variate
becomes its gradient there. On a communication every client sends
``z_i = x_hat_i - (gamma / p) h_hat_i`` and all take ``x = sum_i w_i z_i`` (``sum_i w_i h_hat_i``
need not be zero, so the shift is sent); always ``h_i = h_hat_i + (p / gamma)(x_i - x_hat_i)``.

Once ``eta_i = 0`` has come up, the client stays at ``x_i`` with ``h_i = grad f_i(x_i)`` until
the next communication: every later iteration of the round reproduces the same point, so its
gradient is not computed again. A client with ``q_i < 1`` thus computes
``min(K, Geometric(1 - q_i))`` gradients in a round of ``K`` iterations instead of ``K``
(``Message.samples`` counts those computed). ``q_i = 1`` for every client is ProxSkip.

**Theory.** The paper's convergence theorem for GradSkip assumes every ``f_i`` ``L_i``-smooth
and ``mu_i``-strongly convex and exact gradients, and asks for

- the step ``0 < gamma <= min_i 1 / L_i`` (ProxSkip's step; ``server.lr_rule = "theory"`` sets
  ``local.lr`` to ``1 / max_i L_i``, :func:`phloem.fl.theory.proxskip_step`),
- a communication probability ``p`` in (0, 1] and gradient-step probabilities ``q_i`` in
  (0, 1] (any; they enter the linear rate, not the step),

and then a Lyapunov function of the iterates and control variates contracts linearly to the
exact optimum; with ``q_i = 1`` it is ProxSkip's theorem. Its corollary keeps ProxSkip's
communication complexity (``p`` of order ``sqrt(mu / L)``, the empty ``algorithm.p`` here, as
for ProxSkip) while a client whose local condition number ``kappa_i = L_i / mu_i`` is smaller
than ``kappa_max`` may take ``q_i < 1`` (the paper ties ``q_i`` to ``kappa_i`` and
``kappa_max``; that choice is not computed here: ``q``/``q_min`` are set by hand). Here ``q_i`` is
``q`` for every client, or, with ``q_min`` set, drawn once per client uniformly from
``[q_min, q]``. The skipped gradients are exact only for full gradients, so the local solver
must be ``full``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from phloem.fl import theory
from phloem.fl.algorithms.base import ClientRng, Message
from phloem.fl.algorithms.proxskip import (
    ProxSkip,
    SkipClient,
    SkipServer,
    SkipUplink,
    check_probability,
)
from phloem.fl.local import FullGradient
from phloem.fl.problem import ClientOracle
from phloem.fl.registries import ALGORITHMS

__all__ = ["GradSkip", "GradSkipParams"]


@dataclass(frozen=True)
class GradSkipParams:
    """``p``: probability of a communication per iteration, in (0, 1] (empty: as ProxSkip's,
    ``sqrt(mu / max_i L_i)`` when ``mu`` is known); ``q``: a client's
    probability of a gradient step per iteration, in (0, 1]; ``q_min``: when set, each client
    draws its ``q_i`` once, uniformly from ``[q_min, q]``."""

    p: float | None = None
    q: float = 1.0
    q_min: float | None = None

    def __post_init__(self) -> None:
        if self.p is not None:
            check_probability("p", self.p)
        check_probability("q", self.q)
        if self.q_min is not None:
            check_probability("q_min", self.q_min)
            if self.q_min > self.q:
                raise ValueError(
                    f"algorithm.q_min must be <= algorithm.q = {self.q}, got {self.q_min}"
                )


@ALGORITHMS.register
@dataclass(frozen=True)
class GradSkip(ProxSkip):
    """GradSkip; client ``i`` takes a gradient step with probability ``q_i`` per iteration."""

    name: ClassVar[str] = "gradskip"
    description: ClassVar[str] = (
        "ProxSkip whose clients skip gradient steps (Maranjyan et al., 2022)"
    )
    Params: ClassVar[type[GradSkipParams]] = GradSkipParams  # type: ignore[assignment]
    q: float = 1.0
    q_min: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        GradSkipParams(self.p, self.q, self.q_min)
        if not isinstance(self.local, FullGradient):
            raise ValueError(
                "local.solver must be 'full' for gradskip: a skipped gradient is exact only "
                "for full local gradients"
            )

    def init_client(
        self, x0: torch.Tensor, oracle: ClientOracle, gen: torch.Generator
    ) -> SkipClient:
        q = self.q
        if self.q_min is not None:
            u = float(torch.rand((), generator=gen, dtype=torch.float64))
            q = self.q_min + (self.q - self.q_min) * u
        return SkipClient(torch.zeros_like(x0), x0.clone(), q)

    def client_update(
        self, server: SkipServer, state: SkipClient, oracle: ClientOracle, rng: ClientRng
    ) -> tuple[Message[SkipUplink], SkipClient]:
        h = self.control_variate(server, state)
        y = server.x.clone()
        losses: list[float] = []
        samples = 0
        for _ in range(server.steps):
            gr = self.local.gradient(oracle, y, rng.local)
            losses.append(gr.loss)
            samples += gr.samples
            step = state.q >= 1.0 or float(torch.rand((), generator=rng.local)) < state.q
            if not step:
                # eta_i = 0: h_hat = grad f_i(y), x_hat = y; every later iteration of the round
                # repeats this point, so no more gradients are computed.
                h = gr.grad
                break
            y -= self.gamma * (gr.grad - h)
        return self.send(server, y, h, sum(losses) / len(losses), samples, rng, state.q)

    def theory_step(self, smoothness: theory.Smoothness, dim: int) -> float:
        """``gamma = 1 / max_i L_i``: GradSkip's theorem (Maranjyan, Safaryan, Richtarik, 2022)
        allows ``gamma <= min_i 1/L_i`` for any ``p`` and ``q_i`` in (0, 1], as ProxSkip's."""
        return theory.proxskip_step(smoothness)
