"""X25519 key agreement and HKDF-SHA256 key derivation.

Every client makes two fresh key pairs a round (Bonawitz et al. 2017, round 0): ``c`` to
encrypt the shares it relays through the server, ``s`` to agree pairwise mask seeds. A shared
secret is never used raw: HKDF-SHA256 derives a 32-byte key from it with an ``info`` string
naming the purpose, the protocol round and both parties, so no key serves two purposes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from phloem.core.errors import ProtocolError

__all__ = [
    "KEY_BYTES",
    "KeyPair",
    "RandomBytes",
    "agree",
    "check_public_key",
    "hkdf",
    "insecure_random_bytes",
    "pair_info",
]

KEY_BYTES = 32

#: A source of secret random bytes: ``os.urandom`` in use; tests may inject a seeded one.
RandomBytes = Callable[[int], bytes]


def insecure_random_bytes(seed: int) -> RandomBytes:
    """A seeded, reproducible byte source for tests and benchmarks. NOT secret: never deploy."""
    gen = np.random.default_rng(seed)

    def draw(n: int) -> bytes:
        return gen.bytes(n)

    return draw


@dataclass(frozen=True)
class KeyPair:
    """An X25519 key pair; ``secret`` is the 32-byte private scalar (what gets secret-shared)."""

    secret: bytes
    public: bytes

    @classmethod
    def generate(cls, rand: RandomBytes = os.urandom) -> KeyPair:
        return cls.from_secret(rand(KEY_BYTES))

    @classmethod
    def from_secret(cls, secret: bytes) -> KeyPair:
        if len(secret) != KEY_BYTES:
            raise ProtocolError(f"an X25519 secret key has {KEY_BYTES} bytes, got {len(secret)}")
        sk = X25519PrivateKey.from_private_bytes(secret)
        pk = sk.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        pair = cls(secret, pk)
        object.__setattr__(pair, "_private", sk)
        return pair

    @property
    def private(self) -> X25519PrivateKey:
        """The parsed private key (parsed once: a parse costs as much as half an exchange)."""
        sk = self.__dict__.get("_private")
        if sk is None:
            sk = X25519PrivateKey.from_private_bytes(self.secret)
            object.__setattr__(self, "_private", sk)
        return sk

    def __getstate__(self) -> dict[str, bytes]:
        return {"secret": self.secret, "public": self.public}  # the parsed key is not pickled


def hkdf(secret: bytes, info: bytes, length: int = KEY_BYTES) -> bytes:
    """HKDF-SHA256 (RFC 5869) of ``secret`` for the purpose ``info``, without salt."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(secret)


def pair_info(
    purpose: bytes, round_id: int, a: int, b: int, key_a: bytes = b"", key_b: bytes = b""
) -> bytes:
    """The HKDF ``info`` for a key between clients ``a`` and ``b`` (order-free) in a round.

    ``key_a`` and ``key_b`` are the two parties' public keys of the exchange; binding them
    into the derivation (ordered by client id, like the ids) means a key derived from a
    substituted public key never equals one derived from the advertised keys, whoever
    substituted it.
    """
    (lo, key_lo), (hi, key_hi) = sorted([(a, key_a), (b, key_b)], key=lambda p: p[0])
    ids = b"|".join(x.to_bytes(8, "big") for x in (round_id, lo, hi))
    keys = len(key_lo).to_bytes(2, "big") + key_lo + len(key_hi).to_bytes(2, "big") + key_hi
    return b"phloem/secagg/v2|" + purpose + b"|" + ids + b"|" + keys


#: the X25519 private scalar used only to test public keys (any clamped scalar works: a
#: low-order point times a multiple of 8 is the identity, whose shared secret is all zero)
_PROBE = X25519PrivateKey.from_private_bytes(bytes(range(1, KEY_BYTES + 1)))


def check_public_key(public: bytes) -> None:
    """Refuse what cannot be an honest X25519 public key.

    Raises
    ------
    ProtocolError
        If ``public`` does not have 32 bytes, or is a point of small order (one of the
        encodings whose exchange with any key gives the all-zero shared secret, which an
        attacker advertises to make every neighbour's key agreement fail or become public).
    """
    if len(public) != KEY_BYTES:
        raise ProtocolError(f"an X25519 public key has {KEY_BYTES} bytes, got {len(public)}")
    try:
        _PROBE.exchange(X25519PublicKey.from_public_bytes(public))
    except ValueError as exc:  # OpenSSL refuses an all-zero shared secret
        raise ProtocolError("a low-order X25519 public key (all-zero shared secret)") from exc


def agree(secret: bytes | X25519PrivateKey, peer_public: bytes, info: bytes) -> bytes:
    """``HKDF(X25519(secret, peer_public), info)``: a 32-byte key both sides derive alike.

    Raises
    ------
    ProtocolError
        If ``peer_public`` is not a valid X25519 public key (or is a low-order point, which
        would give an all-zero shared secret).
    """
    try:
        peer = X25519PublicKey.from_public_bytes(peer_public)
        sk = X25519PrivateKey.from_private_bytes(secret) if isinstance(secret, bytes) else secret
        shared = sk.exchange(peer)
    except ValueError as exc:
        raise ProtocolError(f"bad X25519 public key: {exc}") from exc
    return hkdf(shared, info)
