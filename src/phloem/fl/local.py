"""Local solvers: what a client does with its oracle between two communications.

- :class:`FullGradient`: ``steps`` steps of gradient descent on the full local objective.
- :class:`MinibatchSGD`: SGD over shuffled minibatches for ``epochs`` passes or ``steps`` steps,
  optionally with heavy-ball ``momentum`` and decoupled-from-the-loss ``weight_decay`` (PyTorch's
  ``torch.optim.SGD`` rule, the buffer reset at the start of every round).

A method that changes the local objective (FedProx's proximal term, SCAFFOLD's correction)
wraps the client's oracle (:class:`~phloem.fl.problem.ProximalOracle`,
:class:`~phloem.fl.problem.ShiftedOracle`) instead of passing options to the solver. Both solvers
are registered (``[local] solver``); the section's ``lr`` is their step size.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import torch

from phloem.core.registry import as_mapping
from phloem.fl.problem import ClientOracle, GradResult
from phloem.fl.registries import LOCAL_SOLVERS

__all__ = [
    "FullGradient",
    "FullGradientParams",
    "LocalResult",
    "LocalSolver",
    "MinibatchSGD",
    "MinibatchSGDParams",
]


@dataclass(frozen=True)
class LocalResult:
    """The end point of local training and what it cost."""

    x: torch.Tensor
    steps: int
    loss: float  # mean loss over the steps taken (at the iterates before each step)
    samples: int  # per-sample gradients computed


class LocalSolver(ABC):
    """A client's local optimiser."""

    name: ClassVar[str]
    description: ClassVar[str]
    Params: ClassVar[type[Any]]
    lr: float

    @classmethod
    def from_params(cls, params: Any, *, lr: float) -> Self:
        """The solver with step size ``lr`` and its config parameters."""
        return cls(lr=lr, **as_mapping(params))  # type: ignore[call-arg]

    @abstractmethod
    def run(self, oracle: ClientOracle, x: torch.Tensor, gen: torch.Generator) -> LocalResult:
        """Train from ``x``, each step along ``oracle``'s gradient."""

    @abstractmethod
    def gradient(self, oracle: ClientOracle, x: torch.Tensor, gen: torch.Generator) -> GradResult:
        """One gradient estimate at ``x`` (full, or a minibatch) for gradient-type methods."""

    def gradient_pair(
        self, oracle: ClientOracle, x: torch.Tensor, x_prev: torch.Tensor, gen: torch.Generator
    ) -> tuple[GradResult, GradResult]:
        """Gradient estimates at ``x`` and at ``x_prev`` on the *same* minibatch (``gen`` is
        replayed for the second), as MARINA and PAGE difference them; ``gen`` ends where the
        draw at ``x_prev`` left it."""
        saved = gen.get_state()
        new = self.gradient(oracle, x, gen)
        gen.set_state(saved)
        return new, self.gradient(oracle, x_prev, gen)

    @abstractmethod
    def num_steps(self, num_samples: int) -> int:
        """Local steps :meth:`run` takes on a client with ``num_samples`` rows."""


def _descend(
    oracle: ClientOracle, x: torch.Tensor, batches: Iterable[torch.Tensor | None], lr: float
) -> LocalResult:
    """Step from ``x`` once per batch (``None``: all rows); the loop every solver shares."""
    w = oracle.workspace(x)
    loss_sum = torch.zeros((), dtype=x.dtype, device=w.device)
    steps = samples = 0
    for idx in batches:
        g, loss = oracle.batch_grad(w, idx)
        loss_sum += loss
        w.add_(g, alpha=-lr)
        steps += 1
        samples += oracle.num_samples if idx is None else len(idx)
    return LocalResult(w.to(x.device, copy=True), steps, float(loss_sum) / max(steps, 1), samples)


def _descend_heavy_ball(
    oracle: ClientOracle,
    x: torch.Tensor,
    batches: Iterable[torch.Tensor | None],
    lr: float,
    momentum: float,
    weight_decay: float,
) -> LocalResult:
    """:func:`_descend` with ``torch.optim.SGD``'s update: ``d = g + weight_decay * w``,
    ``b = momentum * b + d`` (``b = d`` at the first step), ``w = w - lr * b``."""
    w = oracle.workspace(x)
    loss_sum = torch.zeros((), dtype=x.dtype, device=w.device)
    buf: torch.Tensor | None = None
    steps = samples = 0
    for idx in batches:
        g, loss = oracle.batch_grad(w, idx)
        loss_sum += loss
        d = g + weight_decay * w if weight_decay else g.clone()
        buf = d if buf is None else buf.mul_(momentum).add_(d)
        w.add_(buf, alpha=-lr)
        steps += 1
        samples += oracle.num_samples if idx is None else len(idx)
    return LocalResult(w.to(x.device, copy=True), steps, float(loss_sum) / max(steps, 1), samples)


