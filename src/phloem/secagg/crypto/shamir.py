"""Shamir secret sharing over GF(p), p = 2^31 - 1, vectorised with numpy.

A secret byte string is cut into 24-bit chunks, each a field element with its own random
polynomial of degree ``t - 1``; the shares of all chunks for all holders come out of one
Horner evaluation over a ``(holders, chunks)`` array, so sharing a 32-byte key among hundreds
of holders costs ``t`` vector operations rather than ``t * holders * chunks`` Python steps.
Products of two elements stay below 2^62, so uint64 arithmetic never overflows.

Reconstruction is Lagrange interpolation at 0. The coefficients depend only on which holders
answered, so they are cached per holder set (a SecAgg server reuses one set for most clients).

Any ``t - 1`` shares are uniformly distributed whatever the secret (tested), and a set of
``t`` correct shares gives the secret back exactly; a chunk that does not fit in 24 bits after
reconstruction means a corrupted share and raises :class:`ProtocolError`.
"""

from __future__ import annotations

import os
from functools import lru_cache

import numpy as np

from phloem.core.errors import ConfigError, ProtocolError
from phloem.secagg.crypto.keys import RandomBytes

__all__ = [
    "CHUNK_BYTES",
    "PRIME",
    "bytes_to_field",
    "combine",
    "field_to_bytes",
    "lagrange_at_zero",
    "random_field",
    "split",
    "split_bytes",
]

PRIME = (1 << 31) - 1
CHUNK_BYTES = 3
_P = np.uint64(PRIME)


def bytes_to_field(secret: bytes) -> np.ndarray:
    """Big-endian 24-bit chunks of ``secret`` (zero-padded) as uint64 field elements."""
    pad = (-len(secret)) % CHUNK_BYTES
    raw = np.frombuffer(secret + b"\x00" * pad, dtype=np.uint8).astype(np.uint64)
    raw = raw.reshape(-1, CHUNK_BYTES)
    return (raw[:, 0] << np.uint64(16)) | (raw[:, 1] << np.uint64(8)) | raw[:, 2]


def field_to_bytes(elements: np.ndarray, length: int) -> bytes:
    """Inverse of :func:`bytes_to_field` for a secret of ``length`` bytes."""
    e = np.asarray(elements, dtype=np.uint64)
    if e.size and int(e.max()) >= 1 << (8 * CHUNK_BYTES):
        raise ProtocolError("reconstructed value is out of range: a share was corrupted")
    out = np.empty((e.size, CHUNK_BYTES), dtype=np.uint8)
    out[:, 0] = (e >> np.uint64(16)) & np.uint64(0xFF)
    out[:, 1] = (e >> np.uint64(8)) & np.uint64(0xFF)
    out[:, 2] = e & np.uint64(0xFF)
    return out.tobytes()[:length]


def random_field(shape: tuple[int, ...], rand: RandomBytes = os.urandom) -> np.ndarray:
    """Uniform elements of GF(p) (31-bit draws, the single value p rejected and redrawn)."""
    count = int(np.prod(shape))
    out = np.empty(count, dtype=np.uint64)
    filled = 0
    while filled < count:
        draw = np.frombuffer(rand(4 * (count - filled)), dtype="<u4").astype(np.uint64)
        draw &= _P  # 31 low bits: uniform over [0, 2^31 - 1]
        draw = draw[draw != _P]
        out[filled : filled + draw.size] = draw
        filled += draw.size
    return out.reshape(shape)


def _check_points(xs: np.ndarray) -> None:
    if xs.ndim != 1 or xs.size == 0:
        raise ConfigError("xs", "share points must be a non-empty 1-d array")
    if int(xs.min()) < 1 or int(xs.max()) >= PRIME:
        raise ConfigError("xs", f"share points must lie in 1..{PRIME - 1}")
    if np.unique(xs).size != xs.size:
        raise ConfigError("xs", "share points must be distinct")


