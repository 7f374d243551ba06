"""Validation of a part's ``Params`` values, shared by the areas (each error names the field)."""

from __future__ import annotations

import math
import numbers

from phloem.core.errors import ConfigError

__all__: list[str] = []


def real(
    field: str,
    value: object,
    *,
    low: float,
    high: float = math.inf,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """``value`` as a finite float in the interval, else a :class:`ConfigError` naming ``field``."""
    lo, hi = ("(" if low_open else "["), (")" if high_open else "]")
    interval = f"{lo}{low}, {high}{hi}"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(field, f"{value!r} is not a number in {interval}")
    v = float(value)
    if math.isnan(v):
        raise ConfigError(field, f"NaN is not a number in {interval}")
    below = v <= low if low_open else v < low
    above = v >= high if high_open else v > high
    if below or above or math.isinf(v):
        raise ConfigError(field, f"{v} is not in {interval}")
    return v


def integer(field: str, value: object, *, low: int, high: int | None = None) -> int:
    """``value`` as an int in ``[low, high]``, else a :class:`ConfigError` naming ``field``."""
    interval = f"[{low}, {high}]" if high is not None else f">= {low}"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigError(field, f"{value!r} is not an integer {interval}")
    v = int(value)
    if v < low or (high is not None and v > high):
        raise ConfigError(field, f"{v} is not an integer {interval}")
    return v


def boolean(field: str, value: object) -> bool:
    """``value`` if a bool, else a :class:`ConfigError` naming ``field``."""
    if not isinstance(value, bool):
        raise ConfigError(field, f"{value!r} is not a boolean", [True, False])
    return value