def _minibatches(
    n: int, batch_size: int, total: int, gen: torch.Generator
) -> Iterator[torch.Tensor]:
    """``total`` minibatches over a fresh shuffle of ``range(n)`` per epoch."""
    done = 0
    while done < total:
        perm = torch.randperm(n, generator=gen)
        for lo in range(0, n, batch_size):
            yield perm[lo : lo + batch_size]
            done += 1
            if done == total:
                return


def _check_lr(lr: float) -> None:
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"local.lr must be positive, got {lr}")


@dataclass(frozen=True)
class FullGradientParams:
    """``steps``: local steps per round (empty: 1)."""

    steps: int | None = None

    def __post_init__(self) -> None:
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"local.steps must be >= 1, got {self.steps}")


@LOCAL_SOLVERS.register
@dataclass(frozen=True)
class FullGradient(LocalSolver):
    """Gradient descent with full local gradients.

    Parameters
    ----------
    lr
        Local step size.
    steps
        Local steps per round.
    """

    name: ClassVar[str] = "full"
    description: ClassVar[str] = "gradient descent on the full local objective, steps per round"
    Params: ClassVar[type[FullGradientParams]] = FullGradientParams

    lr: float = 0.1
    steps: int = 1

    def __post_init__(self) -> None:
        _check_lr(self.lr)
        FullGradientParams(self.steps)

    @classmethod
    def from_params(cls, params: FullGradientParams, *, lr: float) -> Self:
        return cls(lr, params.steps or 1)

    def num_steps(self, num_samples: int) -> int:
        return self.steps

    def run(self, oracle: ClientOracle, x: torch.Tensor, gen: torch.Generator) -> LocalResult:
        batches = (None for _ in range(self.steps))
        return _descend(oracle, x, batches, self.lr)

    def gradient(self, oracle: ClientOracle, x: torch.Tensor, gen: torch.Generator) -> GradResult:
        return oracle.grad(x)


@dataclass(frozen=True)
class MinibatchSGDParams:
    """``batch_size`` rows a step; ``epochs`` passes a round, or exactly ``steps`` steps;
    heavy-ball ``momentum`` in [0, 1) and ``weight_decay`` >= 0 (both 0: plain SGD)."""

    batch_size: int = 32
    epochs: int = 1
    steps: int | None = None
    momentum: float = 0.0
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"local.batch_size must be >= 1, got {self.batch_size}")
        if self.epochs < 1:
            raise ValueError(f"local.epochs must be >= 1, got {self.epochs}")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"local.steps must be >= 1 when set, got {self.steps}")
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"local.momentum must be in [0, 1), got {self.momentum}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(
                f"local.weight_decay must be a finite number >= 0, got {self.weight_decay}"
            )


@LOCAL_SOLVERS.register
@dataclass(frozen=True)
class MinibatchSGD(LocalSolver):
    """Minibatch SGD over a fresh shuffle per epoch (drawn from the client's generator).

    Parameters
    ----------
    lr
        Local step size.
    batch_size
        Rows per minibatch (the last one of an epoch may be smaller).
    epochs
        Passes over the local data per round; ignored when ``steps`` is set.
    steps
        Exact number of local steps per round (reshuffling when an epoch ends), or ``None``.
    momentum, weight_decay
        ``torch.optim.SGD``'s heavy-ball coefficient and L2 weight decay (added to every
        gradient, also :meth:`gradient`'s; the reported loss is the unregularised one). The
        momentum buffer starts afresh every round. Both 0 (the default) is plain SGD, computed
        exactly as before these options existed.
    """

    name: ClassVar[str] = "sgd"
    description: ClassVar[str] = "minibatch SGD over a fresh shuffle per epoch"
    Params: ClassVar[type[MinibatchSGDParams]] = MinibatchSGDParams

    lr: float = 0.1
    batch_size: int = 32
    epochs: int = 1
    steps: int | None = None
    momentum: float = 0.0
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        _check_lr(self.lr)
        MinibatchSGDParams(
            self.batch_size, self.epochs, self.steps, self.momentum, self.weight_decay
        )

    def num_steps(self, num_samples: int) -> int:
        if self.steps is not None:
            return self.steps
        return self.epochs * -(-num_samples // self.batch_size)

    def run(self, oracle: ClientOracle, x: torch.Tensor, gen: torch.Generator) -> LocalResult:
        batches = _minibatches(
            oracle.num_samples, self.batch_size, self.num_steps(oracle.num_samples), gen
        )
        if self.momentum or self.weight_decay:
            return _descend_heavy_ball(
                oracle, x, batches, self.lr, self.momentum, self.weight_decay
            )
        return _descend(oracle, x, batches, self.lr)

    def gradient(self, oracle: ClientOracle, x: torch.Tensor, gen: torch.Generator) -> GradResult:
        n = oracle.num_samples
        if self.batch_size >= n:
            res = oracle.grad(x)
        else:
            idx = torch.randperm(n, generator=gen)[: self.batch_size]
            w = oracle.workspace(x)
            g, loss = oracle.batch_grad(w, idx)
            res = GradResult(g.to(x.device, copy=True), float(loss), len(idx))
        if self.weight_decay:
            return GradResult(res.grad + self.weight_decay * x, res.loss, res.samples)
        return res
