"""Tests for :mod:`phloem.fl.compressors`.

Statistics use fixed seeds and standard-error bounds: every Monte Carlo comparison allows
``Z`` standard errors of the estimate (``Z = 5``: about one false alarm in two million per
check), never a loose constant. The exact numbers they are compared with come from the slow
reference laws in ``compressor_reference.py``. Kernels (supports, tie-breaking, per-draw
contraction) are checked with hypothesis. The last section runs the same checks on deliberately
wrong compressors and asserts that they fail, so a passing run means something.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import compressor_reference as ref
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from phloem.fl.compressors import (
    FLOAT_BITS,
    QSGD,
    Bernoulli,
    Compressed,
    Compressor,
    Identity,
    Natural,
    RandK,
    Scaled,
    TopK,
    index_bits,
)

#: Monte Carlo draws per case.
N_DRAWS = 20_000
#: Standard errors allowed by a Monte Carlo check.
Z = 5.0
SEED = 20_211_206

F32, F64 = torch.float32, torch.float64

#: A test vector with mixed magnitudes and signs, a zero and an exact power of two.
V = [3.0, -1.25, 0.0, 0.7, -5.5, 2.0, 1 / 3, -0.01, 8.0, 1.75, -0.4, 12.0]
#: Entries at (4/3) 2^e, where natural compression's variance bound 1/8 is attained.
V_NATURAL_TIGHT = [4 / 3, -8 / 3, 2 / 3, 16 / 3, -(4 / 3) * 2.0**-10, (4 / 3) * 2.0**20]

HYPOTHESIS = settings(max_examples=60, deadline=None)


# --------------------------------------------------------------------------- helpers


def laws_of(c: Compressor, v: list[float]) -> list[ref.Law]:
    """The reference marginal laws of ``c(v)``."""
    if isinstance(c, Identity):
        return ref.identity_laws(v)
    if isinstance(c, RandK):
        return ref.randk_laws(v, c.k)
    if isinstance(c, Natural):
        return ref.natural_laws(v)
    if isinstance(c, QSGD):
        return ref.qsgd_laws(v, c.levels)
    if isinstance(c, Bernoulli):
        return ref.bernoulli_laws(v, c.p)
    if isinstance(c, Scaled):
        return ref.scaled_laws(laws_of(c.inner, v), c.inner.omega(len(v)))
    raise TypeError(f"no reference law for {c!r}")


def claimed_bound(c: Compressor, v: list[float]) -> float:
    """``omega ||v||^2`` for an unbiased ``c``, ``(1 - alpha) ||v||^2`` otherwise."""
    d = len(v)
    sq = math.fsum(x * x for x in v)
    return (c.omega(d) if c.unbiased else 1.0 - c.alpha(d)) * sq


@dataclass(frozen=True)
class Draws:
    """``n`` independent compressions of one vector, as float64 arrays."""

    values: np.ndarray  # shape (n, d)
    bits: np.ndarray  # shape (n,)


def draw(c: Compressor, v: torch.Tensor, n: int, seed: int = SEED) -> Draws:
    gen = torch.Generator().manual_seed(seed)
    outs = [c.compress(v, gen) for _ in range(n)]
    values = torch.stack([o.value for o in outs]).double().numpy()
    return Draws(values, np.array([o.bits for o in outs], dtype=np.int64))


def assert_mean(draws: Draws, laws: list[ref.Law], rel_floor: float = 1e-12) -> None:
    """The empirical mean of each coordinate is within ``Z`` standard errors of the law's."""
    n = draws.values.shape[0]
    target = np.array(ref.exact_mean(laws))
    sd = np.sqrt(
        [sum(p * (x - m) ** 2 for x, p in law) for law, m in zip(laws, target, strict=True)]
    )
    tol = Z * sd / math.sqrt(n) + rel_floor * np.abs(target).max(initial=1.0)
    err = np.abs(draws.values.mean(axis=0) - target)
    bad = np.flatnonzero(err > tol)
    assert bad.size == 0, (
        f"coordinates {bad.tolist()}: empirical mean {draws.values.mean(axis=0)[bad]} vs exact "
        f"{target[bad]} (allowed +/- {tol[bad]})"
    )


