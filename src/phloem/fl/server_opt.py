"""Server optimisers: how the server turns an aggregated direction into a model step.

Every algorithm hands its server optimiser a *direction* ``g`` (a gradient estimate, or FedAvg's
pseudo-gradient ``x - mean(x_i)``); the optimiser returns the next model. FedAvg with
:class:`ServerAdam` is FedAdam and with :class:`ServerSGD` momentum FedAvgM (Reddi et al.,
"Adaptive Federated Optimization", ICLR 2021; Hsu et al. 2019).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import torch

from phloem.core.registry import as_mapping
from phloem.fl.registries import SERVER_OPTIMIZERS

__all__ = [
    "OptState",
    "ServerAdam",
    "ServerAdamParams",
    "ServerOptimizer",
    "ServerSGD",
    "ServerSGDParams",
]


@dataclass(frozen=True)
class OptState:
    """Optimiser buffers (empty for plain SGD) and the step count."""

    step: int = 0
    m: torch.Tensor | None = None
    v: torch.Tensor | None = None


class ServerOptimizer(ABC):
    """A stateless rule ``(x, g, state) -> (x', state')``; registered by ``name``.

    Its learning rate is the section's ``[server] lr``; the rest are its own ``Params``.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    Params: ClassVar[type[Any]]
    lr: float

    @classmethod
    def from_params(cls, params: Any, *, lr: float) -> Self:
        """The optimiser with learning rate ``lr`` and parameters ``params``."""
        return cls(lr=lr, **as_mapping(params))  # type: ignore[call-arg]

    @abstractmethod
    def step(
        self, x: torch.Tensor, g: torch.Tensor, state: OptState
    ) -> tuple[torch.Tensor, OptState]:
        """One step along ``-g``; never modifies its inputs."""


def _check_lr(lr: float) -> None:
    if not lr > 0:
        raise ValueError(f"server.lr must be positive, got {lr}")


@dataclass(frozen=True)
class ServerSGDParams:
    """``momentum``: heavy-ball coefficient in [0, 1) (FedAvgM); 0 is plain SGD."""

    momentum: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"server.momentum must be in [0, 1), got {self.momentum}")


@SERVER_OPTIMIZERS.register
@dataclass(frozen=True)
class ServerSGD(ServerOptimizer):
    """``x' = x - lr * d`` with heavy-ball momentum ``d = momentum * d + g`` when momentum > 0."""

    name: ClassVar[str] = "sgd"
    description: ClassVar[str] = "SGD with heavy-ball momentum (FedAvgM when momentum > 0)"
    Params: ClassVar[type[ServerSGDParams]] = ServerSGDParams

    lr: float = 1.0
    momentum: float = 0.0

    def __post_init__(self) -> None:
        _check_lr(self.lr)
        ServerSGDParams(self.momentum)

    def step(
        self, x: torch.Tensor, g: torch.Tensor, state: OptState
    ) -> tuple[torch.Tensor, OptState]:
        if self.momentum == 0.0:
            return x - self.lr * g, OptState(state.step + 1)
        m = g.clone() if state.m is None else self.momentum * state.m + g
        return x - self.lr * m, OptState(state.step + 1, m)


@dataclass(frozen=True)
class ServerAdamParams:
    """Adam's ``beta1``, ``beta2`` in [0, 1) and ``eps`` > 0 (FedAdam's defaults)."""

    beta1: float = 0.9
    beta2: float = 0.99
    eps: float = 1e-3

    def __post_init__(self) -> None:
        for key in ("beta1", "beta2"):
            if not 0.0 <= getattr(self, key) < 1.0:
                raise ValueError(f"server.{key} must be in [0, 1), got {getattr(self, key)}")
        if not self.eps > 0:
            raise ValueError(f"server.eps must be positive, got {self.eps}")


@SERVER_OPTIMIZERS.register
@dataclass(frozen=True)
class ServerAdam(ServerOptimizer):
    """Adam on the server (FedAdam), with bias correction and ``eps`` as in Reddi et al."""

    name: ClassVar[str] = "adam"
    description: ClassVar[str] = "Adam with bias correction (FedAdam, Reddi et al. 2021)"
    Params: ClassVar[type[ServerAdamParams]] = ServerAdamParams

    lr: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.99
    eps: float = 1e-3

    def __post_init__(self) -> None:
        _check_lr(self.lr)
        ServerAdamParams(self.beta1, self.beta2, self.eps)

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
