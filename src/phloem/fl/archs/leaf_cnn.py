"""LEAF's FEMNIST CNN.

Caldas et al., "LEAF: A Benchmark for Federated Settings", arXiv:1812.01097, 2018 (the FEMNIST
reference model): on 28x28 images,

    conv 5x5, 32 filters, same padding, ReLU -> max-pool 2x2
    -> conv 5x5, 64 filters, same padding, ReLU -> max-pool 2x2
    -> dense 2048, ReLU -> dense 62 (the classes),

with cross-entropy loss. Its parameter count for ``C`` input channels and ``K`` classes is
``(25 C + 1) 32 + (25*32 + 1) 64 + (7*7*64 + 1) 2048 + (2048 + 1) K`` (6,603,710 for FEMNIST).
"""

from __future__ import annotations

from typing import ClassVar

from torch import nn

from phloem.core.registry import NoParams
from phloem.fl.models import Model
from phloem.fl.registries import MODELS

__all__ = ["FemnistCNN", "femnist_cnn"]


def femnist_cnn(num_classes: int = 62, in_channels: int = 1) -> nn.Module:
    """LEAF's CNN for ``(in_channels, 28, 28)`` images."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 32, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(7 * 7 * 64, 2048),
        nn.ReLU(),
        nn.Linear(2048, num_classes),
    )


@MODELS.register
class FemnistCNN(Model):
    name: ClassVar[str] = "femnist_cnn"
    description: ClassVar[str] = (
        "CNN conv32-pool-conv64-pool-fc2048 for 28x28 images (Caldas et al., arXiv 2018)"
    )

    @classmethod
    def build(cls, params: NoParams, feature_shape: tuple[int, ...], num_outputs: int) -> nn.Module:
        if len(feature_shape) != 3 or feature_shape[1:] != (28, 28):
            raise ValueError(
                f"model 'femnist_cnn' needs (C, 28, 28) images (femnist, mnist), got feature "
                f"shape {feature_shape}"
            )
        return femnist_cnn(num_outputs, feature_shape[0])
