"""Pieces the victims share: input normalisation as a layer, and validation of ``Params``."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from phloem.core.errors import ConfigError

__all__ = ["CIFAR10_MEAN", "CIFAR10_STD", "MNIST_MEAN", "MNIST_STD", "Normalize", "check_int"]

#: per-channel statistics of the CIFAR-10 training images in [0, 1]
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
#: statistics of the MNIST training images in [0, 1]
MNIST_MEAN = (0.1307,)
MNIST_STD = (0.3081,)


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel: the model's own first step, so inputs stay in [0, 1]."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


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
