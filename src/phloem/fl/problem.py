"""Federated problems: the objective ``f(x) = sum_i w_i f_i(x)`` and a gradient oracle per client.

A :class:`Problem` owns the clients' data and answers two kinds of question: a client's local
oracle (loss, full gradient, minibatch gradient at a point), and global evaluation (objective,
gradient norm, test metrics, distance to a known optimum). Algorithms only ever see oracles.
"""

from __future__ import annotations

import copy
import hashlib
import math
import os
import tempfile
import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import numpy as np
import torch
from torch import nn

from phloem.data.dataset import ArrayDataset, Partition
from phloem.fl.models import FlatModule
from phloem.fl.theory import Smoothness, pinned_threads, smoothness_from_clients

__all__ = [
    "ClientOracle",
    "GradResult",
    "ModelProblem",
    "Optimum",
    "Problem",
    "ProximalOracle",
    "QuadraticProblem",
    "ShiftedOracle",
    "Task",
]

_EVAL_CHUNK = 8192


class Task(StrEnum):
    """What a model's outputs are: class scores (cross-entropy), one value (squared loss), or
    one logit for two classes (logistic loss on labels +-1)."""

    CLASSIFICATION = "classification"
    REGRESSION = "regression"
    BINARY = "binary"


@dataclass(frozen=True)
class Optimum:
    """The exact minimiser of a convex problem's objective (float64).

    ``x`` the minimiser, ``f`` the objective there, ``grad_norm`` ``||grad f(x)||`` reached,
    ``iterations`` the Newton steps it took, ``seconds`` their time."""

    x: torch.Tensor
    f: float
    grad_norm: float
    iterations: int
    seconds: float
    #: where it was read from when taken from the cache (checked there: ``grad_norm`` is the
    #: gradient recomputed at the cached ``x``), else ``None``
    cached: Path | None = None


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
        """Full local gradient at ``x`` (a new tensor, on ``x``'s device)."""
        w = self.workspace(x)
        g, loss = self.batch_grad(w, None)
        return GradResult(g.to(x.device, copy=True), float(loss), self.num_samples)

    def loss(self, x: torch.Tensor) -> float:
        """Full local loss at ``x``."""
        return self.grad(x).loss


