"""Tests for :mod:`phloem.secagg.crypto.shamir`.

References: Lagrange coefficients and polynomial evaluation in pure Python integers with
``pow(x, p - 2, p)``; secrecy as a distribution test -- over many independent splits (one
call shares thousands of field elements, each with its own polynomial), the shares at any
``t - 1`` points are uniform on GF(p) and distributed alike for two different secrets.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from phloem.core.errors import ConfigError, ProtocolError
from phloem.secagg.crypto import shamir
from phloem.secagg.crypto.keys import insecure_random_bytes

P = shamir.PRIME
P_MIN = 1e-3  # fixed seeds


def lagrange_reference(xs: list[int]) -> list[int]:
    """``lambda_j = prod_{i != j} x_i / (x_i - x_j) mod p``, one Python integer at a time."""
    out = []
    for j, xj in enumerate(xs):
        num, den = 1, 1
        for i, xi in enumerate(xs):
            if i != j:
                num = num * xi % P
                den = den * (xi - xj) % P
        out.append(num * pow(den, P - 2, P) % P)
    return out


def poly_reference(coeffs: list[int], x: int) -> int:
    return sum(c * pow(x, k, P) for k, c in enumerate(coeffs)) % P


points = st.lists(st.integers(1, P - 1), min_size=1, max_size=12, unique=True)


@settings(max_examples=100, deadline=None)
@given(points)
def test_lagrange_coefficients_match_the_slow_reference(xs: list[int]) -> None:
    lam = shamir.lagrange_at_zero(np.array(xs, dtype=np.uint64))
    assert [int(v) for v in lam] == lagrange_reference(xs)
    # and they interpolate: sum lambda_j f(x_j) = f(0) for a polynomial of degree < len(xs)
    coeffs = [(7 + 13 * k) * 1000003 % P for k in range(len(xs))]
    assert (
        sum(int(l_) * poly_reference(coeffs, x) for l_, x in zip(lam, xs, strict=True)) % P
        == coeffs[0]
    )


def test_lagrange_edges() -> None:
    assert shamir.lagrange_at_zero(np.array([5], dtype=np.uint64)).tolist() == [1]
    big = [P - 1, P - 2, 1, 2]
    assert shamir.lagrange_at_zero(np.array(big, dtype=np.uint64)).tolist() == lagrange_reference(
        big
    )
    for bad in ([], [0, 1], [1, 1], [P, 1]):
        with pytest.raises(ConfigError, match="xs"):
            shamir.lagrange_at_zero(np.array(bad, dtype=np.uint64))


@st.composite
def sharings(draw: st.DrawFn) -> tuple[bytes, int, list[int], int]:
    secret = draw(st.binary(max_size=40))
    k = draw(st.integers(1, 16))
    t = draw(st.integers(1, k))
    xs = draw(st.lists(st.integers(1, P - 1), min_size=k, max_size=k, unique=True))
    return secret, t, xs, draw(st.integers(0, 2**32 - 1))


@settings(max_examples=100, deadline=None)
@given(sharings(), st.randoms(use_true_random=False))
def test_any_t_shares_reconstruct_exactly(
    case: tuple[bytes, int, list[int], int], rnd: object
) -> None:
    secret, t, xs, seed = case
    shares = shamir.split_bytes(
        secret, np.array(xs, dtype=np.uint64), t, insecure_random_bytes(seed)
    )
    assert shares.shape == (len(xs), -(-len(secret) // 3)) and shares.dtype == np.uint64
    assert int(shares.max(initial=0)) < P
    order = list(range(len(xs)))
    rnd.shuffle(order)  # type: ignore[attr-defined]
    for chosen in (order[:t], order):  # any t of them, or all of them, in any order
        pts = np.array([xs[j] for j in chosen], dtype=np.uint64)
        got = shamir.combine(pts, shares[chosen], t)
        assert shamir.field_to_bytes(got, len(secret)) == secret
    if t > 1:
        with pytest.raises(ProtocolError, match="cannot reconstruct"):
            shamir.combine(np.array(xs[: t - 1], dtype=np.uint64), shares[: t - 1], t)


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 6), st.integers(0, 2**32 - 1))
def test_shares_are_a_random_polynomial_of_degree_t_minus_1(t: int, seed: int) -> None:
    """Each column's shares lie on one polynomial with the secret at 0 (Python-int check)."""
    xs = list(range(1, t + 3))
    secrets = np.array([0, 1, P - 1, 12345], dtype=np.uint64)
    shares = shamir.split(secrets, np.array(xs, dtype=np.uint64), t, insecure_random_bytes(seed))
    lam = lagrange_reference(xs[:t])
    for col, s in enumerate(secrets):
        ys = [int(shares[j, col]) for j in range(len(xs))]
        assert sum(a * b for a, b in zip(lam, ys[:t], strict=True)) % P == int(s)
        for extra in range(t, len(xs)):  # any other t-subset agrees (degree < t)
            sub = [*range(t - 1), extra]
            lam2 = lagrange_reference([xs[j] for j in sub])
            assert sum(a * ys[j] for a, j in zip(lam2, sub, strict=True)) % P == int(s)


