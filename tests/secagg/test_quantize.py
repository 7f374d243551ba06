"""Tests for :mod:`phloem.secagg.quantize`.

The reference for every sum is Python's unbounded ``int`` (no wrap-around possible), and the
reference encoder is a per-entry loop written straight from the module docstring. Error bounds
are the deterministic ones stated there, checked with hypothesis; unbiasedness is checked by
Monte Carlo with fixed seeds and ``Z = 5`` standard errors.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from phloem.core.errors import ConfigError
from phloem.secagg import ring
from phloem.secagg.quantize import Quantizer

Z = 5.0
#: Relative slack for float64 rounding in the deterministic bounds.
SLACK = 1e-9


def int_sum(vectors: list[np.ndarray]) -> list[int]:
    """Entry-wise sum in Python ints: the obviously correct, never-wrapping reference."""
    return [sum(int(v[j]) for v in vectors) for j in range(vectors[0].size)]


def reference_encode(q: Quantizer, x: list[float], weight: float, seed: int) -> list[int]:
    """Slow encoder from the docstring's formulas, using the same uniforms as ``encode``."""
    uniforms = np.random.default_rng(seed).random(len(x) + 1)
    share = weight / q.max_weight
    targets = [(share * min(max(v, -q.clip), q.clip) + q.clip) / q.step for v in x]
    targets.append(share * q.levels)
    out = []
    for u, r in zip(targets, uniforms, strict=True):
        u = min(max(u, 0.0), float(q.levels))
        low = math.floor(u)
        out.append(min(low + (r < u - low), q.levels))
    return out


def encode_all(
    q: Quantizer, xs: list[np.ndarray], weights: list[float], seed: int
) -> list[np.ndarray]:
    gen = np.random.default_rng(seed)
    return [q.encode(x, w, gen) for x, w in zip(xs, weights, strict=True)]


# --------------------------------------------------------------------------- encoding


def test_encode_matches_reference_encoder() -> None:
    q = Quantizer(clip=2.0, levels=37, modulus_bits=12, max_weight=5.0)
    x = [-3.0, -2.0, -0.71, 0.0, 0.33, 1.999, 2.0, 8.5]
    for seed, weight in [(0, 5.0), (1, 2.3), (2, 0.0), (3, 4.99)]:
        got = q.encode(np.array(x), weight, np.random.default_rng(seed))
        assert got.dtype == np.uint16 and got.shape == (len(x) + 1,)
        assert got.tolist() == reference_encode(q, x, weight, seed)


@given(
    x=st.lists(st.floats(-1e6, 1e6), min_size=0, max_size=20),
    weight_frac=st.floats(0.0, 1.0),
    levels=st.integers(1, 1000),
    clip=st.floats(1e-3, 1e3),
    seed=st.integers(0, 2**32 - 1),
)
@settings(max_examples=200, deadline=None)
def test_single_encoding_in_range_and_within_one_step(
    x: list[float], weight_frac: float, levels: int, clip: float, seed: int
) -> None:
    q = Quantizer(clip=clip, levels=levels, modulus_bits=16, max_weight=3.0)
    weight = 3.0 * weight_frac
    enc = q.encode(np.array(x), weight, np.random.default_rng(seed))
    assert enc.shape == (len(x) + 1,) and enc.dtype == np.uint16
    assert int(enc.max()) <= levels
    values, total_weight = q.decode_sum(enc, 1)
    exact = weight * np.clip(np.array(x), -clip, clip)
    assert np.all(np.abs(values - exact) <= 3.0 * q.step * (1 + SLACK))
    assert abs(total_weight - weight) <= 3.0 / levels * (1 + SLACK)


def test_encode_flattens_and_is_reproducible() -> None:
    q = Quantizer(clip=1.0, levels=100, modulus_bits=32)
    x = np.arange(12.0).reshape(3, 4) / 12 - 0.5
    a = q.encode(x, 0.5, np.random.default_rng(7))
    b = q.encode(x.ravel(), 0.5, np.random.default_rng(7))
    assert a.shape == (13,) and np.array_equal(a, b)
    assert q.encode(np.zeros(0), 1.0, np.random.default_rng(0)).tolist() == [100]


def test_float32_encodes_exactly_like_its_float64_copy() -> None:
    """The quantiser clips in float64: a float32 input needs no widened copy (fl.secure)."""
    q = Quantizer(clip=0.1, levels=10_000, modulus_bits=32)  # 0.1 is not a float32
    x = (np.random.default_rng(3).normal(size=5000) * 0.2).astype(np.float32)
    assert np.abs(x).max() > 0.1  # some entries are clipped
    a = q.encode(x, 0.7, np.random.default_rng(9))
    b = q.encode(x.astype(np.float64), 0.7, np.random.default_rng(9))
    assert np.array_equal(a, b)


