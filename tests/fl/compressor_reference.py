"""Slow, obviously-correct references for the compressors in :mod:`phloem.fl.compressors`.

Everything here is plain Python on lists of floats, written from the papers' definitions and
sharing no code with the library. A random operator is described by its *marginal law*: for each
coordinate, the finitely many values it can take and their probabilities. That is enough for
exact first and second moments (``E||C(v) - v||^2`` is a sum over coordinates whatever the
dependence between them), and the tests compare Monte Carlo draws of the real compressor with
these exact numbers.
"""

from __future__ import annotations

import math

#: The law of one coordinate: ``(value, probability)`` pairs, probabilities summing to one.
Law = list[tuple[float, float]]

__all__ = [
    "Law",
    "bernoulli_laws",
    "exact_mean",
    "exact_sq_error",
    "identity_laws",
    "lower_power_of_two",
    "natural_laws",
    "qsgd_laws",
    "randk_laws",
    "scaled_laws",
    "topk",
]


def lower_power_of_two(a: float) -> float:
    """The largest power of two ``<= a`` for ``a > 0``, by repeated halving or doubling.

    Halving and doubling a power of two are exact (also among subnormals), so this needs no
    logarithm and no ``frexp``.
    """
    if not a > 0.0:
        raise ValueError(f"need a > 0, got {a}")
    lo = 1.0
    while lo > a:
        lo /= 2.0
    while lo * 2.0 <= a:
        lo *= 2.0
    return lo


def identity_laws(v: list[float]) -> list[Law]:
    """``C(v) = v``."""
    return [[(x, 1.0)] for x in v]


def randk_laws(v: list[float], k: int) -> list[Law]:
    """Marginals of Rand-K: ``x d / k`` with probability ``k / d``, else ``0``."""
    d = len(v)
    if k >= d:
        return identity_laws(v)
    return [[(x * d / k, k / d), (0.0, 1.0 - k / d)] for x in v]


def bernoulli_laws(v: list[float], p: float) -> list[Law]:
    """Marginals of the one-coin Bernoulli compressor: ``x / p`` with probability ``p``, else 0."""
    if p == 1.0:
        return identity_laws(v)
    return [[(x / p, p), (0.0, 1.0 - p)] for x in v]


def natural_laws(v: list[float]) -> list[Law]:
    """Natural compression: ``lo`` or ``2 lo`` (signed), with ``lo <= |x| < 2 lo``, unbiased."""
    laws: list[Law] = []
    for x in v:
        if x == 0.0:
            laws.append([(0.0, 1.0)])
            continue
        lo = lower_power_of_two(abs(x))
        p_up = (abs(x) - lo) / lo
        laws.append([(math.copysign(lo, x), 1.0 - p_up), (math.copysign(2.0 * lo, x), p_up)])
    return laws


def qsgd_laws(v: list[float], s: int) -> list[Law]:
    """QSGD, ``s`` levels: ``||v|| sign(x) l / s`` for the two ``l`` around ``s |x| / ||v||``."""
    norm = math.sqrt(math.fsum(x * x for x in v))
    if norm == 0.0:
        return [[(0.0, 1.0)] for _ in v]
    laws: list[Law] = []
    for x in v:
        r = min(abs(x) / norm * s, float(s))
        lower = math.floor(r)
        q = r - lower
        sign = math.copysign(1.0, x)
        laws.append([(sign * norm * lower / s, 1.0 - q), (sign * norm * (lower + 1) / s, q)])
    return laws


def scaled_laws(laws: list[Law], omega: float) -> list[Law]:
    """The laws of ``Q(v) / (omega + 1)`` given those of ``Q(v)``."""
    c = 1.0 / (omega + 1.0)
    return [[(c * value, prob) for value, prob in law] for law in laws]


def exact_mean(laws: list[Law]) -> list[float]:
    """``E[C(v)_i]`` for each coordinate."""
    return [math.fsum(value * prob for value, prob in law) for law in laws]


def exact_sq_error(laws: list[Law], v: list[float]) -> list[float]:
    """``E[(C(v)_i - v_i)^2]`` for each coordinate (sum them for ``E||C(v) - v||^2``)."""
    return [
        math.fsum(prob * (value - x) ** 2 for value, prob in law)
        for law, x in zip(laws, v, strict=True)
    ]


def topk(v: list[float], k: int) -> list[float]:
    """Top-K by sorting: largest magnitude first, lowest index first among equal magnitudes."""
    order = sorted(range(len(v)), key=lambda i: (-abs(v[i]), i))
    keep = set(order[:k])
    return [x if i in keep else 0.0 for i, x in enumerate(v)]