def assert_sq_error(draws: Draws, v: list[float], laws: list[ref.Law], bound: float) -> None:
    """``mean ||C(v) - v||^2`` matches the law's exact value and respects ``bound``."""
    n = draws.values.shape[0]
    e = ((draws.values - np.array(v)) ** 2).sum(axis=1)
    exact = math.fsum(ref.exact_sq_error(laws, v))
    slack = Z * e.std(ddof=1) / math.sqrt(n) + 1e-9 * math.fsum(x * x for x in v)
    assert abs(e.mean() - exact) <= slack, f"E||C(v)-v||^2: empirical {e.mean()}, exact {exact}"
    assert e.mean() <= bound + slack, f"E||C(v)-v||^2 = {e.mean()} exceeds the claim {bound}"


def assert_in_support(draws: Draws, laws: list[ref.Law], rtol: float) -> None:
    """Every drawn coordinate is one of the values its law allows."""
    for i, law in enumerate(laws):
        allowed = np.array([x for x, p in law if p > 0])
        col = draws.values[:, i]
        ok = np.isclose(col[:, None], allowed[None, :], rtol=rtol, atol=0.0).any(axis=1)
        assert ok.all(), f"coordinate {i}: drew {col[~ok][:5]}, allowed {allowed}"


def vectors(
    *, width: int = 64, max_abs: float = 1e6, subnormal: bool = False, max_size: int = 30
) -> st.SearchStrategy[list[float]]:
    floats = st.floats(
        -max_abs,
        max_abs,
        allow_nan=False,
        allow_infinity=False,
        allow_subnormal=subnormal,
        width=width,
    )
    return st.lists(floats, min_size=1, max_size=max_size)


# --------------------------------------------------------------------------- Monte Carlo

MC_CASES: dict[str, tuple[Compressor, list[float], torch.dtype]] = {
    "identity": (Identity(), V, F64),
    "randk-1": (RandK(1), V, F64),
    "randk-5": (RandK(5), V, F64),
    "randk-5-f32": (RandK(5), V, F32),
    "natural": (Natural(), V, F64),
    "natural-f32": (Natural(), V, F32),
    "natural-tight": (Natural(), V_NATURAL_TIGHT, F64),
    "qsgd-1": (QSGD(1), V, F64),
    "qsgd-4": (QSGD(4), V, F64),
    "qsgd-4-f32": (QSGD(4), V, F32),
    "bernoulli-0.3": (Bernoulli(0.3), V, F64),
    "scaled-randk-3": (Scaled(RandK(3)), V, F64),
    "scaled-bernoulli-0.25": (Scaled(Bernoulli(0.25)), V, F64),
    "scaled-natural": (Scaled(Natural()), V, F64),
    "scaled-qsgd-2": (Scaled(QSGD(2)), V, F64),
}


@dataclass(frozen=True)
class MonteCarlo:
    c: Compressor
    v: list[float]  # the exact input values (float32 inputs widened exactly)
    dtype: torch.dtype
    laws: list[ref.Law]
    draws: Draws


@pytest.fixture(scope="module", params=sorted(MC_CASES))
def mc(request: pytest.FixtureRequest) -> MonteCarlo:
    c, v_list, dtype = MC_CASES[request.param]
    v = torch.tensor(v_list, dtype=dtype)
    exact = v.double().tolist()
    return MonteCarlo(c, exact, dtype, laws_of(c, exact), draw(c, v, N_DRAWS))


def test_mc_mean_matches_reference(mc: MonteCarlo) -> None:
    rel_floor = 1e-12 if mc.dtype == F64 else 1e-6
    assert_mean(mc.draws, mc.laws, rel_floor)
    if mc.c.unbiased:  # the reference law itself is centred on v
        np.testing.assert_allclose(ref.exact_mean(mc.laws), mc.v, rtol=1e-12, atol=1e-300)


def test_mc_squared_error_matches_reference_and_constant(mc: MonteCarlo) -> None:
    assert_sq_error(mc.draws, mc.v, mc.laws, claimed_bound(mc.c, mc.v))


