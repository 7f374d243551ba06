"""ResNet-20 for CIFAR-10, as a flat sequence of residual blocks.

K. He, X. Zhang, S. Ren and J. Sun, "Deep residual learning for image recognition", CVPR 2016,
section 4.2: a 3x3 stem of 16 channels, three stages of three basic blocks (16, 32, 64
channels; the first block of stages 2 and 3 halves the resolution), global average pooling and
a linear classifier: 6n + 2 = 20 layers for n = 3, ~0.27 M parameters. Shortcuts are the
paper's option A (identity; subsample and zero-pad channels where the shape changes), so the
shortcut adds no parameters. Split points are block outputs: ``stem``, ``block1_1`` ...
``block3_3``, ``pool``; a split never cuts a residual connection.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from phloem.attacks.registries import VICTIMS
from phloem.attacks.victims._common import check_bool, check_int
from phloem.attacks.victims.base import SplitModel
from phloem.nets.architectures import resnet20_layers
from phloem.nets.layers import BasicBlock
from phloem.nets.training import TrainParams

__all__ = ["BasicBlock", "ResNet20", "ResNet20Params"]


@dataclass(frozen=True)
class ResNet20Params:
    """Parameters of :class:`ResNet20`.

    Attributes
    ----------
    width
        Channels of the stem and stage 1 (the paper: 16); stages 2 and 3 double it twice.
    normalize
        Whether ``stem`` first normalises by the CIFAR-10 channel statistics.
    """

    width: int = 16
    normalize: bool = True

    def __post_init__(self) -> None:
        check_int("resnet20", "width", self.width, 1)
        check_bool("resnet20", "normalize", self.normalize)


@VICTIMS.register
class ResNet20(SplitModel):
    """He et al. (2016) CIFAR ResNet-20, split points at block outputs."""

    name: ClassVar[str] = "resnet20"
    description: ClassVar[str] = "CIFAR ResNet-20 (He et al. 2016): stem, block1_1..block3_3, pool"
    Params: ClassVar[type[ResNet20Params]] = ResNet20Params
    input_shape: ClassVar[tuple[int, int, int]] = (3, 32, 32)
    num_classes: ClassVar[int] = 10
    #: the paper reaches 91.25% with 164 epochs (lr 0.1, steps); cosine 60 epochs: ~90% (untested)
    recipe: ClassVar[TrainParams] = TrainParams(
        epochs=60, batch_size=128, lr=0.1, momentum=0.9, weight_decay=1e-4, augment=True
    )

    def layers(self) -> list[tuple[str, nn.Module]]:
        p: ResNet20Params = self.params
        return resnet20_layers(p.width, normalize=p.normalize, num_classes=self.num_classes)