def test_stochastic_rounding_is_unbiased() -> None:
    q = Quantizer(clip=1.0, levels=10, modulus_bits=16, max_weight=2.0)
    points = np.array([-0.93, -0.31, 0.0, 0.047, 0.47, 0.999, 1.7])
    reps, weight = 20000, 1.3
    enc = q.encode(np.repeat(points, reps), weight, np.random.default_rng(0))
    values, _ = q.decode_sum(enc, 1)
    means = values.reshape(points.size, reps).mean(axis=1)
    exact = weight * np.clip(points, -1.0, 1.0)
    # one draw is within max_weight * step of its target, so its std is at most half that
    std = 0.5 * q.max_weight * q.step
    assert np.all(np.abs(means - exact) <= Z * std / math.sqrt(reps))
    # the weight entry too, across independent encodings
    gen = np.random.default_rng(1)
    draws = 4000
    weights = [q.decode_sum(q.encode(np.zeros(1), 0.37, gen), 1)[1] for _ in range(draws)]
    assert abs(np.mean(weights) - 0.37) <= Z * 0.5 * q.max_weight / q.levels / math.sqrt(draws)


# --------------------------------------------------------------------------- sums and means


clients = st.integers(1, 20).flatmap(
    lambda n: st.tuples(
        st.lists(st.lists(st.floats(-10, 10), min_size=4, max_size=4), min_size=n, max_size=n),
        st.lists(st.floats(0.0, 1.0), min_size=n, max_size=n),
    )
)


@given(
    data=clients,
    levels=st.integers(1, 2**12),
    clip=st.floats(0.01, 5.0),
    max_weight=st.floats(0.5, 100.0),
    seed=st.integers(0, 2**32 - 1),
)
@settings(max_examples=200, deadline=None)
def test_sum_and_weighted_mean_error_bounds(
    data: tuple[list[list[float]], list[float]],
    levels: int,
    clip: float,
    max_weight: float,
    seed: int,
) -> None:
    rows, fracs = data
    n = len(rows)
    q = Quantizer(clip=clip, levels=levels, modulus_bits=32, max_weight=max_weight)
    xs = [np.array(r) for r in rows]
    ws = [f * max_weight for f in fracs]
    total = np.array(int_sum(encode_all(q, xs, ws, seed)), dtype=np.uint64)
    values, weight = q.decode_sum(total, n)

    exact = sum(w * np.clip(x, -clip, clip) for x, w in zip(xs, ws, strict=True))
    exact_weight = sum(ws)
    assert np.all(np.abs(values - exact) <= n * max_weight * q.step * (1 + SLACK))
    assert abs(weight - exact_weight) <= n * max_weight / levels * (1 + SLACK)

    assume(weight > 0.0 and exact_weight > 0.0)
    mean = exact / exact_weight
    err = np.abs(q.decode_mean(total, n) - mean)
    bound = n * max_weight * q.step * (1 + np.abs(mean) / (2 * clip)) / weight
    assert np.all(err <= bound * (1 + 1e-6) + 1e-12)
    assert np.all(err <= 1.5 * n * max_weight * q.step / weight * (1 + 1e-6) + 1e-12)


def test_full_weight_mean_is_within_one_and_a_half_steps() -> None:
    n = 50
    q = Quantizer.for_clients(n, clip=1.0, modulus_bits=16)
    gen = np.random.default_rng(3)
    xs = [gen.uniform(-1.2, 1.2, size=100) for _ in range(n)]
    total = np.array(int_sum(encode_all(q, xs, [1.0] * n, 4)), dtype=np.uint64)
    mean = np.mean([np.clip(x, -1, 1) for x in xs], axis=0)
    assert np.all(np.abs(q.decode_mean(total, n) - mean) <= 1.5 * q.step)


# --------------------------------------------------------------------------- overflow


@pytest.mark.parametrize(("bits", "levels", "n"), [(8, 51, 5), (8, 1, 255), (32, 2**16, 2**16 - 1)])
def test_check_boundary(bits: int, levels: int, n: int) -> None:
    q = Quantizer(clip=1.0, levels=levels, modulus_bits=bits)
    q.check(n)  # n * levels < 2^bits
    assert q.max_clients() == n
    with pytest.raises(ConfigError) as err:
        q.check(n + 1)
    assert err.value.field == "levels"
    safe = (2**bits - 1) // (n + 1)
    assert f"levels <= {safe}" in str(err.value) and "modulus_bits" in str(err.value)