def test_mc_draws_lie_in_reference_support(mc: MonteCarlo) -> None:
    rtol = 0.0 if isinstance(mc.c, Identity | Natural) else 1e-12
    if mc.dtype == F32:
        rtol = 0.0 if isinstance(mc.c, Natural) else 1e-5
    assert_in_support(mc.draws, mc.laws, rtol)


def test_mc_bits(mc: MonteCarlo) -> None:
    d = len(mc.v)
    bits = mc.draws.bits
    expected = mc.c.expected_bits(d)
    if isinstance(mc.c, Bernoulli) or (
        isinstance(mc.c, Scaled) and isinstance(mc.c.inner, Bernoulli)
    ):
        assert set(bits.tolist()) <= {1, FLOAT_BITS * d + 1}
        se = bits.std(ddof=1) / math.sqrt(len(bits))
        assert abs(bits.mean() - expected) <= Z * se
    else:
        assert (bits == expected).all()


@pytest.mark.parametrize(
    ("c", "v"),
    [
        (RandK(1), V),
        (RandK(5), V),
        (Bernoulli(0.3), V),
        (Bernoulli(1.0), V),
        (Natural(), V_NATURAL_TIGHT),
        (Scaled(RandK(3)), V),
        (Scaled(Bernoulli(0.25)), V),
    ],
    ids=repr,
)
def test_constant_is_tight(c: Compressor, v: list[float]) -> None:
    exact = math.fsum(ref.exact_sq_error(laws_of(c, v), v))
    assert exact == pytest.approx(claimed_bound(c, v), rel=1e-9)


@pytest.mark.parametrize("name", sorted(MC_CASES))
def test_reference_error_within_constant(name: str) -> None:
    c, v, _ = MC_CASES[name]
    exact = math.fsum(ref.exact_sq_error(laws_of(c, v), v))
    assert exact <= claimed_bound(c, v) * (1 + 1e-12)


@HYPOTHESIS
@given(v=vectors(), s=st.integers(1, 20))
def test_qsgd_omega_bounds_reference_variance(v: list[float], s: int) -> None:
    exact = math.fsum(ref.exact_sq_error(ref.qsgd_laws(v, s), v))
    assert exact <= QSGD(s).omega(len(v)) * math.fsum(x * x for x in v) * (1 + 1e-9) + 1e-300


@HYPOTHESIS
@given(v=vectors(max_abs=1e300, subnormal=True))
def test_natural_omega_bounds_reference_variance(v: list[float]) -> None:
    for x, law in zip(v, ref.natural_laws(v), strict=True):
        if x != 0.0:  # relative error, so that tiny and huge entries neither under- nor overflow
            ratio = math.fsum(p * ((y - x) / x) ** 2 for y, p in law)
            assert ratio <= Natural().omega(1) * (1 + 1e-9)


def test_randk_keeps_exactly_k_uniformly_without_replacement() -> None:
    d, k = 8, 3
    v = torch.arange(1.0, d + 1, dtype=F64)
    kept = draw(RandK(k), v, N_DRAWS).values != 0
    assert (kept.sum(axis=1) == k).all()
    # pairwise inclusion k(k-1)/(d(d-1)) tells sampling without replacement from other schemes
    pair = (kept[:, :, None] & kept[:, None, :]).mean(axis=0)[np.triu_indices(d, 1)]
    p2 = k * (k - 1) / (d * (d - 1))
    assert np.abs(pair - p2).max() <= Z * math.sqrt(p2 * (1 - p2) / N_DRAWS)


# --------------------------------------------------------------------------- kernels


