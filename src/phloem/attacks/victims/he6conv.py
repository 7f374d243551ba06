"""He, Zhang & Lee's CIFAR-10 target network: six 3x3 convolutions in three pooled stages.

Z. He, T. Zhang and R. B. Lee, "Model inversion attacks against collaborative inference",
ACSAC 2019. The split points carry the paper's layer names (``conv11``, ``ReLU11``, ...,
``ReLU32``, ``pool3``), so "split at ReLU22" means what it means there. The layers follow the
authors' released code (``net.py``, ``CIFAR10CNN``): 64-64 / 128-128 / 128-128 channels,
2x2 max-pools, then ``fc1`` (512 units, sigmoid as in their code) and ``fc2``. Input
normalisation (CIFAR-10 mean and standard deviation) is the first step of ``conv11``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from phloem.attacks.registries import VICTIMS
from phloem.attacks.victims._common import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    Normalize,
    check_bool,
    check_int,
)
from phloem.attacks.victims.base import SplitModel
from phloem.nets.training import TrainParams

__all__ = ["He6Conv", "He6ConvParams"]


@dataclass(frozen=True)
class He6ConvParams:
    """Parameters of :class:`He6Conv`.

    Attributes
    ----------
    width
        Channels of ``conv11``/``conv12`` (the paper: 64); the later stages have twice that.
    hidden
        Units of ``fc1`` (the paper: 512).
    normalize
        Whether ``conv11`` first normalises by the CIFAR-10 channel statistics.
    """

    width: int = 64
    hidden: int = 512
    normalize: bool = True

    def __post_init__(self) -> None:
        check_int("he6conv", "width", self.width, 1)
        check_int("he6conv", "hidden", self.hidden, 1)
        check_bool("he6conv", "normalize", self.normalize)


def _conv(c_in: int, c_out: int) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel_size=3, padding=1)


@VICTIMS.register
class He6Conv(SplitModel):
    """He et al.'s 6-conv CIFAR-10 classifier with the paper's split-point names."""

    name: ClassVar[str] = "he6conv"
    description: ClassVar[str] = "He et al. (ACSAC'19) CIFAR-10 CNN: conv11..ReLU32, 3 pools, 2 fc"
    Params: ClassVar[type[He6ConvParams]] = He6ConvParams
    input_shape: ClassVar[tuple[int, int, int]] = (3, 32, 32)
    num_classes: ClassVar[int] = 10
    #: the authors train 50 epochs; with SGD+cosine and flips/crops this reaches ~85% (untested)
    recipe: ClassVar[TrainParams] = TrainParams(
        epochs=50, batch_size=128, lr=0.05, momentum=0.9, weight_decay=5e-4, augment=True
    )

    def layers(self) -> list[tuple[str, nn.Module]]:
        p: He6ConvParams = self.params
        w1, w2 = p.width, 2 * p.width
        first: nn.Module = _conv(3, w1)
        if p.normalize:
            first = nn.Sequential(Normalize(CIFAR10_MEAN, CIFAR10_STD), first)
        return [
            ("conv11", first),
            ("ReLU11", nn.ReLU()),
            ("conv12", _conv(w1, w1)),
            ("ReLU12", nn.ReLU()),
            ("pool1", nn.MaxPool2d(2, 2)),
            ("conv21", _conv(w1, w2)),
            ("ReLU21", nn.ReLU()),
            ("conv22", _conv(w2, w2)),
            ("ReLU22", nn.ReLU()),
            ("pool2", nn.MaxPool2d(2, 2)),
            ("conv31", _conv(w2, w2)),
            ("ReLU31", nn.ReLU()),
            ("conv32", _conv(w2, w2)),
            ("ReLU32", nn.ReLU()),
            ("pool3", nn.MaxPool2d(2, 2)),
            ("fc1", nn.Sequential(nn.Flatten(), nn.Linear(w2 * 4 * 4, p.hidden))),
            ("fc1act", nn.Sigmoid()),
            ("fc2", nn.Linear(p.hidden, self.num_classes)),
        ]
