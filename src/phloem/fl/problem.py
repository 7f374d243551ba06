"""Federated problems: the objective ``f(x) = sum_i w_i f_i(x)`` and a gradient oracle per client.

A :class:`Problem` owns the clients' data and answers two kinds of question: a client's local
oracle (loss, full gradient, minibatch gradient at a point), and global evaluation (objective,
gradient norm, test metrics, distance to a known optimum). Algorithms only ever see oracles.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import torch
from torch import nn

from phloem.data.dataset import ArrayDataset, Partition
from phloem.fl.models import FlatModule
from phloem.fl.theory import Smoothness, smoothness_from_clients

__all__ = [
    "ClientOracle",
    "GradResult",
    "ModelProblem",
    "Problem",
    "ProximalOracle",
    "QuadraticProblem",
    "ShiftedOracle",
    "Task",
]

_EVAL_CHUNK = 8192


class Task(StrEnum):
    """What a model's outputs are: class scores (cross-entropy) or one value (squared loss)."""

    CLASSIFICATION = "classification"
    REGRESSION = "regression"


@dataclass(frozen=True)
class GradResult:
    """A gradient with the loss at the same point and the oracle work it took."""

    grad: torch.Tensor
    loss: float
    samples: int


class ClientOracle(ABC):
    """The local objective ``f_i`` of one client.

    Minibatch methods work on a *workspace*: a flat buffer the oracle can evaluate without a copy
    (for neural models it aliases the model's parameters). Values returned by :meth:`batch_grad`
    are views into reused buffers and are valid until the next call.
    """

    num_samples: int

    @abstractmethod
    def workspace(self, x: torch.Tensor) -> torch.Tensor:
        """A buffer holding a copy of ``x`` that :meth:`batch_grad` evaluates cheaply."""

    @abstractmethod
    def batch_grad(
        self, w: torch.Tensor, idx: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Gradient and loss (0-d tensor) of the mean loss over rows ``idx`` (all rows if None)."""

    def grad(self, x: torch.Tensor) -> GradResult:
        """Full local gradient at ``x`` (a new tensor)."""
        w = self.workspace(x)
        g, loss = self.batch_grad(w, None)
        return GradResult(g.clone(), float(loss), self.num_samples)

    def loss(self, x: torch.Tensor) -> float:
        """Full local loss at ``x``."""
        return self.grad(x).loss


class _Wrapped(ClientOracle):
    """An oracle that changes another's gradient; loss and workspace are the inner one's."""

    def __init__(self, inner: ClientOracle) -> None:
        self.inner = inner
        self.num_samples = inner.num_samples

    def workspace(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner.workspace(x)


class ProximalOracle(_Wrapped):
    """``f_i(w) + mu/2 ||w - center||^2`` (FedProx's local objective); the reported loss is
    ``f_i``'s alone.

    Parameters
    ----------
    inner
        The client's own oracle.
    center
        The point the proximal term pulls towards (the server model).
    mu
        Proximal strength, ``>= 0``.
    """

    def __init__(self, inner: ClientOracle, center: torch.Tensor, mu: float) -> None:
        super().__init__(inner)
        self.center, self.mu = center, mu

    def batch_grad(
        self, w: torch.Tensor, idx: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        g, loss = self.inner.batch_grad(w, idx)
        return g + self.mu * (w - self.center), loss


class ShiftedOracle(_Wrapped):
    """The inner gradient plus a constant ``shift`` (SCAFFOLD's correction ``c - c_i``)."""

    def __init__(self, inner: ClientOracle, shift: torch.Tensor) -> None:
        super().__init__(inner)
        self.shift = shift

    def batch_grad(
        self, w: torch.Tensor, idx: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        g, loss = self.inner.batch_grad(w, idx)
        return g + self.shift, loss


class Problem(ABC):
    """A federated objective over ``num_clients`` clients with weights ``weights`` (sum to 1)."""

    num_clients: int
    dim: int
    dtype: torch.dtype
    weights: np.ndarray

    @abstractmethod
    def client(self, i: int) -> ClientOracle:
        """The oracle of client ``i``."""

    @abstractmethod
    def initial_point(self, gen: torch.Generator) -> torch.Tensor:
        """The starting point ``x0`` (drawn from ``gen`` where the model has random init)."""

    @abstractmethod
    def evaluate(self, x: torch.Tensor, *, full: bool) -> dict[str, float]:
        """Metrics at ``x``: test metrics always; objective and gradient norm when ``full``."""

    @property
    def x_star(self) -> torch.Tensor | None:
        """The minimiser when known in closed form, else ``None``."""
        return None

    def smoothness(self) -> Smoothness | None:
        """Smoothness constants when they can be bounded (convex problems), else ``None``."""
        return None

    @property
    def num_samples(self) -> np.ndarray:
        """Samples per client."""
        return np.array([self.client(i).num_samples for i in range(self.num_clients)])


# --------------------------------------------------------------------------- quadratics


class _QuadraticOracle(ClientOracle):
    def __init__(self, A: torch.Tensor, b: torch.Tensor) -> None:
        self.A, self.b = A, b
        self.num_samples = 1

    def workspace(self, x: torch.Tensor) -> torch.Tensor:
        return x.clone()

    def batch_grad(
        self, w: torch.Tensor, idx: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        Aw = self.A @ w
        loss = 0.5 * torch.dot(w, Aw) - torch.dot(self.b, w)
        return Aw - self.b, loss


class QuadraticProblem(Problem):
    """``f(x) = sum_i w_i (x^T A_i x / 2 - b_i^T x)`` with a closed-form optimum.

    Parameters
    ----------
    A, b
        ``(n, d, d)`` symmetric PSD matrices and ``(n, d)`` linear terms.
    weights
        Client weights summing to one.
    """

    def __init__(self, A: np.ndarray, b: np.ndarray, weights: np.ndarray) -> None:
        self.dtype = torch.float64
        self.num_clients, self.dim = int(b.shape[0]), int(b.shape[1])
        self.weights = np.array(weights, dtype=np.float64)
        self.A = torch.tensor(np.asarray(A), dtype=torch.float64)
        self.b = torch.tensor(np.asarray(b), dtype=torch.float64)
        w = torch.as_tensor(self.weights)
        self._A_bar = torch.einsum("i,ijk->jk", w, self.A)
        self._b_bar = w @ self.b
        self._x_star: torch.Tensor = torch.linalg.solve(self._A_bar, self._b_bar)
        eig = torch.linalg.eigvalsh(self._A_bar)
        self.mu, self.L = float(eig[0]), float(eig[-1])
        self.client_L = np.array([float(torch.linalg.eigvalsh(a)[-1]) for a in self.A])
        self.L_max = float(self.client_L.max())
        self._f_star = self._objective(self._x_star)

    def _objective(self, x: torch.Tensor) -> float:
        return float(0.5 * x @ self._A_bar @ x - self._b_bar @ x)

    def client(self, i: int) -> ClientOracle:
        return _QuadraticOracle(self.A[i], self.b[i])

    def initial_point(self, gen: torch.Generator) -> torch.Tensor:
        return torch.zeros(self.dim, dtype=torch.float64)

    @property
    def x_star(self) -> torch.Tensor:
        return self._x_star

    def smoothness(self) -> Smoothness:
        return smoothness_from_clients(self.L, self.client_L, self.weights, self.mu)

    def evaluate(self, x: torch.Tensor, *, full: bool) -> dict[str, float]:
        out = {"dist_to_opt": float(torch.linalg.vector_norm(x - self._x_star))}
        if full:
            out["objective"] = self._objective(x)
            out["objective_gap"] = out["objective"] - self._f_star
            out["grad_norm"] = float(torch.linalg.vector_norm(self._A_bar @ x - self._b_bar))
        return out


# --------------------------------------------------------------------------- neural models

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class _ModelOracle(ClientOracle):
    def __init__(self, problem: ModelProblem, x: torch.Tensor, y: torch.Tensor) -> None:
        self._p = problem
        self.x, self.y = x, y
        self.num_samples = len(y)

    def workspace(self, x: torch.Tensor) -> torch.Tensor:
        flat = self._p.net.flat
        flat.copy_(x)
        return flat

    def batch_grad(
        self, w: torch.Tensor, idx: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        net = self._p.net
        if w is not net.flat:
            net.flat.copy_(w)
        xb, yb = (self.x, self.y) if idx is None else (self.x[idx], self.y[idx])
        net.grad.zero_()
        loss = self._p.loss_fn(net.module(xb), yb)
        loss.backward()  # type: ignore[no-untyped-call]
        if self._p.l2 > 0.0:
            net.grad.add_(net.flat, alpha=self._p.l2)
            loss = loss + 0.5 * self._p.l2 * torch.dot(net.flat, net.flat)
        return net.grad, loss.detach()


class ModelProblem(Problem):
    """Empirical risk of a torch model over clients' data: ``f_i`` is client ``i``'s mean loss.

    Client weights are proportional to sample counts, so ``f`` is the mean loss over all
    training rows. One model instance is shared by every client of the process.

    Parameters
    ----------
    module
        The model (its parameters become the flat vector ``x``).
    train, test
        Data; ``train`` rows are split among clients by ``partition``.
    partition
        Row indices of each client.
    task
        ``"classification"`` (cross-entropy, accuracy reported) or ``"regression"`` (squared loss).
    l2
        L2 regularisation ``l2/2 ||x||^2`` added to every ``f_i`` (makes logistic regression
        strongly convex).
    dtype
        Parameter and data dtype.
    """

    def __init__(
        self,
        module: nn.Module,
        train: ArrayDataset,
        test: ArrayDataset,
        partition: Partition,
        *,
        task: Task | str = Task.CLASSIFICATION,
        l2: float = 0.0,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        if task not in set(Task):
            raise ValueError(f"task must be 'classification' or 'regression', got {task!r}")
        task = Task(task)
        sizes = partition.sizes()
        empty = np.flatnonzero(sizes == 0)
        if len(empty):
            raise ValueError(
                f"client {int(empty[0])} has no training rows ({len(empty)} empty clients in all); "
                "use fewer clients, a larger Dirichlet alpha, or min_size >= 1 in the partitioner"
            )
        self.task, self.l2, self.dtype = task, float(l2), dtype
        self.net = FlatModule(module, dtype)
        self.dim = self.net.dim
        self._x0 = self.net.initial_vector()
        self.num_clients = partition.num_clients
        self.weights = sizes / sizes.sum()
        # Rows reordered so that every client's data is one contiguous slice (zero-copy views).
        order = np.concatenate(partition.clients)
        bounds = np.concatenate([[0], np.cumsum(sizes)])
        self._x = torch.as_tensor(np.ascontiguousarray(train.x[order])).to(dtype)
        self._y = self._target(train.y[order])
        self._bounds = bounds
        self._xt = torch.as_tensor(np.ascontiguousarray(test.x)).to(dtype)
        self._yt = self._target(test.y)
        self.loss_fn: LossFn
        if task is Task.CLASSIFICATION:
            self.loss_fn = nn.functional.cross_entropy
        else:
            self.loss_fn = _mse

    def _target(self, y: np.ndarray) -> torch.Tensor:
        t = torch.as_tensor(np.ascontiguousarray(y))
        return t.long() if self.task is Task.CLASSIFICATION else t.to(self.dtype).reshape(-1, 1)

    def client(self, i: int) -> ClientOracle:
        lo, hi = int(self._bounds[i]), int(self._bounds[i + 1])
        return _ModelOracle(self, self._x[lo:hi], self._y[lo:hi])

    @property
    def num_samples(self) -> np.ndarray:
        return np.diff(self._bounds)

    def smoothness(self) -> Smoothness | None:
        """Bounds for linear and logistic models (``None`` for anything with a hidden layer).

        Squared loss: ``L_i = lambda_max(X_i^T X_i) / n_i``; softmax cross-entropy:
        ``L_i <= lambda_max(X_i^T X_i) / (2 n_i)`` (the softmax Hessian has norm <= 1/2), with
        ``X`` augmented by a ones column for the bias; plus ``l2``. ``mu`` is ``l2`` for
        cross-entropy and ``lambda_min(X^T X) / N + l2`` for squared loss.
        """
        layers = list(self.net.module.children())
        linear = [m for m in layers if isinstance(m, nn.Linear)]
        if len(linear) != 1 or not all(isinstance(m, (nn.Flatten, nn.Linear)) for m in layers):
            return None
        factor = 0.5 if self.task is Task.CLASSIFICATION else 1.0

        def gram_eigs(x: torch.Tensor) -> torch.Tensor:
            xa = torch.cat(
                [x.reshape(len(x), -1).double(), torch.ones(len(x), 1, dtype=torch.float64)], 1
            )
            small = xa @ xa.T if len(xa) < xa.shape[1] else xa.T @ xa
            eigs: torch.Tensor = torch.linalg.eigvalsh(small)
            return eigs

        client_L = np.array(
            [
                factor * float(gram_eigs(self._x[lo:hi])[-1]) / (hi - lo) + self.l2
                for lo, hi in zip(self._bounds[:-1], self._bounds[1:], strict=True)
            ]
        )
        eigs = gram_eigs(self._x)
        n = len(self._y)
        L = factor * float(eigs[-1]) / n + self.l2
        if self.task is Task.CLASSIFICATION:
            mu = self.l2
        else:
            full_rank_possible = n >= linear[0].in_features + 1
            mu = (float(eigs[0]) / n if full_rank_possible else 0.0) + self.l2
        return smoothness_from_clients(L, client_L, self.weights, mu)

    def initial_point(self, gen: torch.Generator) -> torch.Tensor:
        # The model was initialised (from the run's model-init stream) before it was handed over.
        return self._x0.clone()

    def _dataset_metrics(self, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
        total_loss, correct = 0.0, 0
        with torch.no_grad():
            for lo in range(0, len(y), _EVAL_CHUNK):
                out = self.net.module(x[lo : lo + _EVAL_CHUNK])
                yb = y[lo : lo + _EVAL_CHUNK]
                total_loss += float(self.loss_fn(out, yb)) * len(yb)
                if self.task is Task.CLASSIFICATION:
                    correct += int((out.argmax(1) == yb).sum())
        n = max(len(y), 1)
        return total_loss / n, correct / n

    def evaluate(self, x: torch.Tensor, *, full: bool) -> dict[str, float]:
        self.net.flat.copy_(x)
        reg = 0.5 * self.l2 * float(torch.dot(x, x))
        out: dict[str, float] = {}
        test_loss, test_acc = self._dataset_metrics(self._xt, self._yt)
        out["test_loss"] = test_loss + reg
        if self.task is Task.CLASSIFICATION:
            out["test_acc"] = test_acc
        if full:
            out.update(self._full_train(x, reg))
        return out

    def _full_train(self, x: torch.Tensor, reg: float) -> dict[str, float]:
        # Objective and gradient over all training rows, in chunks, as a sum of chunk gradients.
        n = len(self._y)
        g_sum = torch.zeros_like(x)
        loss_sum, correct = 0.0, 0
        for lo in range(0, n, _EVAL_CHUNK):
            xb, yb = self._x[lo : lo + _EVAL_CHUNK], self._y[lo : lo + _EVAL_CHUNK]
            self.net.grad.zero_()
            out = self.net.module(xb)
            loss = self.loss_fn(out, yb) * len(yb)
            loss.backward()  # type: ignore[no-untyped-call]
            g_sum += self.net.grad
            loss_sum += float(loss.detach())
            if self.task is Task.CLASSIFICATION:
                correct += int((out.argmax(1) == yb).sum())
        g = g_sum / n + self.l2 * x
        res = {"objective": loss_sum / n + reg, "grad_norm": float(torch.linalg.vector_norm(g))}
        if self.task is Task.CLASSIFICATION:
            res["train_acc"] = correct / n
        if not math.isfinite(res["objective"]):
            res["objective"] = math.inf
        return res


def _mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return 0.5 * nn.functional.mse_loss(out, y)
