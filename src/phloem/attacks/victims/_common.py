"""Pieces the victims share: validation of ``Params``; input normalisation (from
:mod:`phloem.nets.layers`)."""

from __future__ import annotations

from phloem.core.errors import ConfigError
from phloem.nets.layers import CIFAR10_MEAN, CIFAR10_STD, MNIST_MEAN, MNIST_STD, Normalize

__all__ = ["CIFAR10_MEAN", "CIFAR10_STD", "MNIST_MEAN", "MNIST_STD", "Normalize", "check_int"]


def check_int(victim: str, field: str, value: object, low: int, high: int | None = None) -> None:
    """Raise :class:`ConfigError` naming ``victim.<field>`` unless ``low <= value (<= high)``."""
    bad = isinstance(value, bool) or not isinstance(value, int)
    if not bad and (value < low or (high is not None and value > high)):  # type: ignore[operator]
        bad = True
    if bad:
        span = f"an int >= {low}" if high is None else f"an int in {low}..{high}"
        raise ConfigError(f"victim.{field}", f"{value!r} for {victim!r}; needs {span}")


def check_bool(victim: str, field: str, value: object) -> None:
    """Raise :class:`ConfigError` naming ``victim.<field>`` unless ``value`` is a bool."""
    if not isinstance(value, bool):
        raise ConfigError(f"victim.{field}", f"{value!r} for {victim!r}", [True, False])
