"""A cryptographic PRG expanding a 256-bit seed into a mask over Z_(2^b).

AES-256 in counter mode (or ChaCha20) keyed by the seed, with a fixed all-zero nonce: each seed
masks exactly one vector (self-mask seeds are fresh every round; pairwise seeds are derived
with the round in the HKDF info), so a key/nonce pair is never reused. The keystream is read
as little-endian words of the ring's dtype and reduced mod 2^b, which is uniform because 2^b
divides the word range.

Contrast: Flower seeds numpy's Mersenne Twister with a 32-bit fold of the seed, which is
neither a cryptographic PRG nor keyed by the full seed.
"""

from __future__ import annotations

from enum import StrEnum

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from phloem.core.errors import ConfigError, ProtocolError
from phloem.secagg.ring import dtype_for_bits, reduce

__all__ = ["SEED_BYTES", "PrgKind", "expand"]

SEED_BYTES = 32
_ZERO_NONCE = b"\x00" * 16


class PrgKind(StrEnum):
    AES_CTR = "aes-ctr"
    CHACHA20 = "chacha20"


def _cipher(kind: PrgKind, seed: bytes) -> Cipher[modes.CTR] | Cipher[None]:
    if kind is PrgKind.AES_CTR:
        return Cipher(algorithms.AES(seed), modes.CTR(_ZERO_NONCE))
    if kind is PrgKind.CHACHA20:
        return Cipher(algorithms.ChaCha20(seed, _ZERO_NONCE), mode=None)
    raise ConfigError("prg", f"unknown PRG {kind!r}", list(PrgKind))


def expand(
    seed: bytes, dim: int, bits: int, kind: PrgKind = PrgKind.AES_CTR, out: np.ndarray | None = None
) -> np.ndarray:
    """``dim`` pseudo-random elements of Z_(2^bits) from a 32-byte ``seed``.

    ``out`` (length ``dim``, the ring dtype) is filled in place when given, saving an allocation.
    """
    if len(seed) != SEED_BYTES:
        raise ProtocolError(f"a mask seed has {SEED_BYTES} bytes, got {len(seed)}")
    dt = dtype_for_bits(bits)
    if out is None:
        out = np.empty(dim, dtype=dt)
    elif out.dtype != dt or out.shape != (dim,):
        raise ConfigError("out", f"expected a ({dim},) {dt} array, got {out.shape} {out.dtype}")
    view = out.view(np.uint8)
    enc = _cipher(PrgKind(kind), seed).encryptor()
    # keystream = encryption of zeros; write it straight into the output buffer
    view[:] = 0
    enc.update_into(view, view)  # type: ignore[arg-type]
    if dt.byteorder == ">" or (dt.byteorder == "=" and np.little_endian is False):
        out.byteswap(inplace=True)
    return reduce(out, bits)