class _Wrapped(ClientOracle):
    """An oracle that changes another's gradient; loss and workspace are the inner one's."""

    def __init__(self, inner: ClientOracle) -> None:
        self.inner = inner
        self.num_samples = inner.num_samples
        self._moved: dict[tuple[int, torch.device], torch.Tensor] = {}

    def workspace(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner.workspace(x)

    def _on(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """``t`` on ``like``'s device (the workspace may live on a GPU), moved once."""
        if t.device == like.device:
            return t
        key = (id(t), like.device)
        if key not in self._moved:
            self._moved[key] = t.to(like.device)
        return self._moved[key]


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
        return g + self.mu * (w - self._on(self.center, w)), loss


class ShiftedOracle(_Wrapped):
    """The inner gradient plus a constant ``shift`` (SCAFFOLD's correction ``c - c_i``)."""

    def __init__(self, inner: ClientOracle, shift: torch.Tensor) -> None:
        super().__init__(inner)
        self.shift = shift

    def batch_grad(
        self, w: torch.Tensor, idx: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        g, loss = self.inner.batch_grad(w, idx)
        return g + self._on(self.shift, w), loss


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

    def shard(self, clients: Sequence[int]) -> Problem | None:
        """A problem holding only ``clients``' data, its client ``j`` being ``clients[j]``.

        For a backend that spreads clients over machines (:class:`phloem.fl.ray_backend.
        RayBackend`): each machine keeps its shard, whose oracles compute exactly what this
        problem's do. Its ``weights`` are the clients' weights in the whole objective; it
        carries no test data. ``None`` (the default) when the problem cannot be split.
        """
        return None


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
        with pinned_threads():  # the same constants, bit for bit, on every machine
            eig = torch.linalg.eigvalsh(self._A_bar)
            self.client_L = np.array([float(torch.linalg.eigvalsh(a)[-1]) for a in self.A])
        self.mu, self.L = float(eig[0]), float(eig[-1])
        self.L_max = float(self.client_L.max())
        self._f_star = self._objective(self._x_star)

    def _objective(self, x: torch.Tensor) -> float:
        return float(0.5 * x @ self._A_bar @ x - self._b_bar @ x)

    def client(self, i: int) -> ClientOracle:
        return _QuadraticOracle(self.A[i], self.b[i])

    def shard(self, clients: Sequence[int]) -> QuadraticProblem:
        part = copy.copy(self)
        ids = torch.as_tensor(np.asarray(clients, dtype=np.int64))
        part.A, part.b = self.A[ids].clone(), self.b[ids].clone()
        part.num_clients, part.weights = len(ids), self.weights[ids.numpy()]
        part.client_L = self.client_L[ids.numpy()]
        return part

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
        ``"classification"`` (cross-entropy, accuracy reported, and top-5 accuracy with at
        least 5 classes) or ``"regression"`` (squared loss).
    l2
        L2 regularisation ``l2/2 ||x||^2`` added to every ``f_i`` (makes logistic regression
        strongly convex).
    dtype
        Parameter and float-feature dtype. Integer features (token indices) stay ``int64``.
    device
        Where the model and the data tensors live (``"cpu"``, ``"cuda"``, ``"cuda:1"``). The
        vectors the algorithms see (``x``, gradients, local results) stay on the CPU; a
        client's local steps run on the device, with one copy of ``x`` in and out.
    perplexity
        Also report ``test_perplexity = exp(test cross-entropy)`` (language models).
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
        device: torch.device | str = "cpu",
        perplexity: bool = False,
    ) -> None:
        if task not in set(Task):
            raise ValueError(f"task must be one of {[t.value for t in Task]}, got {task!r}")
        task = Task(task)
        sizes = partition.sizes()
        empty = np.flatnonzero(sizes == 0)
        if len(empty):
            raise ValueError(
                f"client {int(empty[0])} has no training rows ({len(empty)} empty clients in all); "
                "use fewer clients, a larger Dirichlet alpha, or min_size >= 1 in the partitioner"
            )
        self.task, self.l2, self.dtype = task, float(l2), dtype
        self.device = torch.device(device)
        self.perplexity = bool(perplexity) and task is Task.CLASSIFICATION
        self.num_classes = train.num_classes
        self.net = FlatModule(module, dtype, self.device)
        self.dim = self.net.dim
        self._x0 = self.net.initial_vector()
        self.num_clients = partition.num_clients
        self.weights = sizes / sizes.sum()
        # Rows reordered so that every client's data is one contiguous slice (zero-copy views).
        order = np.concatenate(partition.clients)
        bounds = np.concatenate([[0], np.cumsum(sizes)])
        self._x = self._features(train.x[order])
        self._y = self._target(train.y[order])
        self._bounds = bounds
        self._xt = self._features(test.x)
        self._yt = self._target(test.y)
        self.loss_fn: LossFn
        if task is Task.CLASSIFICATION:
            self.loss_fn = nn.functional.cross_entropy
        elif task is Task.BINARY:
            self.loss_fn = _logistic
        else:
            self.loss_fn = _mse
        self.optimum: Optimum | None = None  # set by :meth:`solve` (or a cached copy)

    def _features(self, x: np.ndarray) -> torch.Tensor:
        """Float features in the problem's dtype, integer ones (token indices) as int64."""
        t = torch.as_tensor(np.ascontiguousarray(x))
        kind = torch.long if np.issubdtype(x.dtype, np.integer) else self.dtype
        return t.to(device=self.device, dtype=kind)

    def _target(self, y: np.ndarray) -> torch.Tensor:
        t = torch.as_tensor(np.ascontiguousarray(y))
        if self.task is Task.CLASSIFICATION:
            return t.to(self.device, torch.long)
        if self.task is Task.BINARY:
            if len(t) and not bool(((t == 0) | (t == 1)).all()):
                raise ValueError("the binary logistic model needs labels {0, 1} (or +-1)")
            return (2 * t - 1).to(self.device, self.dtype)  # +-1
        return t.to(self.device, self.dtype).reshape(-1, 1)

    def client(self, i: int) -> ClientOracle:
        lo, hi = int(self._bounds[i]), int(self._bounds[i + 1])
        return _ModelOracle(self, self._x[lo:hi], self._y[lo:hi])

    @property
    def num_samples(self) -> np.ndarray:
        return np.diff(self._bounds)

    def shard(self, clients: Sequence[int]) -> ModelProblem:
        ids = np.asarray(clients, dtype=np.int64)
        lo, hi = self._bounds[ids], self._bounds[ids + 1]
        spans = [np.arange(a, b) for a, b in zip(lo, hi, strict=True)]
        rows = torch.as_tensor(np.concatenate([np.zeros(0, np.int64), *spans]))
        part = copy.copy(self)
        part._x, part._y = self._x[rows], self._y[rows]
        part._bounds = np.concatenate([[0], np.cumsum(hi - lo)])
        part._xt, part._yt = self._xt[:0].clone(), self._yt[:0].clone()
        part.num_clients, part.weights = len(ids), self.weights[ids]
        part.optimum = None
        part.__dict__.pop("_smooth", None)
        return part

    def smoothness(self) -> Smoothness | None:
        """Bounds for linear and logistic models (``None`` for anything with a hidden layer),
        computed once per problem with torch on one thread (see :meth:`_smoothness`)."""
        if not hasattr(self, "_smooth"):
            with pinned_threads():  # the same constants, bit for bit, on every machine
                self._smooth = self._smoothness()
        return self._smooth

    def _smoothness(self) -> Smoothness | None:
        """Bounds for linear and logistic models (``None`` for anything with a hidden layer).

        Squared loss: ``L_i = lambda_max(X_i^T X_i) / n_i``; softmax cross-entropy:
        ``L_i <= lambda_max(X_i^T X_i) / (2 n_i)`` (the softmax Hessian has norm <= 1/2); binary
        logistic loss: ``L_i = lambda_max(X_i^T X_i) / (4 n_i)`` (sigmoid' <= 1/4); ``X``
        augmented by a ones column when the model has a bias; plus ``l2``. ``mu`` is ``l2`` for
        the logistic losses and ``lambda_min(X^T X) / N + l2`` for squared loss.
        """
        layers = list(self.net.module.children())
        linear = [m for m in layers if isinstance(m, nn.Linear)]
        if len(linear) != 1 or not all(isinstance(m, (nn.Flatten, nn.Linear)) for m in layers):
            return None
        factor = {Task.CLASSIFICATION: 0.5, Task.BINARY: 0.25, Task.REGRESSION: 1.0}[self.task]
        bias = linear[0].bias is not None

        def gram_eigs(x: torch.Tensor) -> torch.Tensor:
            xa = x.reshape(len(x), -1).double().cpu()
            if bias:
                xa = torch.cat([xa, torch.ones(len(x), 1, dtype=torch.float64)], 1)
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
        if self.task is not Task.REGRESSION:
            mu = self.l2
        else:
            full_rank_possible = n >= linear[0].in_features + 1
            mu = (float(eigs[0]) / n if full_rank_possible else 0.0) + self.l2
        return smoothness_from_clients(L, client_L, self.weights, mu)

    def initial_point(self, gen: torch.Generator) -> torch.Tensor:
        # The model was initialised (from the run's model-init stream) before it was handed over.
        return self._x0.clone()

    @property
    def reports_top5(self) -> bool:
        """Whether evaluation reports ``test_top5`` (classification with >= 5 classes)."""
        return self.task is Task.CLASSIFICATION and (self.num_classes or 0) >= 5

    def _dataset_metrics(self, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float, float]:
        """Mean loss, accuracy and top-5 accuracy (0 unless :attr:`reports_top5`)."""
        total_loss, correct, top5 = 0.0, 0, 0
        with torch.no_grad():
            for lo in range(0, len(y), _EVAL_CHUNK):
                out = self.net.module(x[lo : lo + _EVAL_CHUNK])
                yb = y[lo : lo + _EVAL_CHUNK]
                total_loss += float(self.loss_fn(out, yb)) * len(yb)
                correct += _correct(self.task, out, yb)
                if self.reports_top5:
                    top5 += _correct_top_k(out, yb, 5)
        n = max(len(y), 1)
        return total_loss / n, correct / n, top5 / n

    def evaluate(self, x: torch.Tensor, *, full: bool) -> dict[str, float]:
        self.net.flat.copy_(x)
        reg = 0.5 * self.l2 * float(torch.dot(x, x))
        out: dict[str, float] = {}
        test_loss, test_acc, test_top5 = self._dataset_metrics(self._xt, self._yt)
        out["test_loss"] = test_loss + reg
        if self.task is not Task.REGRESSION:
            out["test_acc"] = test_acc
        if self.reports_top5:
            out["test_top5"] = test_top5
        if self.perplexity:
            # exp of the mean test cross-entropy (without the l2 term); inf past exp's range
            out["test_perplexity"] = math.exp(test_loss) if test_loss < 700 else math.inf
        if self.optimum is not None:
            out["dist_to_opt"] = float(torch.linalg.vector_norm(x.double() - self.optimum.x))
        if full:
            out.update(self._full_train(x, reg))
            if self.optimum is not None:
                out["objective_gap"] = out["objective"] - self.optimum.f
        return out

    def _full_train(self, x: torch.Tensor, reg: float) -> dict[str, float]:
        # Objective and gradient over all training rows, in chunks, as a sum of chunk gradients.
        n = len(self._y)
        g_sum = torch.zeros_like(self.net.grad)
        loss_sum, correct = 0.0, 0
        for lo in range(0, n, _EVAL_CHUNK):
            xb, yb = self._x[lo : lo + _EVAL_CHUNK], self._y[lo : lo + _EVAL_CHUNK]
            self.net.grad.zero_()
            out = self.net.module(xb)
            loss = self.loss_fn(out, yb) * len(yb)
            loss.backward()  # type: ignore[no-untyped-call]
            g_sum += self.net.grad
            loss_sum += float(loss.detach())
            correct += _correct(self.task, out, yb)
        g = g_sum.to(x.device) / n + self.l2 * x
        res = {"objective": loss_sum / n + reg, "grad_norm": float(torch.linalg.vector_norm(g))}
        if self.task is not Task.REGRESSION:
            res["train_acc"] = correct / n
        if not math.isfinite(res["objective"]):
            res["objective"] = math.inf
        return res

    def hessian_norm(self, x: torch.Tensor) -> float:
        """``lambda_max`` of the binary logistic objective's Hessian at ``x``: the local
        smoothness there (at the optimum, the constant linear convergence depends on)."""
        a = _design(self.net.module, self._x)
        return float(torch.linalg.eigvalsh(_hessian(a, x.double(), self.l2))[-1])

    def solve(
        self, *, tol: float = 1e-12, max_iter: int = 100, cache: Path | None = None
    ) -> Optimum:
        """The exact minimiser of the binary logistic objective, by Newton's method in float64.

        ``f(x) = mean_j log(1 + exp(-y_j a_j^T x)) + l2/2 ||x||^2`` over every training row
        (the clients' weights are their row counts, so this is ``sum_i w_i f_i``). Steps are
        damped by backtracking on ``f``; iteration stops when ``||grad f|| < tol``. Sets
        :attr:`optimum` (so that :meth:`evaluate` reports ``objective_gap`` and
        ``dist_to_opt``) and returns it.

        With ``cache`` (a folder), the optimum is kept there under a digest of the design
        matrix, the labels, ``l2`` and ``tol``, and read back on the next call for the same
        problem. A cached optimum is never trusted: the gradient is recomputed at its ``x``,
        and an entry that is damaged, forged or not within ``tol`` is solved again and
        replaced. A cache folder that cannot be written only warns.

        Raises
        ------
        ValueError
            Not a binary logistic model, ``l2 = 0`` (the minimiser may not exist), or ``tol``
            not reached in ``max_iter`` steps.
        """
        if self.task is not Task.BINARY:
            raise ValueError(
                "the exact optimum is computed for binary logistic models only, "
                f"not {self.task.value}"
            )
        if self.l2 <= 0:
            raise ValueError(
                "model.l2 must be > 0 for an exact optimum (the problem is then strongly "
                "convex; without it the minimiser may not exist)"
            )
        t0 = time.perf_counter()
        a, y = _design(self.net.module, self._x), self._y.double().cpu()
        file = None if cache is None else cache / f"{_digest(a, y, self.l2, tol)}.npz"
        if file is not None:
            hit = _cached_optimum(file, a, y, self.l2, tol)
            if hit is not None:
                self.optimum = hit
                return hit
        x = torch.zeros(a.shape[1], dtype=torch.float64)
        f, g = _logistic_value_grad(a, y, x, self.l2)
        for it in range(max_iter):
            gn = float(torch.linalg.vector_norm(g))
            if gn < tol:
                self.optimum = Optimum(x, f, gn, it, time.perf_counter() - t0)
                if file is not None:
                    _store_optimum(file, self.optimum)
                return self.optimum
            step = torch.linalg.solve(_hessian(a, x, self.l2), g)
            t = 1.0
            while True:
                f_new, g_new = _logistic_value_grad(a, y, x - t * step, self.l2)
                if f_new <= f - 0.25 * t * float(g @ step) or t < 1e-10:
                    break
                t *= 0.5
            x, f, g = x - t * step, f_new, g_new
        raise ValueError(f"Newton did not reach ||grad f|| < {tol} in {max_iter} steps")


def _digest(a: torch.Tensor, y: torch.Tensor, l2: float, tol: float) -> str:
    """A key for one binary logistic problem: its rows, labels, ``l2`` and the tolerance."""
    h = hashlib.sha256(b"phloem-logistic-optimum-v1")
    h.update(np.asarray(a.shape, dtype=np.int64).tobytes())
    h.update(a.numpy().tobytes())
    h.update(y.numpy().tobytes())
    h.update(np.asarray([l2, tol], dtype=np.float64).tobytes())
    return h.hexdigest()[:32]


def _cached_optimum(
    file: Path, a: torch.Tensor, y: torch.Tensor, l2: float, tol: float
) -> Optimum | None:
    """The optimum stored in ``file`` when it is readable and still optimal, else ``None``."""
    if not file.is_file():
        return None
    try:
        with np.load(file) as z:
            x = torch.from_numpy(np.asarray(z["x"], dtype=np.float64))
            iterations, seconds = int(z["iterations"]), float(z["seconds"])
    except Exception:  # damaged or foreign: solved again, never fatal
        return None
    if x.shape != (a.shape[1],) or not bool(torch.isfinite(x).all()):
        return None
    f, g = _logistic_value_grad(a, y, x, l2)
    gn = float(torch.linalg.vector_norm(g))
    return Optimum(x, f, gn, iterations, seconds, cached=file) if gn < tol else None


def _store_optimum(file: Path, opt: Optimum) -> None:
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=file.parent, prefix=file.name, suffix=".tmp")
        with os.fdopen(fd, "wb") as out:
            np.savez(out, x=opt.x.numpy(), iterations=opt.iterations, seconds=opt.seconds)
        os.replace(tmp, file)
    except OSError as exc:
        warnings.warn(
            f"could not cache the optimum in {file.parent} ({exc}); continuing without it",
            stacklevel=3,
        )


def _hessian(a: torch.Tensor, x: torch.Tensor, l2: float) -> torch.Tensor:
    z = a @ x
    s = torch.sigmoid(z) * torch.sigmoid(-z)
    return (a.T * s) @ a / len(a) + l2 * torch.eye(len(x), dtype=torch.float64)


def _design(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The rows ``a_j`` in the order of the flat parameter vector (weights, then the bias)."""
    a = x.reshape(len(x), -1).double().cpu()
    linear = [m for m in module.modules() if isinstance(m, nn.Linear)]
    if linear and linear[0].bias is not None:
        a = torch.cat([a, torch.ones(len(a), 1, dtype=torch.float64)], 1)
    return a


def _logistic_value_grad(
    a: torch.Tensor, y: torch.Tensor, x: torch.Tensor, l2: float
) -> tuple[float, torch.Tensor]:
    margins = y * (a @ x)
    f = float(nn.functional.softplus(-margins).mean()) + 0.5 * l2 * float(x @ x)
    g = -(a.T @ (y * torch.sigmoid(-margins))) / len(y) + l2 * x
    return f, g


def _correct(task: Task, out: torch.Tensor, y: torch.Tensor) -> int:
    if task is Task.CLASSIFICATION:
        return int((out.argmax(1) == y).sum())
    if task is Task.BINARY:
        return int(((out.reshape(-1) > 0) == (y > 0)).sum())
    return 0


def _correct_top_k(out: torch.Tensor, y: torch.Tensor, k: int) -> int:
    """Rows whose label is among the ``k`` highest scores."""
    top = out.topk(min(k, out.shape[1]), dim=1).indices
    return int((top == y.reshape(-1, 1)).any(dim=1).sum())


def _logistic(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean logistic loss ``log(1 + exp(-y z))`` of logits ``out`` (n, 1) for labels +-1."""
    return nn.functional.softplus(-y * out.reshape(-1)).mean()


def _mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return 0.5 * nn.functional.mse_loss(out, y)
