"""Local solvers: what a client does with its oracle between two communications.

- :class:`FullGradient`: ``steps`` steps of gradient descent on the full local objective.
- :class:`MinibatchSGD`: SGD over shuffled minibatches for ``epochs`` passes or ``steps`` steps.

Both accept a proximal term (FedProx) and a constant shift of the gradient (SCAFFOLD's control
variates), so the algorithms stay as short as their pseudocode.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch

from phloem.fl.problem import ClientOracle, GradResult

__all__ = ["FullGradient", "LocalResult", "LocalSolver", "MinibatchSGD"]


@dataclass(frozen=True)
class LocalResult:
    """The end point of local training and what it cost."""

    x: torch.Tensor
    steps: int
    loss: float  # mean loss over the steps taken (at the iterates before each step)
    samples: int  # per-sample gradients computed


class LocalSolver(ABC):
    """A client's local optimiser."""

    lr: float

    @abstractmethod
    def run(
        self,
        oracle: ClientOracle,
        x: torch.Tensor,
        gen: torch.Generator,
        *,
        prox_mu: float = 0.0,
        shift: torch.Tensor | None = None,
    ) -> LocalResult:
        """Train from ``x``; each step follows ``grad + prox_mu (w - x) + shift``."""

    @abstractmethod
    def gradient(self, oracle: ClientOracle, x: torch.Tensor, gen: torch.Generator) -> GradResult:
        """One gradient estimate at ``x`` (full, or a minibatch) for gradient-type methods."""

    @abstractmethod
    def num_steps(self, num_samples: int) -> int:
        """Local steps :meth:`run` takes on a client with ``num_samples`` rows."""


def _step(
    w: torch.Tensor,
    g: torch.Tensor,
    lr: float,
    x: torch.Tensor,
    prox_mu: float,
    shift: torch.Tensor | None,
) -> None:
    if prox_mu:
        g = g + prox_mu * (w - x)
    if shift is not None:
        g = g + shift
    w.add_(g, alpha=-lr)


def _descend(
    oracle: ClientOracle,
    x: torch.Tensor,
    batches: Iterable[torch.Tensor | None],
    lr: float,
    prox_mu: float,
    shift: torch.Tensor | None,
) -> LocalResult:
    """Step from ``x`` once per batch (``None``: all rows); the loop every solver shares."""
    w = oracle.workspace(x)
    loss_sum = torch.zeros((), dtype=x.dtype)
    steps = samples = 0
    for idx in batches:
        g, loss = oracle.batch_grad(w, idx)
        loss_sum += loss
        _step(w, g, lr, x, prox_mu, shift)
        steps += 1
        samples += oracle.num_samples if idx is None else len(idx)
    return LocalResult(w.clone(), steps, float(loss_sum) / max(steps, 1), samples)


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

    lr: float = 0.1
    steps: int = 1

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise ValueError(f"local.lr must be positive, got {self.lr}")
        if self.steps < 1:
            raise ValueError(f"local.steps must be >= 1, got {self.steps}")

    def num_steps(self, num_samples: int) -> int:
        return self.steps

    def run(
        self,
        oracle: ClientOracle,
        x: torch.Tensor,
        gen: torch.Generator,
        *,
        prox_mu: float = 0.0,
        shift: torch.Tensor | None = None,
    ) -> LocalResult:
        batches = (None for _ in range(self.steps))
        return _descend(oracle, x, batches, self.lr, prox_mu, shift)

    def gradient(self, oracle: ClientOracle, x: torch.Tensor, gen: torch.Generator) -> GradResult:
        return oracle.grad(x)


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
    """

    lr: float = 0.1
    batch_size: int = 32
    epochs: int = 1
    steps: int | None = None

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise ValueError(f"local.lr must be positive, got {self.lr}")
        if self.batch_size < 1:
            raise ValueError(f"local.batch_size must be >= 1, got {self.batch_size}")
        if self.epochs < 1:
            raise ValueError(f"local.epochs must be >= 1, got {self.epochs}")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"local.steps must be >= 1 when set, got {self.steps}")

    def num_steps(self, num_samples: int) -> int:
        if self.steps is not None:
            return self.steps
        return self.epochs * -(-num_samples // self.batch_size)

    def run(
        self,
        oracle: ClientOracle,
        x: torch.Tensor,
        gen: torch.Generator,
        *,
        prox_mu: float = 0.0,
        shift: torch.Tensor | None = None,
    ) -> LocalResult:
        batches = _minibatches(
            oracle.num_samples, self.batch_size, self.num_steps(oracle.num_samples), gen
        )
        return _descend(oracle, x, batches, self.lr, prox_mu, shift)

    def gradient(self, oracle: ClientOracle, x: torch.Tensor, gen: torch.Generator) -> GradResult:
        n = oracle.num_samples
        if self.batch_size >= n:
            return oracle.grad(x)
        idx = torch.randperm(n, generator=gen)[: self.batch_size]
        w = oracle.workspace(x)
        g, loss = oracle.batch_grad(w, idx)
        return GradResult(g.clone(), float(loss), len(idx))
