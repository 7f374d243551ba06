"""Server optimisers: how the server turns an aggregated direction into a model step.

Every algorithm hands its server optimiser a *direction* ``g`` (a gradient estimate, or FedAvg's
pseudo-gradient ``x - mean(x_i)``); the optimiser returns the next model. FedAvg with
:class:`ServerSGD` momentum is FedAvgM (Hsu, Qi, Brown, 2019) and with the adaptive ones below
FedAdam, FedAdagrad and FedYogi: Reddi, Charles, Zaheer, Garrett, Rush, Konecny, Kumar,
McMahan, "Adaptive Federated Optimization", ICLR 2021, Algorithm 2.

With ``Delta_t = -g_t`` (the mean client delta), ``eta = lr`` and ``tau = eps``, Algorithm 2 is::

    m_t = beta1 m_{t-1} + (1 - beta1) Delta_t                      (m_0 = 0)
    v_t = v_{t-1} + Delta_t^2                                        FedAdagrad
    v_t = v_{t-1} - (1 - beta2) Delta_t^2 sign(v_{t-1} - Delta_t^2)  FedYogi
    v_t = beta2 v_{t-1} + (1 - beta2) Delta_t^2                      FedAdam
    x_{t+1} = x_t + eta m_t / (sqrt(v_t) + tau)

elementwise, with no bias correction and ``v_0 >= tau^2``. :class:`ServerAdagrad` and
:class:`ServerYogi` implement exactly that, with ``v_0 = initial_accumulator`` (default
``tau^2``, the paper's smallest allowed value). :class:`ServerAdam` differs from the paper: it
starts from ``v_0 = 0`` and divides ``m_t`` by ``1 - beta1^t`` and ``v_t`` by ``1 - beta2^t``
(Kingma and Ba's bias correction, as in most FedAdam code); it is kept as it was so that
earlier runs reproduce.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import torch

from phloem.core.registry import as_mapping
from phloem.fl.registries import SERVER_OPTIMIZERS

__all__ = [
    "OptState",
    "ServerAdagrad",
    "ServerAdagradParams",
    "ServerAdam",
    "ServerAdamParams",
    "ServerOptimizer",
    "ServerSGD",
    "ServerSGDParams",
    "ServerYogi",
    "ServerYogiParams",
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
    if not (math.isfinite(lr) and lr > 0):
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
    description: ClassVar[str] = "SGD, heavy-ball momentum: FedAvgM when > 0 (Hsu et al., 2019)"
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


#: the largest ``eps`` of FedAdagrad/FedYogi (``eps^2``, their default ``v_0``, stays finite)
MAX_EPS = 1e100


def _check_adaptive(beta1: float, beta2: float | None, eps: float, v0: float | None) -> None:
    """The checks of Algorithm 2's constants (``beta2`` ``None``: FedAdagrad has none)."""
    betas = {"beta1": beta1} if beta2 is None else {"beta1": beta1, "beta2": beta2}
    for key, value in betas.items():
        if not 0.0 <= value < 1.0:
            raise ValueError(f"server.{key} must be in [0, 1), got {value}")
    # eps^2 is the default initial accumulator: it must be finite too (1e300 overflowed)
    if not (math.isfinite(eps) and eps > 0 and eps <= MAX_EPS):
        raise ValueError(f"server.eps must be a number in (0, {MAX_EPS:g}], got {eps}")
    if v0 is not None and not (math.isfinite(v0) and v0 >= eps * eps):
        raise ValueError(
            f"server.initial_accumulator must be a finite number >= eps^2 = {eps * eps:g} "
            f"(v_0 >= tau^2 in Reddi et al.), got {v0}"
        )


def _adaptive_step(
    x: torch.Tensor, g: torch.Tensor, state: OptState, lr: float, beta1: float, eps: float,
    v_next: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], v0: float,
) -> tuple[torch.Tensor, OptState]:  # fmt: skip
    """One step of Algorithm 2 along ``-g`` with the second-moment rule ``v_next(v, g^2)``."""
    m_prev = torch.zeros_like(g) if state.m is None else state.m
    v_prev = torch.full_like(g, v0) if state.v is None else state.v
    m = beta1 * m_prev + (1 - beta1) * g
    v = v_next(v_prev, g * g)
    return x - lr * m / (v.sqrt() + eps), OptState(state.step + 1, m, v)


