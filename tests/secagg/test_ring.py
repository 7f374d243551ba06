"""Tests for :mod:`phloem.secagg.ring` against Python integers mod ``2^bits``."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phloem.core.errors import ConfigError
from phloem.secagg.ring import MAX_BITS, dtype_for_bits, reduce, ring_add, ring_neg, ring_sub


def test_dtype_is_the_narrowest_unsigned_word() -> None:
    for bits in range(1, MAX_BITS + 1):
        dt = dtype_for_bits(bits)
        assert dt.kind == "u"
        width = 8 * dt.itemsize
        assert bits <= width and (width == 8 or bits > width // 2)
    for bad in (0, -1, 65, 128):
        with pytest.raises(ConfigError, match="modulus_bits"):
            dtype_for_bits(bad)


@st.composite
def ring_vectors(draw: st.DrawFn) -> tuple[int, list[int], list[int]]:
    bits = draw(st.integers(1, 64))
    n = draw(st.integers(0, 20))
    elem = st.integers(0, (1 << bits) - 1)
    return (
        bits,
        draw(st.lists(elem, min_size=n, max_size=n)),
        draw(st.lists(elem, min_size=n, max_size=n)),
    )


@settings(max_examples=150, deadline=None)
@given(ring_vectors())
def test_ring_arithmetic_matches_python_integers(case: tuple[int, list[int], list[int]]) -> None:
    bits, a, b = case
    m = 1 << bits
    dt = dtype_for_bits(bits)

    def arr(x: list[int]) -> np.ndarray:
        return np.array(x, dtype=dt)

    out = ring_add(arr(a), arr(b), bits)
    assert out.dtype == dt and [int(x) for x in out] == [
        (x + y) % m for x, y in zip(a, b, strict=True)
    ]
    out = ring_sub(arr(a), arr(b), bits)
    assert [int(x) for x in out] == [(x - y) % m for x, y in zip(a, b, strict=True)]
    out = ring_neg(arr(a), bits)
    assert [int(x) for x in out] == [(-x) % m for x in a]
    assert [int(x) for x in ring_add(ring_neg(arr(a), bits), arr(a), bits)] == [0] * len(a)


def test_in_place_semantics() -> None:
    a = np.array([250, 3], dtype=np.uint8)
    b = np.array([10, 5], dtype=np.uint8)
    assert ring_add(a, b, 8) is a and a.tolist() == [4, 8]
    assert ring_sub(a, b, 7) is a and a.tolist() == [(4 - 10) % 128, 3]
    c = np.array([1, 0], dtype=np.uint16)
    neg = ring_neg(c, 12)
    assert neg is not c and c.tolist() == [1, 0] and neg.tolist() == [4095, 0]


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 64), st.lists(st.integers(0, 2**64 - 1), max_size=10))
def test_reduce_keeps_the_low_bits(bits: int, xs: list[int]) -> None:
    dt = dtype_for_bits(bits)
    width = 8 * dt.itemsize
    v = np.array([x % (1 << width) for x in xs], dtype=dt)
    before = [int(x) for x in v]
    assert reduce(v, bits) is v
    assert [int(x) for x in v] == [x % (1 << bits) for x in before]