@pytest.mark.parametrize("t", [2, 3, 4])
def test_t_minus_1_shares_reveal_nothing(t: int) -> None:
    m = 20000  # independent splits (one polynomial per column)
    xs = np.array([3, 17, 2**30, P - 1][:t], dtype=np.uint64)
    seen = []
    for seed, secret in ((1, 0), (2, P - 1), (3, 0xABCDEF)):
        shares = shamir.split(
            np.full(m, secret, dtype=np.uint64), xs, t, insecure_random_bytes(seed)
        )
        known = shares[: t - 1]  # what t - 1 holders see
        assert int(known.max()) < P
        for row in known:  # each share alone: uniform on GF(p)
            counts = np.bincount((row * 16 // P).astype(np.int64), minlength=16)
            assert stats.chisquare(counts).pvalue > P_MIN
            assert stats.kstest(row / P, "uniform").pvalue > P_MIN
        if t >= 3:  # jointly: a 4 x 4 grid of the first two shares is uniform
            cell = (known[0] * 4 // P) * 4 + known[1] * 4 // P
            assert stats.chisquare(np.bincount(cell.astype(np.int64), minlength=16)).pvalue > P_MIN
        seen.append(known[0])
        # while the t-th share pins the secret down
        got = shamir.combine(xs, shares, t)
        assert (got == secret).all()
    for a, b in itertools.combinations(seen, 2):  # and alike for different secrets
        assert stats.ks_2samp(a, b).pvalue > P_MIN


def test_random_field_rejects_p() -> None:
    words = [0xFFFFFFFF, 0x7FFFFFFF, 5, 0x80000003, 0xFFFFFFFF, 7]  # p twice (with/without bit 31)
    stream = b"".join(w.to_bytes(4, "little") for w in words) + bytes(64)
    pos = 0

    def rand(n: int) -> bytes:
        nonlocal pos
        pos += n
        return stream[pos - n : pos]

    out = shamir.random_field((2, 2), rand)
    assert out.tolist() == [[5, 3], [7, 0]]
    draws = shamir.random_field((50000,), insecure_random_bytes(9))
    assert int(draws.max()) < P and stats.kstest(draws / P, "uniform").pvalue > P_MIN


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=64))
def test_bytes_field_round_trip(secret: bytes) -> None:
    elems = shamir.bytes_to_field(secret)
    assert elems.size == -(-len(secret) // shamir.CHUNK_BYTES)
    assert all(int(e) < 1 << 24 for e in elems)
    assert shamir.field_to_bytes(elems, len(secret)) == secret
    if secret:
        assert int(elems[0]) >> 16 == secret[0]  # big-endian chunks


def test_split_and_combine_reject_bad_arguments() -> None:
    xs = np.array([1, 2, 3], dtype=np.uint64)
    s = np.array([1, 2], dtype=np.uint64)
    for t in (0, 4):
        with pytest.raises(ConfigError, match="threshold"):
            shamir.split(s, xs, t)
    with pytest.raises(ConfigError, match="distinct"):
        shamir.split(s, np.array([1, 1, 2], dtype=np.uint64), 2)
    with pytest.raises(ConfigError, match="xs"):
        shamir.split(s, np.array([0, 1], dtype=np.uint64), 2)
    with pytest.raises(ConfigError, match="secrets"):
        shamir.split(np.array([P], dtype=np.uint64), xs, 2)
    shares = shamir.split(s, xs, 2)
    with pytest.raises(ProtocolError, match="do not match"):
        shamir.combine(xs, shares[:2], 2)
    bad = shares.copy()
    bad[0, 0] = P
    with pytest.raises(ProtocolError, match="not a field element"):
        shamir.combine(xs, bad, 2)


def test_a_corrupted_share_is_detected() -> None:
    secret = bytes(range(32))
    xs = np.array([1, 2, 3, 4], dtype=np.uint64)
    shares = shamir.split_bytes(secret, xs, 3, insecure_random_bytes(0))
    # each chunk of one holder's share is off by a random amount: the result leaves the
    # 24-bit range unless all 11 chunks land in it (probability (2^24 / p)^11 ~ 2^-77)
    noise = np.random.default_rng(0).integers(1, P, shares.shape[1], dtype=np.uint64)
    shares[1] = (shares[1] + noise) % P
    with pytest.raises(ProtocolError, match="corrupted"):
        shamir.field_to_bytes(shamir.combine(xs, shares, 3), len(secret))
