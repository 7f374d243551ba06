"""Server optimisers: how the server turns an aggregated direction into a model step.

Every algorithm hands its server optimiser a *direction* ``g`` (a gradient estimate, or FedAvg's
pseudo-gradient ``x - mean(x_i)``); the optimiser returns the next model. FedAvg with
:class:`ServerAdam` is FedAdam and with :class:`ServerSGD` momentum FedAvgM (Reddi et al.,
"Adaptive Federated Optimization", ICLR 2021; Hsu et al. 2019).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch

__all__ = ["OptState", "ServerAdam", "ServerOptimizer", "ServerSGD"]


@dataclass(frozen=True)
class OptState:
    """Optimiser buffers (empty for plain SGD) and the step count."""

    step: int = 0
    m: torch.Tensor | None = None
    v: torch.Tensor | None = None


class ServerOptimizer(ABC):
    """A stateless rule ``(x, g, state) -> (x', state')``."""

    lr: float

    @abstractmethod
    def step(
        self, x: torch.Tensor, g: torch.Tensor, state: OptState
    ) -> tuple[torch.Tensor, OptState]:
        """One step along ``-g``; never modifies its inputs."""


@dataclass(frozen=True)
class ServerSGD(ServerOptimizer):
    """``x' = x - lr * d`` with heavy-ball momentum ``d = momentum * d + g`` when momentum > 0."""

    lr: float = 1.0
    momentum: float = 0.0

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise ValueError(f"server.lr must be positive, got {self.lr}")
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"server.momentum must be in [0, 1), got {self.momentum}")

    def step(
        self, x: torch.Tensor, g: torch.Tensor, state: OptState
    ) -> tuple[torch.Tensor, OptState]:
        if self.momentum == 0.0:
            return x - self.lr * g, OptState(state.step + 1)
        m = g.clone() if state.m is None else self.momentum * state.m + g
        return x - self.lr * m, OptState(state.step + 1, m)


@dataclass(frozen=True)
class ServerAdam(ServerOptimizer):
    """Adam on the server (FedAdam), with bias correction and ``eps`` as in Reddi et al."""

    lr: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.99
    eps: float = 1e-3

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise ValueError(f"server.lr must be positive, got {self.lr}")
        for name in ("beta1", "beta2"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"server.{name} must be in [0, 1), got {getattr(self, name)}")
        if self.eps <= 0:
            raise ValueError(f"server.eps must be positive, got {self.eps}")

    def step(
        self, x: torch.Tensor, g: torch.Tensor, state: OptState
    ) -> tuple[torch.Tensor, OptState]:
        t = state.step + 1
        m = (1 - self.beta1) * g if state.m is None else self.beta1 * state.m + (1 - self.beta1) * g
        v = (
            (1 - self.beta2) * g * g
            if state.v is None
            else self.beta2 * state.v + (1 - self.beta2) * g * g
        )
        m_hat = m / (1 - self.beta1**t)
        v_hat = v / (1 - self.beta2**t)
        return x - self.lr * m_hat / (v_hat.sqrt() + self.eps), OptState(t, m, v)
