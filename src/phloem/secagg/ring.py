"""Arithmetic in the ring Z_(2^b) that masked vectors live in.

Vectors are stored in the narrowest unsigned dtype that holds ``b`` bits (uint8/16/32/64), so
native wrap-around does the reduction for ``b`` in {8, 16, 32, 64}; other widths are masked
with :func:`reduce`. The same dtype is the wire encoding: a 2^32 modulus costs 4 bytes an entry.
"""

from __future__ import annotations

import numpy as np

from phloem.core.errors import ConfigError

__all__ = ["MAX_BITS", "dtype_for_bits", "reduce", "ring_add", "ring_neg", "ring_sub"]

MAX_BITS = 64


def dtype_for_bits(bits: int) -> np.dtype[np.unsignedinteger]:
    """The narrowest unsigned dtype holding ``bits``-bit ring elements."""
    if not 1 <= bits <= MAX_BITS:
        raise ConfigError("modulus_bits", f"{bits} is out of range", ["1..64"])
    for width, dt in ((8, np.uint8), (16, np.uint16), (32, np.uint32), (64, np.uint64)):
        if bits <= width:
            return np.dtype(dt)
    raise AssertionError("unreachable")


def reduce(v: np.ndarray, bits: int) -> np.ndarray:
    """``v mod 2^bits`` in place (a no-op when ``bits`` is the dtype's width); returns ``v``."""
    if bits != 8 * v.dtype.itemsize:
        v &= v.dtype.type((1 << bits) - 1)
    return v


def ring_add(a: np.ndarray, b: np.ndarray, bits: int) -> np.ndarray:
    """``a += b mod 2^bits`` in place; returns ``a``."""
    np.add(a, b, out=a)
    return reduce(a, bits)


def ring_sub(a: np.ndarray, b: np.ndarray, bits: int) -> np.ndarray:
    """``a -= b mod 2^bits`` in place; returns ``a``."""
    np.subtract(a, b, out=a)
    return reduce(a, bits)


def ring_neg(a: np.ndarray, bits: int) -> np.ndarray:
    """``-a mod 2^bits`` as a new array."""
    out = np.zeros_like(a)
    np.subtract(out, a, out=out)
    return reduce(out, bits)
