"""Tests for :mod:`phloem.secagg.crypto.prg`.

References: known-answer keystreams (AES-256 of a zero block; RFC 8439 appendix A.1 for
ChaCha20), AES-CTR rebuilt from AES-ECB of counter blocks, and ChaCha20 through
``cryptography``'s streaming API, read as little-endian words with Python integers.
"""

from __future__ import annotations

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from phloem.core.errors import ConfigError, ProtocolError
from phloem.secagg.crypto.prg import SEED_BYTES, PrgKind, expand
from phloem.secagg.ring import dtype_for_bits

# AES-256 with an all-zero key, one all-zero block (counter 0)
AES256_ZERO_BLOCK = bytes.fromhex("dc95c078a2408989ad48a21492842087")
# RFC 8439, A.1 test vectors 1 and 2: ChaCha20 keystream, zero key, zero nonce, counters 0, 1
CHACHA20_ZERO_KEYSTREAM = bytes.fromhex(
    "76b8e0ada0f13d90405d6ae55386bd28bdd219b8a08ded1aa836efcc8b770dc7"
    "da41597c5157488d7724e03fb8d84a376a43b8f41518a11cc387b669b2ee6586"
    "9f07e7be5551387a98ba977c732d080dcb0f29a048e3656912c6533e32ee7aed"
    "29b721769ce64e43d57133b074d839d531ed1f28510afb45ace10a1f4b794d6f"
)


def keystream_reference(kind: PrgKind, seed: bytes, nbytes: int) -> bytes:
    if kind is PrgKind.AES_CTR:  # CTR by hand: E_k(0), E_k(1), ... (128-bit big-endian counter)
        ecb = Cipher(algorithms.AES(seed), modes.ECB()).encryptor()
        blocks = -(-nbytes // 16)
        return b"".join(ecb.update(i.to_bytes(16, "big")) for i in range(blocks))[:nbytes]
    enc = Cipher(algorithms.ChaCha20(seed, bytes(16)), mode=None).encryptor()
    return b"".join(enc.update(bytes(1)) for _ in range(nbytes))  # byte by byte


def expand_reference(kind: PrgKind, seed: bytes, dim: int, bits: int) -> list[int]:
    width = dtype_for_bits(bits).itemsize
    ks = keystream_reference(kind, seed, dim * width)
    return [
        int.from_bytes(ks[i * width : (i + 1) * width], "little") % (1 << bits) for i in range(dim)
    ]


def test_known_answers() -> None:
    aes = expand(bytes(32), 4, 32, PrgKind.AES_CTR)
    assert aes.tobytes() == AES256_ZERO_BLOCK  # little-endian host: words are the bytes
    assert [int(x) for x in aes] == [
        int.from_bytes(AES256_ZERO_BLOCK[i : i + 4], "little") for i in range(0, 16, 4)
    ]
    cha = expand(bytes(32), 16, 64, PrgKind.CHACHA20)
    assert [int(x) for x in cha] == [
        int.from_bytes(CHACHA20_ZERO_KEYSTREAM[i : i + 8], "little") for i in range(0, 128, 8)
    ]
    assert keystream_reference(PrgKind.CHACHA20, bytes(32), 128) == CHACHA20_ZERO_KEYSTREAM
    assert keystream_reference(PrgKind.AES_CTR, bytes(32), 16) == AES256_ZERO_BLOCK


@settings(max_examples=80, deadline=None)
@given(
    st.binary(min_size=32, max_size=32),
    st.integers(0, 70),
    st.integers(1, 64),
    st.sampled_from(list(PrgKind)),
)
def test_expand_matches_the_reference(seed: bytes, dim: int, bits: int, kind: PrgKind) -> None:
    out = expand(seed, dim, bits, kind)
    assert out.dtype == dtype_for_bits(bits) and out.shape == (dim,)
    assert [int(x) for x in out] == expand_reference(kind, seed, dim, bits)
    # string names work too, and the output buffer variant gives the same
    buf = np.full(dim, 0xAB, dtype=dtype_for_bits(bits))
    assert expand(seed, dim, bits, PrgKind(kind.value), out=buf) is buf
    np.testing.assert_array_equal(buf, out)


def test_prefix_property_and_kinds_differ() -> None:
    seed = bytes(range(32))
    long = expand(seed, 100, 32)
    np.testing.assert_array_equal(expand(seed, 37, 32), long[:37])
    assert not np.array_equal(expand(seed, 100, 32, PrgKind.CHACHA20), long)


@pytest.mark.parametrize("kind", list(PrgKind))
def test_every_seed_byte_matters(kind: PrgKind) -> None:
    seed = bytes(np.random.default_rng(0).integers(0, 256, SEED_BYTES, dtype=np.uint8))
    base = expand(seed, 64, 32, kind)
    seen = {base.tobytes()}
    for pos in range(SEED_BYTES):
        for flip in (0x01, 0x80):
            other = bytearray(seed)
            other[pos] ^= flip
            mask = expand(bytes(other), 64, 32, kind)
            assert np.mean(mask != base) > 0.9  # not just different: unrelated
            seen.add(mask.tobytes())
    assert len(seen) == 1 + 2 * SEED_BYTES


@pytest.mark.parametrize("bits", [1, 5, 12, 20, 31, 33, 50, 63])
def test_narrow_rings_are_reduced_and_uniform(bits: int) -> None:
    out = expand(b"\x07" * 32, 40000, bits)
    assert int(out.max()) < 1 << bits
    top = (out >> out.dtype.type(max(bits - 3, 0))).astype(np.int64)
    counts = np.bincount(top, minlength=min(8, 1 << bits))
    assert counts.size == min(8, 1 << bits)  # the top bits of the ring, not of the word
    assert stats.chisquare(counts).pvalue > 1e-3


def test_bad_arguments() -> None:
    with pytest.raises(ProtocolError, match="32 bytes"):
        expand(bytes(31), 4, 32)
    with pytest.raises(ConfigError, match="out"):
        expand(bytes(32), 4, 32, out=np.empty(4, np.uint64))
    with pytest.raises(ConfigError, match="out"):
        expand(bytes(32), 4, 32, out=np.empty(5, np.uint32))
    with pytest.raises(ConfigError, match="modulus_bits"):
        expand(bytes(32), 4, 65)
    with pytest.raises(ValueError):
        expand(bytes(32), 4, 32, "rc4")  # type: ignore[arg-type]