@HYPOTHESIS
@given(
    v=st.lists(
        st.one_of(st.sampled_from([0.0, 1.0, -1.0, 2.5, -2.5]), st.floats(-1e6, 1e6)),
        min_size=1,
        max_size=40,
    ),
    k=st.integers(1, 45),
    dtype=st.sampled_from([F32, F64]),
    seed=st.integers(0, 2**32),
)
def test_topk_matches_reference_and_contracts_every_draw(
    v: list[float], k: int, dtype: torch.dtype, seed: int
) -> None:
    x = torch.tensor(v, dtype=dtype)
    exact = x.double().tolist()
    c = TopK(k)
    out = c.compress(x, torch.Generator().manual_seed(seed))
    assert out.value.tolist() == ref.topk(exact, k)
    d = len(v)
    err = math.fsum((a - b) ** 2 for a, b in zip(out.value.double().tolist(), exact, strict=True))
    assert err <= (1 - c.alpha(d)) * math.fsum(a * a for a in exact) * (1 + 1e-12)


def test_topk_breaks_ties_by_lowest_index() -> None:
    v = torch.tensor([1.0, -3.0, 3.0, 1.0, -1.0, 3.0, 1.0])
    out = TopK(4).compress(v, torch.Generator())
    assert out.value.tolist() == [1.0, -3.0, 3.0, 0.0, 0.0, 3.0, 0.0]


@HYPOTHESIS
@given(
    v=st.one_of(
        vectors(width=32, max_abs=2.0**126, subnormal=True).map(lambda v: (v, F32)),
        vectors(max_abs=1e300, subnormal=True).map(lambda v: (v, F64)),
    ),
    seed=st.integers(0, 2**32),
)
def test_natural_rounds_each_entry_to_a_neighbouring_power_of_two(
    v: tuple[list[float], torch.dtype], seed: int
) -> None:
    x = torch.tensor(v[0], dtype=v[1])
    exact = x.double().tolist()
    out = Natural().compress(x, torch.Generator().manual_seed(seed)).value.double().tolist()
    for got, law in zip(out, ref.natural_laws(exact), strict=True):
        assert got in [y for y, _ in law]


@HYPOTHESIS
@given(
    v=st.one_of(vectors(), st.lists(st.integers(-5, 5).map(float), min_size=1, max_size=30)),
    s=st.integers(1, 300),
    seed=st.integers(0, 2**32),
)
def test_qsgd_draws_lie_on_the_levels(v: list[float], s: int, seed: int) -> None:
    x = torch.tensor(v, dtype=F64)
    out = QSGD(s).compress(x, torch.Generator().manual_seed(seed)).value.tolist()
    norm = math.hypot(*v)  # scaled: squares of tiny entries would underflow to subnormals
    for got, a in zip(out, v, strict=True):
        if norm == 0.0 or got == 0.0:
            assert norm == 0.0 or abs(a) / norm * s < 1 + 1e-9
            continue
        # got = sign(a) ||v|| j / s for an integer level j next to r = s |a| / ||v||; compared
        # with a tolerance because the library and this test round ||v|| differently
        j = abs(got) * s / norm
        assert math.copysign(1.0, got) == math.copysign(1.0, a)
        assert abs(j - round(j)) <= 1e-9 * s
        assert abs(j - abs(a) / norm * s) < 1 + 1e-9
        assert round(j) <= s


@HYPOTHESIS
@given(
    v=vectors(),
    k=st.integers(1, 35),
    shared=st.booleans(),
    scaled=st.booleans(),
    seed=st.integers(0, 2**32),
)
def test_randk_keeps_a_subset_scaled_by_d_over_k(
    v: list[float], k: int, shared: bool, scaled: bool, seed: int
) -> None:
    d = len(v)
    inner = RandK(k, shared_seed=shared)
    c: Compressor = Scaled(inner) if scaled else inner
    out = c.compress(torch.tensor(v, dtype=F64), torch.Generator().manual_seed(seed)).value
    factor = 1.0 if scaled else d / min(k, d)
    nonzero = [i for i, y in enumerate(out.tolist()) if y != 0.0]
    assert len(nonzero) <= min(k, d)
    for i in nonzero:
        assert math.isclose(out[i].item(), v[i] * factor, rel_tol=1e-12)


# --------------------------------------------------------------------------- contracts

ALL: list[Compressor] = [
    Identity(),
    RandK(4),
    RandK(4, shared_seed=True),
    TopK(4),
    Natural(),
    QSGD(3),
    Bernoulli(0.5),
    Scaled(RandK(4)),
    Scaled(QSGD(3)),
]
RANDOM = [c for c in ALL if not isinstance(c, Identity | TopK)]


