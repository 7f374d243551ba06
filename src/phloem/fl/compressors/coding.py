"""Bit counts of the codes a quantiser's message can be sent with: fixed-length or Elias.

A quantiser such as QSGD or random dithering sends a norm (one float) and, per coordinate, a
sign and an integer level ``xi_i >= 0``. Two ways of writing the levels are counted here:

- ``fixed``: every coordinate as a sign bit and a fixed-length level of ``ceil(log2(s + 1))``
  bits;
- ``elias``: the sparse code of Section 3.2 of

      D. Alistarh, D. Grubic, J. Li, R. Tomioka, M. Vojnovic. "QSGD: Communication-efficient
      SGD via gradient quantization and encoding". NeurIPS 2017.

  Only the nonzero levels travel, in increasing coordinate order, each as three fields: the
  *gap* from the previous nonzero coordinate (the first one counted from position -1, so a
  gap is an integer ``>= 1``) in Elias omega code, its sign bit, and its level ``xi_i >= 1``
  in Elias omega code. The receiver knows ``d`` and the message length, so no end marker is
  needed; a zero vector is its norm alone.

Elias codes (P. Elias, "Universal codeword sets and representations of the integers", IEEE
Trans. Information Theory 21(2), 1975) write an integer ``n >= 1`` without knowing its size in
advance:

- gamma: ``floor(log2 n)`` zeros, then ``n`` in binary: ``2 floor(log2 n) + 1`` bits;
- omega (the recursive code QSGD uses): ``n`` in binary, preceded by the omega-style code of
  its length minus one, recursively, ending with a single ``0``: ``1 + sum`` of the binary
  lengths of ``n``, ``floor(log2 n)``, ``floor(log2 floor(log2 n))``, ... down to (excluding) 1.
"""

from __future__ import annotations

import numbers
from enum import StrEnum
from typing import TYPE_CHECKING

from phloem.core.errors import ConfigError
from phloem.fl.compressors.base import FLOAT_BITS

if TYPE_CHECKING:
    import torch

__all__ = [
    "Coding",
    "elias_gamma_bits",
    "elias_omega_bits",
    "elias_omega_lengths",
    "elias_worst_bits",
    "parse_coding",
    "sparse_levels_bits",
]


class Coding(StrEnum):
    """How a quantiser's levels are written on the wire (``compressor.coding``)."""

    #: a sign bit and a ``ceil(log2(s + 1))``-bit level per coordinate
    FIXED = "fixed"
    #: QSGD's sparse code: Elias omega gaps and levels of the nonzero coordinates only
    ELIAS = "elias"


def parse_coding(value: object, field: str) -> Coding:
    """``value`` as a :class:`Coding` (a member or its name).

    Raises
    ------
    ConfigError
        Naming ``field`` and listing the codings.
    """
    if isinstance(value, str) and value in {c.value for c in Coding}:
        return Coding(value)
    raise ConfigError(field, f"unknown coding {value!r}", [c.value for c in Coding])


def _check_positive_int(n: object, what: str) -> int:
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"{what} codes integers >= 1, got {n!r}")
    return int(n)


def elias_gamma_bits(n: int) -> int:
    """Length of the Elias gamma code of ``n >= 1``: ``2 floor(log2 n) + 1``.

    Raises
    ------
    ValueError
        When ``n`` is not an integer ``>= 1``.
    """
    n = _check_positive_int(n, "Elias gamma")
    return 2 * (n.bit_length() - 1) + 1


def elias_omega_bits(n: int) -> int:
    """Length of the Elias omega code of ``n >= 1`` (``1`` for ``n = 1``, ``3`` for 2 and 3).

    Raises
    ------
    ValueError
        When ``n`` is not an integer ``>= 1``.
    """
    n = _check_positive_int(n, "Elias omega")
    length = 1  # the final "0"
    while n > 1:
        b = n.bit_length()
        length += b
        n = b - 1
    return length


def elias_omega_lengths(n: torch.Tensor) -> torch.Tensor:
    """:func:`elias_omega_bits` of each entry of an integer tensor with entries ``>= 1``.

    Exact for entries below ``2^53`` (the binary lengths are read from ``frexp`` of float64).
    """
    import torch

    cur = n.to(torch.int64)
    total = torch.ones_like(cur)
    while bool((cur > 1).any()):
        longer = cur > 1
        _, exponent = torch.frexp(cur.to(torch.float64))  # cur = m 2^e, 1/2 <= m < 1
        length = exponent.to(torch.int64)  # the binary length of cur
        total += torch.where(longer, length, 0)
        cur = torch.where(longer, length - 1, 1)
    return total


def sparse_levels_bits(levels: torch.Tensor) -> int:
    """Bits of QSGD's Elias message for the integer ``levels`` (``>= 0``), norm included.

    ``FLOAT_BITS`` for the norm, then per nonzero level its Elias omega gap, a sign bit and
    its Elias omega level (see the module docstring).
    """
    import torch

    idx = torch.nonzero(levels.reshape(-1)).reshape(-1)
    if idx.numel() == 0:
        return FLOAT_BITS
    previous = torch.cat([idx.new_full((1,), -1), idx[:-1]])
    gaps = idx - previous
    nonzero = levels.reshape(-1)[idx].round().to(torch.int64)
    body = elias_omega_lengths(gaps).sum() + idx.numel() + elias_omega_lengths(nonzero).sum()
    return FLOAT_BITS + int(body)


def elias_worst_bits(d: int, max_level: int) -> int:
    """An upper bound on :func:`sparse_levels_bits` for ``d`` levels in ``{0, ..., max_level}``.

    Every coordinate nonzero, each with gap 1 (1 bit), a sign bit and the longest level code:
    ``FLOAT_BITS + d (2 + elias_omega_bits(max_level))``. A message with zeros is not longer:
    with ``L`` the omega length, ``L(g) <= 3 g - 2`` for every gap ``g >= 1``, so ``nz``
    nonzeros with gaps summing to at most ``d`` cost at most
    ``sum (3 g_i - 2 + 1 + L(max_level)) <= 3 d + nz (L(max_level) - 1) <= d (2 + L(max_level))``.
    """
    return FLOAT_BITS + d * (2 + elias_omega_bits(max(1, max_level)))