def split(
    secrets: np.ndarray, xs: np.ndarray, threshold: int, rand: RandomBytes = os.urandom
) -> np.ndarray:
    """Shares of each field element in ``secrets`` at the points ``xs``.

    Parameters
    ----------
    secrets
        ``(m,)`` field elements (each ``< p``).
    xs
        ``(k,)`` distinct non-zero points, one per holder.
    threshold
        ``t``: any ``t`` shares reconstruct, ``t - 1`` reveal nothing.

    Returns
    -------
    np.ndarray
        ``(k, m)`` uint64: row ``j`` is the share held by the holder at ``xs[j]``.
    """
    xs = np.asarray(xs, dtype=np.uint64)
    _check_points(xs)
    if not 1 <= threshold <= xs.size:
        raise ConfigError("threshold", f"{threshold} must lie in 1..{xs.size} (holders)")
    s = np.asarray(secrets, dtype=np.uint64)
    if s.size and int(s.max()) >= PRIME:
        raise ConfigError("secrets", f"field elements must be < {PRIME}")
    coeffs = random_field((threshold - 1, s.size), rand)
    x = xs[:, None]
    acc = np.zeros((xs.size, s.size), dtype=np.uint64)
    for c in coeffs[::-1]:  # Horner: a_{t-1}, ..., a_1
        acc += c
        acc *= x
        acc %= _P
    acc += s
    acc %= _P
    return acc


def split_bytes(
    secret: bytes, xs: np.ndarray, threshold: int, rand: RandomBytes = os.urandom
) -> np.ndarray:
    """:func:`split` of a byte string (see :func:`bytes_to_field`)."""
    return split(bytes_to_field(secret), xs, threshold, rand)


def _modpow(base: np.ndarray, exp: int) -> np.ndarray:
    result = np.ones_like(base)
    b = base % _P
    while exp:
        if exp & 1:
            result = result * b % _P
        b = b * b % _P
        exp >>= 1
    return result


@lru_cache(maxsize=256)
def _lagrange_cached(points: tuple[int, ...]) -> np.ndarray:
    xs = np.asarray(points, dtype=np.uint64)
    t = xs.size
    num = np.ones(t, dtype=np.uint64)
    den = np.ones(t, dtype=np.uint64)
    for i in range(t):
        others = np.ones(t, dtype=bool)
        others[i] = False
        # lambda_j = prod_{i != j} x_i / (x_i - x_j); fold in x_i for every j != i
        num[others] = num[others] * xs[i] % _P
        den[others] = den[others] * ((xs[i] + _P - xs[others]) % _P) % _P
    lam: np.ndarray = num * _modpow(den, PRIME - 2) % _P
    lam.setflags(write=False)
    return lam


def lagrange_at_zero(xs: np.ndarray) -> np.ndarray:
    """Coefficients ``lambda_j`` with ``f(0) = sum_j lambda_j f(x_j)`` for degree < len(xs)."""
    xs = np.asarray(xs, dtype=np.uint64)
    _check_points(xs)
    lam: np.ndarray = _lagrange_cached(tuple(int(x) for x in xs))
    return lam


def combine(xs: np.ndarray, shares: np.ndarray, threshold: int) -> np.ndarray:
    """The secrets from ``shares`` (``(k, m)``, row ``j`` at ``xs[j]``), ``k >= threshold``.

    Uses the first ``threshold`` shares (any ``t`` determine the polynomial).
    """
    xs = np.asarray(xs, dtype=np.uint64)
    ys = np.asarray(shares, dtype=np.uint64)
    if xs.size < threshold:
        raise ProtocolError(f"{xs.size} shares cannot reconstruct a threshold-{threshold} secret")
    if ys.ndim != 2 or ys.shape[0] != xs.size:
        raise ProtocolError(f"shares of shape {ys.shape} do not match {xs.size} points")
    if ys.size and int(ys.max()) >= PRIME:
        raise ProtocolError("a share is not a field element: corrupted")
    lam = lagrange_at_zero(xs[:threshold])
    out: np.ndarray = (lam[:, None] * ys[:threshold] % _P).sum(axis=0) % _P
    return out