@pytest.mark.parametrize(
    ("c", "d", "bits"),
    [
        (Identity(), 10, 320),
        (RandK(3), 20, 111),  # 3 * (32 + 5)
        (RandK(3, shared_seed=True), 20, 96),
        (RandK(1), 1024, 42),  # 32 + 10
        (RandK(4), 4, 128),  # k >= d: dense
        (RandK(9), 4, 128),
        (TopK(3), 20, 111),
        (TopK(7), 1000, 294),  # 7 * (32 + 10)
        (TopK(5), 5, 160),
        (Natural(), 10, 90),
        (QSGD(1), 10, 52),  # 32 + 10 * (1 + 1)
        (QSGD(3), 10, 62),  # 32 + 10 * (1 + 2)
        (QSGD(4), 10, 72),  # 32 + 10 * (1 + 3)
        (QSGD(255), 100, 932),  # 32 + 100 * (1 + 8)
        (Scaled(RandK(3)), 20, 111),
        (Scaled(Natural()), 10, 90),
    ],
    ids=repr,
)
def test_bits_are_exact(c: Compressor, d: int, bits: int) -> None:
    out = c.compress(torch.randn(d, generator=torch.Generator().manual_seed(1)), torch.Generator())
    assert type(out.bits) is int
    assert out.bits == bits
    assert c.expected_bits(d) == bits


def test_bernoulli_bits_and_value() -> None:
    d, p = 10, 0.5
    v = torch.randn(d, dtype=F64, generator=torch.Generator().manual_seed(2))
    seen = set()
    for seed in range(20):
        out = Bernoulli(p).compress(v, torch.Generator().manual_seed(seed))
        assert type(out.bits) is int
        if out.bits == 1:
            assert torch.equal(out.value, torch.zeros_like(v))
        else:
            assert out.bits == FLOAT_BITS * d + 1
            assert torch.equal(out.value, v / p)
        seen.add(out.bits)
    assert seen == {1, FLOAT_BITS * d + 1}
    assert Bernoulli(p).expected_bits(d) == p * FLOAT_BITS * d + 1


def test_bernoulli_sends_with_probability_p() -> None:
    n, p = 100_000, 0.3
    gen = torch.Generator().manual_seed(SEED)
    sent = sum(Bernoulli(p).compress(torch.ones(1), gen).bits > 1 for _ in range(n))
    assert abs(sent / n - p) <= Z * math.sqrt(p * (1 - p) / n)


def test_index_bits() -> None:
    assert [index_bits(d) for d in (1, 2, 3, 4, 5, 1024, 1025)] == [1, 1, 2, 2, 3, 10, 11]


@pytest.mark.parametrize(
    ("c", "d", "omega", "alpha"),
    [
        (Identity(), 7, 0.0, 1.0),
        (RandK(3), 12, 3.0, 0.0),
        (RandK(12), 12, 0.0, 1.0),
        (RandK(20), 12, 0.0, 1.0),
        (TopK(3), 12, math.inf, 0.25),
        (TopK(30), 12, math.inf, 1.0),
        (Natural(), 5, 0.125, 0.875),
        (QSGD(4), 16, 1.0, 0.0),
        (QSGD(2), 100, 5.0, 0.0),  # min(100 / 4, 10 / 2)
        (QSGD(10), 16, 0.16, 0.84),  # min(16 / 100, 4 / 10)
        (Bernoulli(0.25), 9, 3.0, 0.0),
        (Bernoulli(1.0), 9, 0.0, 1.0),
        (Scaled(RandK(3)), 12, math.inf, 0.25),
        (Scaled(Natural()), 12, math.inf, 8 / 9),
        (Scaled(QSGD(2)), 100, math.inf, 1 / 6),
    ],
    ids=repr,
)
def test_constants(c: Compressor, d: int, omega: float, alpha: float) -> None:
    assert c.omega(d) == pytest.approx(omega)
    assert c.alpha(d) == pytest.approx(alpha)
    assert c.unbiased == math.isfinite(omega)


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("c", ALL, ids=repr)
def test_contract(c: Compressor, dtype: torch.dtype) -> None:
    v = torch.randn(50, dtype=dtype, generator=torch.Generator().manual_seed(3))
    before = v.clone()
    global_state = torch.get_rng_state()
    out = c.compress(v, torch.Generator().manual_seed(7))
    again = c.compress(v, torch.Generator().manual_seed(7))
    assert isinstance(out, Compressed)
    assert type(out.bits) is int
    assert out.value.dtype == dtype
    assert out.value.shape == v.shape
    assert out.value.device == v.device
    assert torch.equal(out.value, again.value)
    assert out.bits == again.bits
    assert torch.equal(v, before), "the input was modified"
    assert torch.equal(torch.get_rng_state(), global_state), "the global RNG was used"
    out.value.add_(1.0)
    assert torch.equal(v, before), "the output aliases the input"


