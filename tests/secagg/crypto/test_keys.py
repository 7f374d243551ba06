"""Tests for :mod:`phloem.secagg.crypto.keys` (RFC 7748 and RFC 5869 known answers)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phloem.core.errors import ProtocolError
from phloem.secagg.crypto.keys import (
    KEY_BYTES,
    KeyPair,
    agree,
    hkdf,
    insecure_random_bytes,
    pair_info,
)

# RFC 7748, section 6.1
ALICE_SK = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
ALICE_PK = bytes.fromhex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
BOB_SK = bytes.fromhex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
BOB_PK = bytes.fromhex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
SHARED = bytes.fromhex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")


def test_x25519_known_answer() -> None:
    assert KeyPair.from_secret(ALICE_SK).public == ALICE_PK
    assert KeyPair.from_secret(BOB_SK).public == BOB_PK
    info = pair_info(b"mask", 3, 1, 2)
    assert agree(ALICE_SK, BOB_PK, info) == hkdf(SHARED, info)
    assert agree(BOB_SK, ALICE_PK, info) == hkdf(SHARED, info)


def test_hkdf_known_answer() -> None:
    # RFC 5869, test case 3: SHA-256, no salt, no info
    okm = hkdf(b"\x0b" * 22, b"", 42)
    assert okm.hex() == (
        "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"
    )
    assert len(hkdf(b"x", b"y")) == KEY_BYTES


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32), st.integers(0, 2**40), st.integers(0, 2**40))
def test_agreement_is_symmetric_and_bound_to_its_info(seed: int, a: int, b: int) -> None:
    rand = insecure_random_bytes(seed)
    ka, kb = KeyPair.generate(rand), KeyPair.generate(rand)
    key = agree(ka.secret, kb.public, pair_info(b"mask", 5, a, b))
    assert len(key) == KEY_BYTES
    assert key == agree(kb.secret, ka.public, pair_info(b"mask", 5, b, a))  # order-free
    assert key != agree(ka.secret, kb.public, pair_info(b"share-encryption", 5, a, b))
    assert key != agree(ka.secret, kb.public, pair_info(b"mask", 6, a, b))
    if a != b:
        assert key != agree(ka.secret, kb.public, pair_info(b"mask", 5, a, a))


def test_pair_info_is_injective() -> None:
    infos = {
        pair_info(p, r, a, b)
        for p in (b"mask", b"share-encryption")
        for r in (0, 1)
        for a in (0, 1, 2)
        for b in (0, 1, 2)
        if a <= b
    }
    assert len(infos) == 2 * 2 * 6


def test_bad_keys_are_protocol_errors() -> None:
    kp = KeyPair.generate(insecure_random_bytes(0))
    with pytest.raises(ProtocolError, match="bad X25519 public key"):
        agree(kp.secret, kp.public[:31], b"i")
    with pytest.raises(ProtocolError, match="bad X25519 public key"):
        agree(kp.secret, bytes(32), b"i")  # a low-order point: all-zero shared secret
    with pytest.raises(ProtocolError, match="32 bytes"):
        KeyPair.from_secret(bytes(31))


def test_seeded_randomness_is_reproducible_and_fresh_randomness_is_not() -> None:
    r1, r2, r3 = insecure_random_bytes(1), insecure_random_bytes(1), insecure_random_bytes(2)
    first = r1(40)
    assert first == r2(40) and first != r3(40)
    assert r1(7) != r1(7)  # a stream, not a constant
    assert KeyPair.generate(insecure_random_bytes(4)) == KeyPair.generate(insecure_random_bytes(4))
    assert KeyPair.generate() != KeyPair.generate()
