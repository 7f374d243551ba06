"""Benkraouda & Nahrstedt's encoder-decoder: residual blocks at the IR's resolution, then up.

Benkraouda & Nahrstedt, *Image reconstruction attacks on distributed machine learning models*,
DistributedML '21: an attacker who can query the edge part trains a CNN encoder-decoder on
(image, IR) pairs and reconstructs private inputs (reported "70% similarity"). Their network is
not public; this follows its description -- process the IR at its native resolution with
residual blocks (an encoder that keeps the spatial detail the IR still has), then upsample to
the input's size -- with every size a parameter. A reproduction *in the spirit of* the paper.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from phloem.attacks.methods.learned import LearnedInversion, LearnedParams, spatial, upsample_stages
from phloem.attacks.registries import ATTACKS
from phloem.core import checks as _checks

__all__ = ["EncoderDecoder", "EncoderDecoderParams"]


@dataclass(frozen=True)
class EncoderDecoderParams(LearnedParams):
    """The training budget, ``width`` channels and ``blocks`` residual blocks at the IR's
    resolution."""

    width: int = 64
    blocks: int = 4

    def __post_init__(self) -> None:
        super().__post_init__()
        _checks.integer("width", self.width, low=1)
        _checks.integer("blocks", self.blocks, low=1)


class _Residual(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1),
            nn.BatchNorm2d(width),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = torch.relu(x + self.body(x))
        return out


@ATTACKS.register
class EncoderDecoder(LearnedInversion):
    """Residual encoder at the IR's resolution, nearest-neighbour upsampling decoder."""

    name: ClassVar[str] = "encoder-decoder"
    description: ClassVar[str] = (
        "black-box: residual encoder-decoder on (image, IR) pairs (Benkraouda & Nahrstedt 2021)"
    )
    Params: ClassVar[type[EncoderDecoderParams]] = EncoderDecoderParams

    def decoder(self, ir_shape: tuple[int, ...], input_shape: tuple[int, int, int]) -> nn.Module:
        p = self.params
        head, (c, h, _) = spatial(ir_shape, p.width, input_shape)
        layers: list[nn.Module] = [
            head,
            nn.Conv2d(c, p.width, 3, padding=1),
            nn.BatchNorm2d(p.width),
            nn.ReLU(),
        ]
        layers += [_Residual(p.width) for _ in range(p.blocks)]
        for _ in range(upsample_stages(h, input_shape[1])):
            layers += [
                nn.Upsample(scale_factor=2, mode="nearest"),
                nn.Conv2d(p.width, p.width, 3, padding=1),
                nn.BatchNorm2d(p.width),
                nn.ReLU(),
            ]
        layers += [
            nn.Upsample(size=input_shape[1:], mode="bilinear"),
            nn.Conv2d(p.width, p.width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(p.width, input_shape[0], 3, padding=1),
        ]
        return nn.Sequential(*layers)