@dataclass(frozen=True)
class ServerAdagradParams:
    """FedAdagrad: ``beta1`` in [0, 1) (0: plain Adagrad), ``eps`` = tau > 0 and
    ``initial_accumulator`` = v_0 >= tau^2 (empty: tau^2)."""

    beta1: float = 0.9
    eps: float = 1e-3
    initial_accumulator: float | None = None

    def __post_init__(self) -> None:
        _check_adaptive(self.beta1, None, self.eps, self.initial_accumulator)


@SERVER_OPTIMIZERS.register
@dataclass(frozen=True)
class ServerAdagrad(ServerOptimizer):
    """FedAdagrad: ``v_t = v_{t-1} + g_t^2``, no bias correction (Reddi et al., Algorithm 2)."""

    name: ClassVar[str] = "adagrad"
    description: ClassVar[str] = (
        "Adagrad on the server, no bias correction (FedAdagrad, Reddi et al., ICLR 2021)"
    )
    Params: ClassVar[type[ServerAdagradParams]] = ServerAdagradParams

    lr: float = 0.1
    beta1: float = 0.9
    eps: float = 1e-3
    initial_accumulator: float | None = None

    def __post_init__(self) -> None:
        _check_lr(self.lr)
        ServerAdagradParams(self.beta1, self.eps, self.initial_accumulator)

    def step(
        self, x: torch.Tensor, g: torch.Tensor, state: OptState
    ) -> tuple[torch.Tensor, OptState]:
        v0 = self.eps**2 if self.initial_accumulator is None else self.initial_accumulator
        return _adaptive_step(x, g, state, self.lr, self.beta1, self.eps, _adagrad_v, v0)


def _adagrad_v(v: torch.Tensor, g2: torch.Tensor) -> torch.Tensor:
    return v + g2


@dataclass(frozen=True)
class ServerYogiParams:
    """FedYogi: ``beta1``, ``beta2`` in [0, 1), ``eps`` = tau > 0, ``initial_accumulator`` =
    v_0 >= tau^2 (empty: tau^2)."""

    beta1: float = 0.9
    beta2: float = 0.99
    eps: float = 1e-3
    initial_accumulator: float | None = None

    def __post_init__(self) -> None:
        _check_adaptive(self.beta1, self.beta2, self.eps, self.initial_accumulator)


@SERVER_OPTIMIZERS.register
@dataclass(frozen=True)
class ServerYogi(ServerOptimizer):
    """FedYogi: ``v_t = v_{t-1} - (1 - beta2) g_t^2 sign(v_{t-1} - g_t^2)``, no bias correction
    (Reddi et al., Algorithm 2)."""

    name: ClassVar[str] = "yogi"
    description: ClassVar[str] = (
        "Yogi on the server, no bias correction (FedYogi, Reddi et al., ICLR 2021)"
    )
    Params: ClassVar[type[ServerYogiParams]] = ServerYogiParams

    lr: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.99
    eps: float = 1e-3
    initial_accumulator: float | None = None

    def __post_init__(self) -> None:
        _check_lr(self.lr)
        ServerYogiParams(self.beta1, self.beta2, self.eps, self.initial_accumulator)

    def step(
        self, x: torch.Tensor, g: torch.Tensor, state: OptState
    ) -> tuple[torch.Tensor, OptState]:
        v0 = self.eps**2 if self.initial_accumulator is None else self.initial_accumulator
        c = 1.0 - self.beta2

        def v_next(v: torch.Tensor, g2: torch.Tensor) -> torch.Tensor:
            return v - c * g2 * torch.sign(v - g2)

        return _adaptive_step(x, g, state, self.lr, self.beta1, self.eps, v_next, v0)