@given(
    bits=st.integers(1, 64),
    n=st.integers(1, 3000),
    seed=st.integers(0, 2**32 - 1),
)
@settings(max_examples=200, deadline=None)
def test_for_clients_never_overflows(bits: int, n: int, seed: int) -> None:
    assume(n < 2**bits)
    q = Quantizer.for_clients(n, clip=0.5, modulus_bits=bits, max_weight=4.0)
    assert n * q.levels < 2**bits <= n * (q.levels + 1)  # safe, and the finest safe choice
    q.check(n)
    top = q.encode(np.full(3, 7.0), 4.0, np.random.default_rng(seed))  # every entry maximal
    assert top.dtype == ring.dtype_for_bits(bits)
    assert [int(v) for v in top] == [q.levels] * 4 or bits > 53  # float64 resolution
    assert all(int(v) <= q.levels for v in top)
    assert n * max(int(v) for v in top) < 2**bits


def test_for_clients_refuses_too_many_clients() -> None:
    with pytest.raises(ConfigError) as err:
        Quantizer.for_clients(256, clip=1.0, modulus_bits=8)
    assert err.value.field == "modulus_bits"
    with pytest.raises(ConfigError) as err:
        Quantizer.for_clients(0, clip=1.0)
    assert err.value.field == "n_clients"


@pytest.mark.parametrize("bits", [5, 8, 12, 16, 31, 32, 64])
def test_masked_ring_sum_equals_integer_sum(bits: int) -> None:
    n = 9
    q = Quantizer.for_clients(n, clip=1.0, modulus_bits=bits)
    gen = np.random.default_rng(bits)
    xs = [gen.normal(size=64) for _ in range(n)]
    encs = encode_all(q, xs, list(gen.random(n)), 5)
    mod = 1 << bits
    masks = [
        ring.reduce(gen.integers(0, 2**64, size=65, dtype=np.uint64).astype(q.dtype), bits)
        for _ in range(n)
    ]
    acc = np.zeros(65, dtype=q.dtype)
    # native wrap-around of the ring dtype, reduced to ``bits`` as ring.py does
    for e, m in zip(encs, masks, strict=True):
        acc = ring.reduce(acc + ring.reduce(e + m, bits), bits)  # what the server receives
    for m in masks:
        acc = ring.reduce(acc - m, bits)  # what unmasking removes
    reference = int_sum(encs)
    assert max(reference) < mod
    assert [int(v) for v in acc] == reference
    values, weight = q.decode_sum(acc, n)
    plain_values, plain_weight = q.decode_sum(np.array(reference, dtype=np.uint64), n)
    assert np.array_equal(values, plain_values) and weight == plain_weight


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("weight", [-0.1, 2.0001, math.nan, math.inf])
def test_bad_weight_is_refused(weight: float) -> None:
    q = Quantizer(clip=1.0, levels=10, modulus_bits=8, max_weight=2.0)
    with pytest.raises(ConfigError) as err:
        q.encode(np.zeros(3), weight, np.random.default_rng(0))
    assert err.value.field == "weight"


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_input_is_refused(bad: float) -> None:
    q = Quantizer(clip=1.0, levels=10, modulus_bits=8)
    with pytest.raises(ConfigError, match="entry 2 is") as err:
        q.encode(np.array([0.0, 1.0, bad]), 1.0, np.random.default_rng(0))
    assert err.value.field == "x"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"modulus_bits": 0}, "modulus_bits"),
        ({"modulus_bits": 65}, "modulus_bits"),
        ({"levels": 0}, "levels"),
        ({"levels": True}, "levels"),
        ({"levels": 2.5}, "levels"),
        ({"levels": 256, "modulus_bits": 8}, "levels"),
        ({"clip": 0.0}, "clip"),
        ({"clip": math.inf}, "clip"),
        ({"max_weight": -1.0}, "max_weight"),
    ],
)
def test_bad_configuration_is_refused(kwargs: dict[str, float], field: str) -> None:
    args: dict[str, float] = {"clip": 1.0, "levels": 10, "modulus_bits": 8} | kwargs
    with pytest.raises(ConfigError) as err:
        Quantizer(**args)  # type: ignore[arg-type]
    assert err.value.field == field


def test_numpy_levels_are_accepted() -> None:
    q = Quantizer(clip=1.0, levels=np.int64(10), modulus_bits=8)  # type: ignore[arg-type]
    assert type(q.levels) is int and q.step == 0.2


def test_decode_refuses_inconsistent_sums() -> None:
    q = Quantizer(clip=1.0, levels=10, modulus_bits=8)
    with pytest.raises(ConfigError) as err:
        q.decode_sum(np.array([31, 5], dtype=np.uint8), 3)
    assert err.value.field == "n_included"
    with pytest.raises(ConfigError) as err:
        q.decode_sum(np.array([1, 5], dtype=np.uint8), 26)
    assert err.value.field == "levels"
    with pytest.raises(ConfigError) as err:
        q.decode_mean(np.array([15, 0], dtype=np.uint8), 3)
    assert err.value.field == "weight"
    with pytest.raises(ConfigError):
        q.decode_sum(np.zeros((2, 2), dtype=np.uint8), 1)