@pytest.mark.parametrize("c", RANDOM, ids=repr)
def test_different_seeds_give_different_outputs(c: Compressor) -> None:
    v = torch.randn(50, generator=torch.Generator().manual_seed(4))
    outs = [c.compress(v, torch.Generator().manual_seed(s)).value for s in range(10)]
    assert any(not torch.equal(outs[0], o) for o in outs[1:])


@pytest.mark.parametrize("c", [Identity(), TopK(4)], ids=repr)
def test_deterministic_compressors_ignore_the_generator(c: Compressor) -> None:
    v = torch.randn(50, generator=torch.Generator().manual_seed(5))
    gen = torch.Generator().manual_seed(6)
    state = gen.get_state()
    out = c.compress(v, gen)
    assert torch.equal(gen.get_state(), state)
    assert torch.equal(out.value, c.compress(v, torch.Generator().manual_seed(99)).value)


@pytest.mark.parametrize("d", [0, 1, 2])
@pytest.mark.parametrize("c", ALL, ids=repr)
def test_tiny_dimensions(c: Compressor, d: int) -> None:
    v = torch.ones(d)
    out = c.compress(v, torch.Generator().manual_seed(0))
    assert out.value.shape == (d,)
    assert type(out.bits) is int


@pytest.mark.parametrize("c", ALL, ids=repr)
def test_zero_vector_compresses_to_zero(c: Compressor) -> None:
    out = c.compress(torch.zeros(9), torch.Generator().manual_seed(0))
    assert torch.equal(out.value, torch.zeros(9))


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: RandK(0), "RandK.k"),
        (lambda: RandK(-3), "RandK.k"),
        (lambda: RandK(2.5), "RandK.k"),
        (lambda: RandK(True), "RandK.k"),
        (lambda: TopK(0), "TopK.k"),
        (lambda: TopK(1.0), "TopK.k"),
        (lambda: QSGD(0), "QSGD.levels"),
        (lambda: QSGD(2.0), "QSGD.levels"),
        (lambda: Bernoulli(0.0), "Bernoulli.p"),
        (lambda: Bernoulli(-0.1), "Bernoulli.p"),
        (lambda: Bernoulli(1.01), "Bernoulli.p"),
        (lambda: Bernoulli(math.nan), "Bernoulli.p"),
        (lambda: Bernoulli("0.5"), "Bernoulli.p"),
        (lambda: Scaled(TopK(2)), "Scaled.inner"),
        (lambda: Scaled(Scaled(RandK(2))), "Scaled.inner"),
        (lambda: Scaled(RandK), "Scaled.inner"),
    ],
)
def test_bad_parameters_name_the_field(make: Callable[[], Compressor], field: str) -> None:
    with pytest.raises(ValueError, match=re.escape(field)):
        make()


def test_integer_like_parameters_are_normalised() -> None:
    assert type(RandK(np.int64(3)).k) is int
    assert type(QSGD(np.int32(2)).levels) is int
    assert type(Bernoulli(np.float32(0.5)).p) is float


