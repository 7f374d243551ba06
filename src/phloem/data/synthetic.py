"""Generated federated problems: heterogeneous quadratics and FedProx's Synthetic(alpha, beta).

- :func:`make_quadratic` builds ``f(x) = sum_i w_i (x^T A_i x / 2 - b_i^T x)`` whose averaged
  Hessian has eigenvalues spanning exactly ``[mu, L]``, with a closed-form minimiser, so
  optimisation algorithms can be checked against the exact optimum and the theory constants.
- :func:`make_synthetic` draws the Synthetic(alpha, beta) multinomial-logistic data of Li et al.
  2020, "Federated Optimization in Heterogeneous Networks" (FedProx), Sec. 5.1.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import numpy.typing as npt

from phloem.data.dataset import ArrayDataset, TrainTest

__all__ = ["QuadraticData", "make_quadratic", "make_synthetic"]

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True, eq=False)
class QuadraticData:
    """A federated quadratic ``f(x) = sum_i w_i f_i(x)``, ``f_i(x) = x^T A_i x / 2 - b_i^T x``.

    Parameters
    ----------
    A
        ``(num_clients, dim, dim)`` symmetric positive semi-definite client Hessians.
    b
        ``(num_clients, dim)`` client linear terms.
    weights
        ``(num_clients,)`` non-negative client weights summing to 1.

    Notes
    -----
    The arrays are stored read-only. ``L``, ``mu`` and ``x_star`` describe the averaged
    objective; ``smoothness_max`` is the largest client smoothness ``max_i lambda_max(A_i)``
    (the ``L_max`` of step-size rules for local methods).
    """

    A: F64
    b: F64
    weights: F64

    def __post_init__(self) -> None:
        A = np.array(self.A, dtype=np.float64)
        b = np.array(self.b, dtype=np.float64)
        w = np.array(self.weights, dtype=np.float64)
        if A.ndim != 3 or A.shape[1] != A.shape[2]:
            raise ValueError(f"A must have shape (num_clients, dim, dim), got {A.shape}")
        if b.shape != A.shape[:2] or w.shape != A.shape[:1]:
            raise ValueError(
                f"b must be {A.shape[:2]} and weights {A.shape[:1]}, got {b.shape} and {w.shape}"
            )
        if np.any(w < 0) or not math.isclose(float(w.sum()), 1.0, rel_tol=0, abs_tol=1e-9):
            raise ValueError(f"weights must be non-negative and sum to 1, sum is {w.sum()}")
        if not np.allclose(A, A.transpose(0, 2, 1), rtol=0, atol=1e-10 * max(1.0, abs(A).max())):
            raise ValueError("every A_i must be symmetric")
        for name, arr in (("A", A), ("b", b), ("weights", w)):
            arr.flags.writeable = False
            object.__setattr__(self, name, arr)

    @property
    def num_clients(self) -> int:
        """Number of clients."""
        return int(self.A.shape[0])

    @property
    def dim(self) -> int:
        """Dimension of ``x``."""
        return int(self.A.shape[1])

    @cached_property
    def hessian(self) -> F64:
        """The averaged Hessian ``sum_i w_i A_i``."""
        return np.asarray(np.einsum("k,kij->ij", self.weights, self.A), dtype=np.float64)

    @cached_property
    def b_mean(self) -> F64:
        """The averaged linear term ``sum_i w_i b_i``."""
        return self.weights @ self.b

    @cached_property
    def x_star(self) -> F64:
        """The minimiser of the averaged objective, ``hessian^{-1} b_mean``."""
        return np.asarray(np.linalg.solve(self.hessian, self.b_mean), dtype=np.float64)

    @cached_property
    def _spectrum(self) -> F64:
        return np.asarray(np.linalg.eigvalsh(self.hessian), dtype=np.float64)

    @property
    def L(self) -> float:  # noqa: N802 (the standard symbol)
        """Smoothness of the averaged objective: the largest eigenvalue of ``hessian``."""
        return float(self._spectrum[-1])

    @property
    def mu(self) -> float:
        """Strong convexity of the averaged objective: the smallest eigenvalue of ``hessian``."""
        return float(self._spectrum[0])

    @cached_property
    def smoothness_max(self) -> float:
        """``max_i lambda_max(A_i)``, the largest client smoothness constant."""
        return float(np.linalg.eigvalsh(self.A)[:, -1].max())

    @property
    def f_star(self) -> float:
        """The optimal value ``f(x_star)``."""
        return self.objective(self.x_star)

    def objective(self, x: npt.ArrayLike) -> float:
        """``f(x) = x^T H x / 2 - b_mean^T x`` with ``H = sum_i w_i A_i``."""
        v = np.asarray(x, dtype=np.float64)
        return float(0.5 * v @ self.hessian @ v - self.b_mean @ v)

    def grad(self, x: npt.ArrayLike) -> F64:
        """``grad f(x) = H x - b_mean``."""
        v = np.asarray(x, dtype=np.float64)
        return self.hessian @ v - self.b_mean

    def client_grads(self, x: npt.ArrayLike) -> F64:
        """``(num_clients, dim)`` matrix whose row ``i`` is ``A_i x - b_i``."""
        v = np.asarray(x, dtype=np.float64)
        return np.asarray(np.einsum("kij,j->ki", self.A, v) - self.b, dtype=np.float64)


def _positive_int(name: str, value: int) -> int:
    v = operator.index(value)
    if v < 1:
        raise ValueError(f"{name} must be at least 1, got {v}")
    return v


def _inv_sqrt_psd(S: F64) -> F64:
    vals, vecs = np.linalg.eigh(S)
    return np.asarray((vecs / np.sqrt(vals)) @ vecs.T, dtype=np.float64)


def make_quadratic(
    num_clients: int,
    dim: int,
    L: float,
    mu: float,
    rng: np.random.Generator,
    heterogeneity: float = 1.0,
    weights: npt.ArrayLike | None = None,
) -> QuadraticData:
    """Heterogeneous client quadratics whose average has eigenvalues exactly spanning [mu, L].

    Construction: ``H = Q diag(linspace(mu, L, dim)) Q^T`` with a Haar-random rotation ``Q``.
    Each client gets ``A_i = H^{1/2} M_i H^{1/2}`` with ``M_i = (1 - h) I + h G_i``, where
    ``G_i = S^{-1/2} P_i S^{-1/2}``, ``P_i`` a Wishart matrix and ``S = sum_j w_j P_j``; so each
    ``A_i`` is PSD and ``sum_i w_i A_i = H`` exactly. The linear terms are
    ``b_i = A_i x0 + h xi_i`` with ``x0, xi_i ~ N(0, I)`` and ``sum_i w_i xi_i = 0``, so the
    minimiser is ``x0`` and at ``h = 0`` all clients are identical.

    Parameters
    ----------
    num_clients
        Number of clients, ``>= 1``.
    dim
        Dimension, ``>= 1`` (``dim = 1`` needs ``mu == L``).
    L, mu
        Largest and smallest eigenvalue of the averaged Hessian, ``0 < mu <= L``.
    rng
        Generator of every random draw.
    heterogeneity
        ``h`` in [0, 1]: 0 gives identical clients; 1 gives the most different Hessians (and
        client gradients at the optimum of norm about ``sqrt(dim)``).
    weights
        Positive client weights (normalised to sum 1); default uniform.

    Returns
    -------
    QuadraticData
        With ``mu`` and ``L`` equal to the requested values up to rounding.
    """
    k = _positive_int("num_clients", num_clients)
    d = _positive_int("dim", dim)
    if not (math.isfinite(L) and math.isfinite(mu) and 0 < mu <= L):
        raise ValueError(f"need 0 < mu <= L (finite), got mu={mu}, L={L}")
    if d == 1 and mu != L:
        raise ValueError(f"with dim=1 the single eigenvalue cannot span [mu={mu}, L={L}]")
    if not 0.0 <= heterogeneity <= 1.0:
        raise ValueError(f"heterogeneity must be in [0, 1], got {heterogeneity}")
    w = np.full(k, 1.0 / k) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (k,) or not np.all(np.isfinite(w)) or np.any(w <= 0):
        raise ValueError(f"weights must be {k} positive finite numbers, got shape {w.shape}")
    w = w / w.sum()

    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    q = q * np.sign(np.diag(r))  # sign fix makes Q Haar-distributed
    h_half = (q * np.sqrt(np.linspace(mu, L, d))) @ q.T
    z = rng.standard_normal((k, d, d))
    wishart = z @ z.transpose(0, 2, 1) / d
    s_inv_half = _inv_sqrt_psd(np.einsum("k,kij->ij", w, wishart))
    g = s_inv_half @ wishart @ s_inv_half
    m = (1.0 - heterogeneity) * np.eye(d) + heterogeneity * g
    A = h_half @ m @ h_half
    A = 0.5 * (A + A.transpose(0, 2, 1))

    x0 = rng.standard_normal(d)
    xi = rng.standard_normal((k, d))
    xi -= w @ xi
    b = np.einsum("kij,j->ki", A, x0) + heterogeneity * xi
    return QuadraticData(A, b, w)


def _client_sizes(samples: int | Sequence[int] | None, k: int, rng: np.random.Generator) -> F64:
    if samples is None:
        # FedProx's sizes: a heavy-tailed lognormal(4, 2) count plus 50 per device.
        return (rng.lognormal(4.0, 2.0, k).astype(np.int64) + 50).astype(np.float64)
    sizes = np.broadcast_to(np.asarray(samples, dtype=np.int64), (k,)).astype(np.float64)
    if np.any(sizes < 1):
        raise ValueError(f"samples must be at least 1 per client, got min {int(sizes.min())}")
    return sizes


def make_synthetic(
    alpha: float,
    beta: float,
    num_clients: int,
    dim: int = 60,
    num_classes: int = 10,
    *,
    rng: np.random.Generator,
    samples: int | Sequence[int] | None = None,
    test_fraction: float = 0.2,
) -> TrainTest:
    """FedProx's Synthetic(alpha, beta) federated multinomial-logistic data.

    Client ``k`` draws ``u_k ~ N(0, alpha)``, ``W_k ~ N(u_k, 1)`` (``num_classes x dim``),
    ``b_k ~ N(u_k, 1)``, ``B_k ~ N(0, beta)``, ``v_k ~ N(B_k, 1)`` (``dim``), and rows
    ``x ~ N(v_k, Sigma)`` with ``Sigma = diag(j^{-1.2})``; the label is
    ``argmax softmax(W_k x + b_k)``. The paper says ``alpha`` controls how much the client
    models differ and ``beta`` how much the client inputs differ. As in the authors' generator,
    ``alpha`` and ``beta`` are used as standard deviations.

    Note that, exactly as specified, the scalar ``u_k`` adds ``u_k (sum_j x_j + 1)`` to every
    logit alike, so it cancels in the argmax: the labels (and features) do not depend on
    ``alpha`` for a given generator state. Client models still differ, through the independent
    unit-variance parts of ``W_k`` and ``b_k``; ``beta`` is the effective heterogeneity knob.

    Parameters
    ----------
    alpha, beta
        Model and data heterogeneity, ``>= 0`` (the paper uses (0, 0), (0.5, 0.5), (1, 1));
        see the note on ``alpha`` above.
    num_clients
        Number of clients (30 in the paper).
    dim, num_classes
        Feature dimension and number of classes (60 and 10 in the paper).
    rng
        Generator of every random draw.
    samples
        Rows per client: ``None`` draws the paper's heavy-tailed sizes
        (``floor(lognormal(4, 2)) + 50``); an int gives every client that many; a sequence
        gives each client its own count.
    test_fraction
        Share of each client's rows put in the test split, in [0, 1); each client keeps at least
        one training row.

    Returns
    -------
    TrainTest
        ``float32`` features, ``int64`` labels; ``train.groups`` and ``test.groups`` give the
        client of each row, so :func:`phloem.data.natural` recovers the clients.
    """
    if not (alpha >= 0 and beta >= 0 and math.isfinite(alpha) and math.isfinite(beta)):
        raise ValueError(f"alpha and beta must be finite and >= 0, got {alpha}, {beta}")
    k = _positive_int("num_clients", num_clients)
    d = _positive_int("dim", dim)
    c = _positive_int("num_classes", num_classes)
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    sizes = _client_sizes(samples, k, rng).astype(np.int64)
    u = rng.normal(0.0, alpha, k)
    centre = rng.normal(0.0, beta, k)
    scale = np.arange(1, d + 1, dtype=np.float64) ** -0.6  # sqrt of Sigma_jj = j^-1.2
    train: list[tuple[F64, npt.NDArray[np.int64], int]] = []
    test: list[tuple[F64, npt.NDArray[np.int64], int]] = []
    for i in range(k):
        W = rng.normal(u[i], 1.0, (c, d))
        bias = rng.normal(u[i], 1.0, c)
        v = rng.normal(centre[i], 1.0, d)
        x = v + rng.standard_normal((int(sizes[i]), d)) * scale
        y = np.argmax(x @ W.T + bias, axis=1).astype(np.int64)
        n_test = min(round(test_fraction * len(y)), len(y) - 1)
        order = rng.permutation(len(y))
        test.append((x[order[:n_test]], y[order[:n_test]], i))
        train.append((x[order[n_test:]], y[order[n_test:]], i))
    name = f"synthetic({alpha:g},{beta:g})"
    return TrainTest(name, _stack(train, c), _stack(test, c))


def _stack(parts: list[tuple[F64, npt.NDArray[np.int64], int]], num_classes: int) -> ArrayDataset:
    x = np.concatenate([p[0] for p in parts]).astype(np.float32)
    y = np.concatenate([p[1] for p in parts])
    groups = np.concatenate([np.full(len(p[1]), p[2], dtype=np.int64) for p in parts])
    return ArrayDataset(x, y, num_classes, groups)
