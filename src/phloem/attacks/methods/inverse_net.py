"""He et al.'s inverse network: transposed convolutions from the IR back to the input.

He, Zhang & Lee, *Model inversion attacks against collaborative inference*, ACSAC 2019,
section 5 (black-box attack): the attacker queries ``f_edge`` with its own images and trains
an "inverse network" of transposed convolutions, roughly mirroring ``f_edge``, on the
(IR, image) pairs. Here: one stride-2 transposed convolution (4x4) per halving of the side
between the IR and the input, each followed by batch norm and ReLU, then a 3x3 convolution to
the image's channels; the baseline the encoder-decoder of Benkraouda & Nahrstedt must beat.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from phloem.attacks.methods.learned import LearnedInversion, LearnedParams, spatial, upsample_stages
from phloem.attacks.registries import ATTACKS
from phloem.core import checks as _checks

__all__ = ["InverseNet", "InverseNetParams"]


@dataclass(frozen=True)
class InverseNetParams(LearnedParams):
    """The training budget, and ``width``: channels of the transposed convolutions."""

    width: int = 64

    def __post_init__(self) -> None:
        super().__post_init__()
        _checks.integer("width", self.width, low=1)


@ATTACKS.register
class InverseNet(LearnedInversion):
    """A transposed-convolution decoder trained on (IR, image) pairs (He et al.)."""

    name: ClassVar[str] = "inverse-net"
    description: ClassVar[str] = "black-box: transposed-conv inverse network (He et al. 2019)"
    Params: ClassVar[type[InverseNetParams]] = InverseNetParams

    def decoder(self, ir_shape: tuple[int, ...], input_shape: tuple[int, int, int]) -> nn.Module:
        width = self.params.width
        head, (c, h, _) = spatial(ir_shape, width, input_shape)
        layers: list[nn.Module] = [head]
        for _ in range(upsample_stages(h, input_shape[1])):
            layers += [
                nn.ConvTranspose2d(c, width, 4, stride=2, padding=1),
                nn.BatchNorm2d(width),
                nn.ReLU(),
            ]
            c = width
        layers += [
            nn.Upsample(size=input_shape[1:], mode="bilinear"),
            nn.Conv2d(c, input_shape[0], 3, padding=1),
        ]
        return nn.Sequential(*layers)
