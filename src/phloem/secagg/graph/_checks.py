"""Argument checks and client counts shared by graph construction and parameter search."""

from __future__ import annotations

import math

import numpy as np

from phloem.core.errors import ConfigError

# Tolerance for fractions such as 0.29 * 100 = 28.999999999999996 that mean a whole number.
_FRACTION_EPS = 1e-9


def check_n(n: int) -> None:
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 2:
        raise ConfigError("n", f"{n!r} is not a number of clients to aggregate", ["int >= 2"])


def check_fraction(field: str, value: float) -> None:
    if not (math.isfinite(value) and 0.0 <= value < 1.0):
        raise ConfigError(field, f"{value!r} is not a fraction of the clients", ["[0, 1)"])


def check_bits(field: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0.0):
        raise ConfigError(field, f"{value!r} is not a positive number of bits", ["> 0"])


def clients_in(fraction: float, n: int) -> int:
    """``floor(fraction * n)`` clients, at most the ``n - 1`` others of a given client."""
    return min(n - 1, math.floor(fraction * n + _FRACTION_EPS))
