"""Generated problems: quadratic constants against linear algebra, FedProx data structure."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phloem.data import QuadraticData, make_quadratic, make_synthetic, natural


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


# ------------------------------------------------------------------------------------ quadratic


def test_averaged_hessian_spans_exactly_mu_to_l() -> None:
    q = make_quadratic(8, 12, L=5.0, mu=0.05, rng=_rng())
    eig = np.linalg.eigvalsh(q.hessian)
    np.testing.assert_allclose([eig[0], eig[-1]], [0.05, 5.0], rtol=1e-10)
    assert q.mu == pytest.approx(0.05, rel=1e-10)
    np.testing.assert_allclose(q.L, 5.0, rtol=1e-10)
    # a slow reference for the average
    slow = sum(w * a for w, a in zip(q.weights, q.A, strict=True))
    np.testing.assert_allclose(q.hessian, slow, atol=1e-12)


def test_each_client_hessian_is_psd_and_clients_differ() -> None:
    q = make_quadratic(6, 10, L=2.0, mu=0.1, rng=_rng(1))
    lam = np.linalg.eigvalsh(q.A)
    assert lam.min() >= -1e-10
    assert not np.allclose(q.A[0], q.A[1])
    assert q.smoothness_max == pytest.approx(lam[:, -1].max())
    assert q.smoothness_max > q.L  # client smoothness exceeds that of the average


def test_x_star_is_the_minimiser() -> None:
    q = make_quadratic(5, 7, L=3.0, mu=0.2, rng=_rng(2))
    assert np.abs(q.grad(q.x_star)).max() < 1e-10
    np.testing.assert_allclose(q.weights @ q.client_grads(q.x_star), 0.0, atol=1e-10)
    direction = _rng(3).standard_normal(7)
    for t in (1e-3, 1e-1, 1.0):
        assert q.objective(q.x_star + t * direction) > q.f_star


def test_grad_matches_finite_differences() -> None:
    q = make_quadratic(3, 5, L=4.0, mu=1.0, rng=_rng(4))
    x = _rng(5).standard_normal(5)
    eps = 1e-6
    fd = [(q.objective(x + eps * e) - q.objective(x - eps * e)) / (2 * eps) for e in np.eye(5)]
    np.testing.assert_allclose(q.grad(x), fd, atol=1e-6)


def test_heterogeneity_zero_gives_identical_clients() -> None:
    q = make_quadratic(4, 6, L=1.0, mu=0.1, rng=_rng(), heterogeneity=0.0)
    np.testing.assert_allclose(q.A, np.broadcast_to(q.hessian, q.A.shape), atol=1e-12)
    np.testing.assert_allclose(q.client_grads(q.x_star), 0.0, atol=1e-10)
    assert q.smoothness_max == pytest.approx(q.L)


def test_more_heterogeneity_spreads_clients_further() -> None:
    spread = []
    for h in (0.1, 0.5, 1.0):
        q = make_quadratic(10, 8, L=1.0, mu=0.1, rng=_rng(6), heterogeneity=h)
        spread.append(float(np.linalg.norm(q.client_grads(q.x_star), axis=1).mean()))
    assert spread[0] < spread[1] < spread[2]


def test_quadratic_is_deterministic_given_the_generator() -> None:
    a = make_quadratic(3, 4, 2.0, 0.5, _rng(9))
    b = make_quadratic(3, 4, 2.0, 0.5, _rng(9))
    np.testing.assert_array_equal(a.A, b.A)
    np.testing.assert_array_equal(a.b, b.b)


def test_custom_weights_are_normalised_and_respected() -> None:
    q = make_quadratic(3, 4, 2.0, 0.5, _rng(), weights=[1.0, 2.0, 1.0])
    np.testing.assert_allclose(q.weights, [0.25, 0.5, 0.25])
    np.testing.assert_allclose([q.mu, q.L], [0.5, 2.0])


@settings(max_examples=40, deadline=None)
@given(
    num_clients=st.integers(1, 6),
    dim=st.integers(2, 8),
    mu=st.floats(1e-3, 10.0),
    ratio=st.floats(1.0, 1e3),
    h=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_quadratic_invariants_hold_for_any_arguments(
    num_clients: int, dim: int, mu: float, ratio: float, h: float, seed: int
) -> None:
    L = mu * ratio
    q = make_quadratic(num_clients, dim, L, mu, _rng(seed), heterogeneity=h)
    assert q.mu == pytest.approx(mu, rel=1e-8)
    np.testing.assert_allclose(q.L, L, rtol=1e-8)
    assert np.linalg.eigvalsh(q.A).min() >= -1e-9 * L
    assert np.abs(q.grad(q.x_star)).max() <= 1e-8 * max(1.0, L * np.abs(q.x_star).max())


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"mu": 2.0, "L": 1.0}, "mu <= L"),
        ({"mu": 0.0}, "0 < mu"),
        ({"heterogeneity": 1.5}, "heterogeneity"),
        ({"num_clients": 0}, "num_clients"),
        ({"dim": 1}, "dim=1"),
        ({"weights": [1.0, -1.0, 1.0]}, "weights"),
    ],
)
def test_quadratic_rejects_bad_arguments(kwargs: dict[str, object], words: str) -> None:
    args: dict[str, object] = {"num_clients": 3, "dim": 4, "L": 1.0, "mu": 0.1}
    args.update(kwargs)
    with pytest.raises(ValueError, match=words):
        make_quadratic(rng=_rng(), **args)  # type: ignore[arg-type]


def test_quadratic_data_validates_and_is_read_only() -> None:
    A = np.stack([np.eye(2), 2 * np.eye(2)])
    with pytest.raises(ValueError, match="sum to 1"):
        QuadraticData(A, np.zeros((2, 2)), np.array([0.5, 0.6]))
    with pytest.raises(ValueError, match="symmetric"):
        QuadraticData(A + np.array([[0, 1], [0, 0]]), np.zeros((2, 2)), np.array([0.5, 0.5]))
    q = QuadraticData(A, np.ones((2, 2)), np.array([0.5, 0.5]))
    np.testing.assert_allclose(q.x_star, [2 / 3, 2 / 3])
    with pytest.raises(ValueError):
        q.A[0, 0, 0] = 5.0


# ------------------------------------------------------------------------------------ FedProx


def test_synthetic_structure_and_groups() -> None:
    tt = make_synthetic(0.5, 0.5, 12, rng=_rng())
    assert tt.train.x.dtype == np.float32 and tt.train.y.dtype == np.int64
    assert tt.train.feature_shape == (60,) and tt.train.num_classes == 10
    assert tt.train.groups is not None and tt.test.groups is not None
    part = natural(tt.train.groups)
    assert part.num_clients == 12
    sizes = part.sizes() + np.bincount(tt.test.groups, minlength=12)
    assert sizes.min() >= 50  # the paper's sizes are lognormal + 50
    share = np.bincount(tt.test.groups, minlength=12) / sizes
    assert np.all(np.abs(share - 0.2) < 0.02)
    assert tt.train.y.min() >= 0 and tt.train.y.max() < 10


def test_synthetic_fixed_sizes_and_determinism() -> None:
    a = make_synthetic(1.0, 1.0, 5, dim=8, num_classes=3, rng=_rng(1), samples=40)
    b = make_synthetic(1.0, 1.0, 5, dim=8, num_classes=3, rng=_rng(1), samples=40)
    np.testing.assert_array_equal(a.train.x, b.train.x)
    assert a.train.groups is not None and a.test.groups is not None
    total = np.bincount(a.train.groups) + np.bincount(a.test.groups)
    assert total.tolist() == [40] * 5
    assert a.train.feature_shape == (8,) and a.train.num_classes == 3


def test_beta_controls_how_far_client_inputs_drift() -> None:
    def spread(beta: float) -> float:
        tt = make_synthetic(0.0, beta, 30, rng=_rng(2), samples=200)
        assert tt.train.groups is not None
        means = [tt.train.x[tt.train.groups == k].mean() for k in range(30)]
        return float(np.std(means))

    assert spread(2.0) > 5 * spread(0.0)


def test_alpha_is_inert_as_in_the_paper() -> None:
    # W_k ~ N(u_k, 1) and b_k ~ N(u_k, 1) with a scalar u_k add u_k * (sum(x) + 1) to every
    # logit alike, so the argmax labels do not depend on alpha (documented in make_synthetic).
    a = make_synthetic(0.0, 1.0, 6, rng=_rng(3), samples=100)
    b = make_synthetic(5.0, 1.0, 6, rng=_rng(3), samples=100)
    np.testing.assert_array_equal(a.train.x, b.train.x)
    np.testing.assert_array_equal(a.train.y, b.train.y)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"alpha": -1.0}, "alpha"),
        ({"num_clients": 0}, "num_clients"),
        ({"samples": 0}, "samples"),
        ({"test_fraction": 1.0}, "test_fraction"),
    ],
)
def test_synthetic_rejects_bad_arguments(kwargs: dict[str, object], words: str) -> None:
    args: dict[str, object] = {"alpha": 0.5, "beta": 0.5, "num_clients": 3}
    args.update(kwargs)
    with pytest.raises(ValueError, match=words):
        make_synthetic(rng=_rng(), **args)  # type: ignore[arg-type]
