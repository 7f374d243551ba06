"""Layers shared by the standard architectures (:mod:`phloem.nets.architectures`)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "MNIST_MEAN",
    "MNIST_STD",
    "BasicBlock",
    "Normalize",
    "conv_bn_relu",
]

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


class BasicBlock(nn.Module):
    """He et al.'s basic block: two 3x3 conv-BN layers with an identity shortcut (option A:
    subsample and zero-pad channels where the shape changes, no parameters), then ReLU.

    :meth:`branch` and :meth:`shortcut` are exposed so that a caller can treat the two paths
    apart (DropBP skips the branch's backward pass and keeps the shortcut's).
    """

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.stride = stride
        self.pad = c_out - c_in

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        """The residual branch, before the sum."""
        out: torch.Tensor = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return out

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        """The identity path, subsampled and zero-padded to the branch's shape."""
        if self.stride != 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.pad:
            half = self.pad // 2
            x = F.pad(x, (0, 0, 0, 0, half, self.pad - half))
        return x

    def combine(self, branch: torch.Tensor, shortcut: torch.Tensor) -> torch.Tensor:
        """The block's output from its two paths."""
        return F.relu(branch + shortcut)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.combine(self.branch(x), self.shortcut(x))


def conv_bn_relu(c_in: int, c_out: int) -> nn.Sequential:
    """A 3x3 convolution (no bias), batch norm and ReLU: one VGG-BN layer."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(),
    )