@pytest.mark.parametrize("c", ALL, ids=repr)
@pytest.mark.parametrize(
    "v", [torch.ones(2, 3), torch.ones((), dtype=F32), torch.arange(5)], ids=["2d", "0d", "int"]
)
def test_bad_inputs_are_rejected(c: Compressor, v: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="compressors take"):
        c.compress(v, torch.Generator())


# --------------------------------------------------------------------------- the checks can fail


@dataclass(frozen=True)
class _UnscaledRandK(Compressor):
    """Rand-K that forgets the ``d / k`` factor: biased."""

    k: int
    unbiased: ClassVar[bool] = True

    def compress(self, v: torch.Tensor, gen: torch.Generator) -> Compressed:
        idx = torch.randperm(v.numel(), generator=gen)[: self.k]
        out = torch.zeros_like(v)
        out[idx] = v[idx]
        return Compressed(out, 0)

    def omega(self, d: int) -> float:
        return d / self.k - 1

    def expected_bits(self, d: int) -> float:
        return 0.0


@dataclass(frozen=True)
class _WithReplacementRandK(_UnscaledRandK):
    """Rand-K drawing indices with replacement (duplicates make it biased)."""

    def compress(self, v: torch.Tensor, gen: torch.Generator) -> Compressed:
        idx = torch.randint(v.numel(), (self.k,), generator=gen)
        out = torch.zeros_like(v)
        out[idx] = v[idx] * (v.numel() / self.k)
        return Compressed(out, 0)


@dataclass(frozen=True)
class _OverclaimingRandK(Compressor):
    """A correct Rand-K that claims half its true variance."""

    k: int
    unbiased: ClassVar[bool] = True

    def compress(self, v: torch.Tensor, gen: torch.Generator) -> Compressed:
        return RandK(self.k).compress(v, gen)

    def omega(self, d: int) -> float:
        return (d / self.k - 1) / 2

    def expected_bits(self, d: int) -> float:
        return 0.0


@dataclass(frozen=True)
class _DeterministicNatural(Natural):
    """Rounds to the nearest power of two instead of randomly: biased."""

    def compress(self, v: torch.Tensor, gen: torch.Generator) -> Compressed:
        mantissa, exponent = torch.frexp(v)
        up = mantissa.abs() >= 0.75
        return Compressed(torch.ldexp(torch.sign(mantissa) * (1.0 + up), exponent - 1), 0)


@dataclass(frozen=True)
class _HighestIndexTopK(TopK):
    """Top-K breaking ties towards the highest index."""

    def compress(self, v: torch.Tensor, gen: torch.Generator) -> Compressed:
        flipped = TopK(self.k).compress(v.flip(0), gen)
        return Compressed(flipped.value.flip(0), flipped.bits)


V_T = torch.tensor(V, dtype=F64)


@pytest.mark.parametrize(
    "wrong", [_UnscaledRandK(3), _WithReplacementRandK(5), _DeterministicNatural()], ids=repr
)
def test_mean_check_catches_a_biased_compressor(wrong: Compressor) -> None:
    right: Compressor = RandK(wrong.k) if isinstance(wrong, _UnscaledRandK) else Natural()
    with pytest.raises(AssertionError, match="empirical mean"):
        assert_mean(draw(wrong, V_T, 5_000), laws_of(right, V))


def test_variance_check_catches_an_overclaimed_omega() -> None:
    wrong = _OverclaimingRandK(3)
    draws = draw(wrong, V_T, 5_000)
    with pytest.raises(AssertionError, match="exceeds the claim"):
        assert_sq_error(draws, V, ref.randk_laws(V, 3), claimed_bound(wrong, V))


def test_support_check_catches_wrong_levels() -> None:
    draws = draw(QSGD(3), V_T, 200)
    with pytest.raises(AssertionError, match="allowed"):
        assert_in_support(draws, ref.qsgd_laws(V, 4), rtol=1e-12)


def test_tie_check_catches_other_tie_breaking() -> None:
    v = torch.tensor([1.0, -3.0, 3.0, 1.0, -1.0, 3.0, 1.0])
    out = _HighestIndexTopK(4).compress(v, torch.Generator())
    assert out.value.tolist() != ref.topk(v.tolist(), 4)
