"""ResNet-20 for CIFAR-10 (the 3-stage CIFAR ResNet with ``n = 3``).

He, Zhang, Ren, Sun, "Deep Residual Learning for Image Recognition", CVPR 2016, Section 4.2:
a 3x3 convolution with 16 filters, then three stages of ``n`` basic blocks on 32x32, 16x16 and
8x8 maps with 16, 32 and 64 filters (the first block of stages 2 and 3 has stride 2), global
average pooling and a 10-way linear layer: ``6n + 2 = 20`` weighted layers. A basic block is

    y = relu(N2(conv3x3(relu(N1(conv3x3(x))))) + s(x)),

with **option A** shortcuts: ``s`` is the identity, and where the stage changes, ``x``
subsampled by 2 and zero-padded with the new channels (no parameters). That gives 0.27M
parameters (269,722 with affine normalisation; the paper's table says 0.27M). Convolutions are
initialised as in He et al. (Kaiming normal, fan-in).

Normalisation ``N`` in federated training (``norm``):

- ``group`` (default): GroupNorm with ``groups`` groups (per-sample statistics, so nothing to
  federate but its affine weights; the usual FL replacement of batch norm);
- ``batch``: BatchNorm *without running statistics*: every forward pass, training and
  evaluation, normalises with the statistics of the batch it is given (evaluation runs in
  chunks of up to 8192 test images). phloem's flat parameter vector holds parameters only, so
  a running mean would be a non-federated buffer; this choice keeps the model a function of
  ``x`` alone, at the price of batch-dependent test outputs;
- ``none``: no normalisation (convolutions get a bias).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar

import torch
from torch import nn

from phloem.fl.models import Model
from phloem.fl.registries import MODELS

__all__ = ["Norm", "ResNet20", "ResNet20Params", "resnet20"]


class Norm(StrEnum):
    GROUP = "group"
    BATCH = "batch"
    NONE = "none"


def _norm(kind: Norm, channels: int, groups: int) -> nn.Module:
    if kind is Norm.GROUP:
        return nn.GroupNorm(min(groups, channels), channels)
    if kind is Norm.BATCH:
        return nn.BatchNorm2d(channels, track_running_stats=False)
    return nn.Identity()


class _Block(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, norm: Norm, groups: int) -> None:
        super().__init__()
        bias = norm is Norm.NONE
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=bias)
        self.n1 = _norm(norm, c_out, groups)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=bias)
        self.n2 = _norm(norm, c_out, groups)
        self.stride, self.pad = stride, c_out - c_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.n1(self.conv1(x)))
        out = self.n2(self.conv2(out))
        short = x
        if self.stride != 1:
            short = short[:, :, :: self.stride, :: self.stride]
        if self.pad:
            lo = self.pad // 2
            short = nn.functional.pad(short, (0, 0, 0, 0, lo, self.pad - lo))
        return torch.relu(out + short)


class _ResNet(nn.Module):
    def __init__(
        self, blocks: int, in_channels: int, num_classes: int, norm: Norm, groups: int
    ) -> None:
        super().__init__()
        bias = norm is Norm.NONE
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, 16, 3, 1, 1, bias=bias),
            _norm(norm, 16, groups),
            nn.ReLU(),
        ]
        c = 16
        for stage, width in enumerate((16, 32, 64)):
            for b in range(blocks):
                stride = 2 if stage > 0 and b == 0 else 1
                layers.append(_Block(c, width, stride, norm, groups))
                c = width
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x).mean(dim=(2, 3))
        out: torch.Tensor = self.head(h)
        return out


def resnet20(
    num_classes: int = 10, in_channels: int = 3, norm: Norm | str = Norm.GROUP, groups: int = 8
) -> nn.Module:
    """ResNet-20 (``n = 3``, option A shortcuts) with the given normalisation."""
    return _ResNet(3, in_channels, num_classes, Norm(norm), groups)


@dataclass(frozen=True)
class ResNet20Params:
    """``norm``: group, batch (no running statistics) or none; ``groups`` of GroupNorm (a
    divisor of 16)."""

    norm: Norm = Norm.GROUP
    groups: int = 8

    def __post_init__(self) -> None:
        if self.groups not in (1, 2, 4, 8, 16):
            raise ValueError(f"model.groups must divide 16 (1, 2, 4, 8 or 16), got {self.groups!r}")


@MODELS.register
class ResNet20(Model):
    name: ClassVar[str] = "resnet20"
    description: ClassVar[str] = (
        "CIFAR ResNet-20, option A shortcuts, 0.27M params, norm group|batch|none "
        "(He et al., CVPR 2016)"
    )
    Params: ClassVar[type[ResNet20Params]] = ResNet20Params

    @classmethod
    def build(
        cls, params: ResNet20Params, feature_shape: tuple[int, ...], num_outputs: int
    ) -> nn.Module:
        if len(feature_shape) != 3 or min(feature_shape[1:]) < 8:
            raise ValueError(
                f"model 'resnet20' needs (C, H, W) images of at least 8x8 (cifar10), got "
                f"feature shape {feature_shape}"
            )
        return resnet20(num_outputs, feature_shape[0], params.norm, params.groups)
