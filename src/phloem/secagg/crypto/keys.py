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


def pair_info(purpose: bytes, round_id: int, a: int, b: int) -> bytes:
    """The HKDF ``info`` for a key between clients ``a`` and ``b`` (order-free) in a round."""
    lo, hi = (a, b) if a <= b else (b, a)
    return (
        b"phloem/secagg/v1|"
        + purpose
        + b"|"
        + b"|".join(x.to_bytes(8, "big") for x in (round_id, lo, hi))
    )


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
