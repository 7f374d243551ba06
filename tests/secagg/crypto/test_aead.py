"""Tests for :mod:`phloem.secagg.crypto.aead`: any change to a sealed share is caught."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phloem.core.errors import ProtocolError
from phloem.secagg.crypto import aead
from phloem.secagg.crypto.keys import insecure_random_bytes

KEY = bytes(range(32))
AD = aead.associated_data(7, 1, 2)


def test_round_trip_and_overhead() -> None:
    for n in (0, 1, 88, 1000):
        plain = bytes(range(256)) * 4
        sealed = aead.seal(KEY, plain[:n], AD)
        assert len(sealed) == n + aead.OVERHEAD
        assert aead.open_sealed(KEY, sealed, AD) == plain[:n]


def test_nonces_are_fresh() -> None:
    a, b = aead.seal(KEY, b"share", AD), aead.seal(KEY, b"share", AD)
    assert a[: aead.NONCE_BYTES] != b[: aead.NONCE_BYTES] and a != b
    # seeded randomness reproduces
    r1, r2 = insecure_random_bytes(1), insecure_random_bytes(1)
    assert aead.seal(KEY, b"share", AD, r1) == aead.seal(KEY, b"share", AD, r2)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=100), st.data())
def test_any_flipped_bit_is_rejected(plain: bytes, data: st.DataObject) -> None:
    sealed = bytearray(aead.seal(KEY, plain, AD))
    bit = data.draw(st.integers(0, 8 * len(sealed) - 1))
    sealed[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(ProtocolError, match="failed authentication"):
        aead.open_sealed(KEY, bytes(sealed), AD)


def test_routing_round_and_key_are_bound() -> None:
    sealed = aead.seal(KEY, b"seed share || key share", AD)
    for ad in (
        aead.associated_data(8, 1, 2),  # another round
        aead.associated_data(7, 2, 1),  # reversed direction
        aead.associated_data(7, 1, 3),  # re-addressed
        aead.associated_data(7, 3, 2),  # another sender
        b"",
    ):
        with pytest.raises(ProtocolError):
            aead.open_sealed(KEY, sealed, ad)
    with pytest.raises(ProtocolError):
        aead.open_sealed(bytes(32), sealed, AD)
    for cut in (b"", sealed[: aead.OVERHEAD - 1], sealed[:-1], sealed + b"\x00"):
        with pytest.raises(ProtocolError):
            aead.open_sealed(KEY, cut, AD)


def test_associated_data_is_injective_on_the_routing() -> None:
    triples = [(r, s, d) for r in (0, 1, 2**40) for s in (0, 1, 256) for d in (0, 1, 256)]
    assert len({aead.associated_data(*x) for x in triples}) == len(triples)
