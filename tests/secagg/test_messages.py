"""Tests for :mod:`phloem.secagg.messages`: the wire encoding of every message type."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phloem.core.errors import ProtocolError
from phloem.secagg.messages import (
    ConsistencyRequest,
    ConsistencySignature,
    EncryptedShares,
    KeysAdvert,
    KeysBroadcast,
    MaskedInput,
    Message,
    RemaskRequest,
    RoundConfig,
    Setup,
    SharesDelivery,
    UnmaskRequest,
    UnmaskShares,
    decode,
    encode,
)

u64 = st.integers(0, 2**64 - 1)
ids = st.integers(0, 2**64 - 1)
blobs = st.binary(max_size=80)
DTYPES = [np.uint8, np.uint16, np.uint32, np.uint64]


@st.composite
def arrays(draw: st.DrawFn) -> np.ndarray:
    dt = np.dtype(draw(st.sampled_from(DTYPES)))
    values = draw(st.lists(st.integers(0, 2 ** (8 * dt.itemsize) - 1), max_size=30))
    return np.array(values, dtype=dt)


configs = st.builds(
    RoundConfig,
    round_id=u64,
    dim=u64,
    modulus_bits=u64,
    threshold=u64,
    prg=st.text(max_size=20),
    consistency_check=st.booleans(),
    num_clients=u64,
)

messages: st.SearchStrategy[Message] = st.one_of(
    st.builds(Setup, u64, configs, ids, st.dictionaries(ids, u64, max_size=8), u64),
    st.builds(KeysAdvert, u64, ids, blobs, blobs, blobs, blobs),
    st.builds(KeysBroadcast, u64, st.dictionaries(ids, blobs, max_size=8)),
    st.builds(
        EncryptedShares,
        u64,
        ids,
        st.dictionaries(ids, blobs, max_size=8),
        st.dictionaries(ids, blobs, max_size=8),
    ),
    st.builds(
        SharesDelivery,
        u64,
        st.dictionaries(ids, blobs, max_size=8),
        st.dictionaries(ids, blobs, max_size=8),
    ),
    st.builds(MaskedInput, u64, ids, arrays(), st.dictionaries(ids, st.text(max_size=30))),
    st.builds(RemaskRequest, u64, st.lists(ids, max_size=10).map(tuple)),
    st.builds(ConsistencyRequest, u64, st.lists(ids, max_size=10).map(tuple)),
    st.builds(ConsistencySignature, u64, ids, blobs),
    st.builds(
        UnmaskRequest,
        u64,
        st.lists(ids, max_size=10).map(tuple),
        st.lists(ids, max_size=10).map(tuple),
        st.dictionaries(ids, blobs, max_size=5),
    ),
    st.builds(
        UnmaskShares,
        u64,
        ids,
        st.dictionaries(ids, arrays(), max_size=5),
        st.dictionaries(ids, arrays(), max_size=5),
    ),
)


def assert_same(a: Any, b: Any) -> None:
    """Field-by-field equality; arrays must agree in dtype, shape and values."""
    assert type(a) is type(b)
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)
    elif dataclasses.is_dataclass(a):
        for f in dataclasses.fields(a):
            assert_same(getattr(a, f.name), getattr(b, f.name))
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            assert_same(a[k], b[k])
    else:
        assert a == b


@settings(max_examples=300, deadline=None)
@given(messages)
def test_every_message_round_trips(msg: Message) -> None:
    data = encode(msg)
    assert data[:4] == b"PSA2" and data[4] == msg.TYPE
    assert_same(decode(data), msg)
    assert encode(decode(data)) == data


@settings(max_examples=60, deadline=None)
@given(messages)
def test_truncated_or_padded_messages_are_refused(msg: Message) -> None:
    data = encode(msg)
    for cut in sorted({0, 3, 4, 5, len(data) // 2, len(data) - 1}):
        if cut < len(data):
            with pytest.raises(ProtocolError):
                decode(data[:cut])
    for extra in (b"\x00", b"PSA1"):
        with pytest.raises(ProtocolError, match="trailing bytes"):
            decode(data + extra)


def test_every_prefix_of_a_message_is_refused() -> None:
    msg = UnmaskShares(3, 1, {2: np.arange(11, dtype=np.uint32)}, {4: np.zeros(11, np.uint32)})
    data = encode(msg)
    for cut in range(len(data)):
        with pytest.raises(ProtocolError):
            decode(data[:cut])


def test_bad_headers_are_refused() -> None:
    data = encode(ConsistencySignature(1, 2, b"sig"))
    for bad in (b"PSA1" + data[4:], b"psa2" + data[4:], b"", b"PS"):
        with pytest.raises(ProtocolError, match="bad magic"):
            decode(bad)
    for code in (0, 12, 255):
        with pytest.raises(ProtocolError, match="unknown message type"):
            decode(data[:4] + bytes([code]) + data[5:])


def test_malformed_bodies_are_refused() -> None:
    data = bytearray(encode(MaskedInput(1, 2, np.zeros(3, np.uint16))))
    dtype_at = 4 + 1 + 8 + 8
    assert data[dtype_at] == 2  # uint16
    data[dtype_at] = 9
    with pytest.raises(ProtocolError, match="dtype code"):
        decode(bytes(data))
    cfg = RoundConfig(1, 2, 3, 4, prg="aes-ctr")
    raw = encode(Setup(1, cfg, 0, {}, 1))
    bad_utf8 = raw.replace(b"aes-ctr", b"aes-\xffr")
    with pytest.raises(ProtocolError, match="malformed Setup"):
        decode(bad_utf8)
    # a length field pointing past the end
    sig = bytearray(encode(ConsistencySignature(1, 2, b"abc")))
    sig[21:25] = (10**6).to_bytes(4, "little")
    with pytest.raises(ProtocolError):
        decode(bytes(sig))


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 11), st.binary(max_size=120))
def test_random_bodies_raise_protocol_errors_only(code: int, body: bytes) -> None:
    try:
        msg = decode(b"PSA2" + bytes([code]) + body)
    except ProtocolError:
        return
    # whatever decodes is canonical: it encodes back to the very same bytes
    assert code == msg.TYPE
    assert encode(msg) == b"PSA2" + bytes([code]) + body


def test_non_canonical_encodings_are_refused() -> None:
    data = encode(KeysBroadcast(1, {5: b"a", 6: b"b"}))
    twice = data.replace((6).to_bytes(8, "little"), (5).to_bytes(8, "little"))
    with pytest.raises(ProtocolError, match="client 5 appears twice"):
        decode(twice)
    raw = bytearray(encode(Setup(1, RoundConfig(1, 2, 3, 4, consistency_check=True), 0, {}, 1)))
    flag_at = 4 + 1 + 8 + 4 * 8 + 4 + len(b"aes-ctr")
    assert raw[flag_at] == 1
    raw[flag_at] = 2
    with pytest.raises(ProtocolError, match="flag must be 0 or 1"):
        decode(bytes(raw))


@pytest.mark.parametrize("dtype", DTYPES)
def test_ring_vectors_travel_at_their_width(dtype: type) -> None:
    width = np.dtype(dtype).itemsize
    header = len(encode(MaskedInput(5, 9, np.zeros(0, dtype))))
    # magic, type, round, sender, dtype code, length; after the vector, 0 rejections
    assert header == 4 + 1 + 8 + 8 + 1 + 8 + 4
    for d in (1, 100, 1000):
        vec = np.arange(d, dtype=np.uint64).astype(dtype)
        data = encode(MaskedInput(5, 9, vec))
        assert len(data) == header + d * width
        out = decode(data)
        assert isinstance(out, MaskedInput) and out.vector.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(out.vector, vec)


def test_byte_order_is_little_endian_on_the_wire() -> None:
    native = np.array([1, 2**32 - 2], dtype=np.uint32)
    big = native.astype(">u4")
    assert encode(MaskedInput(0, 0, big)) == encode(MaskedInput(0, 0, native))
    assert encode(MaskedInput(0, 0, native))[-12:-4] == b"\x01\x00\x00\x00\xfe\xff\xff\xff"
    out = decode(encode(MaskedInput(0, 0, big)))
    assert isinstance(out, MaskedInput) and out.vector.dtype == np.uint32
    assert out.vector.tolist() == native.tolist()


def test_unencodable_arrays_are_refused() -> None:
    for bad in (np.zeros(3, np.int64), np.zeros((2, 2), np.uint32), np.zeros(3, np.float32)):
        with pytest.raises(ProtocolError, match="cannot encode"):
            encode(MaskedInput(0, 0, bad))
