"""A width-reduced VGG-16 with batch norm for 32x32 colour images (CIFAR-10).

K. Simonyan and A. Zisserman, "Very deep convolutional networks for large-scale image
recognition", ICLR 2015 (configuration D: 2-2-3-3-3 3x3 convolutions in five pooled blocks),
with batch normalisation after every convolution (S. Ioffe and C. Szegedy, ICML 2015), the
usual CIFAR adaptation. Split points follow the Keras VGG16 names that Benkraouda & Nahrstedt
(DistributedML '21) use: ``block1_conv1`` ... ``block5_pool``, ``fc1``. Each
``blockB_convK`` is convolution, batch norm and ReLU together (as Keras' named conv layers
include their activation). ``width`` is the first block's channel count (VGG-16: 64); the blocks
have ``width x (1, 2, 4, 8, 8)`` channels, and after five pools a 32x32 input is 1x1, so
``fc1`` is ``8 width -> 8 width`` and ``predictions`` maps to the classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from phloem.attacks.registries import VICTIMS
from phloem.attacks.victims._common import check_bool, check_int
from phloem.attacks.victims.base import SplitModel
from phloem.nets.architectures import vgg16_layers
from phloem.nets.training import TrainParams

__all__ = ["VggSmall", "VggSmallParams"]


@dataclass(frozen=True)
class VggSmallParams:
    """Parameters of :class:`VggSmall`.

    Attributes
    ----------
    width
        Channels of block 1 (VGG-16: 64; default 32, a quarter of the parameters, for CPUs).
    normalize
        Whether ``block1_conv1`` first normalises by the CIFAR-10 channel statistics.
    """

    width: int = 32
    normalize: bool = True

    def __post_init__(self) -> None:
        check_int("vgg_small", "width", self.width, 1)
        check_bool("vgg_small", "normalize", self.normalize)


@VICTIMS.register
class VggSmall(SplitModel):
    """VGG-16 (2-2-3-3-3 convs, batch norm) at reduced width, Keras split-point names."""

    name: ClassVar[str] = "vgg_small"
    description: ClassVar[str] = "VGG-16-style CIFAR net with BN, width-reduced (block1_conv1..fc1)"
    Params: ClassVar[type[VggSmallParams]] = VggSmallParams
    input_shape: ClassVar[tuple[int, int, int]] = (3, 32, 32)
    num_classes: ClassVar[int] = 10
    #: intended to reach >= 85% CIFAR-10 test accuracy at width 32 (not verified here: ~4 CPU
    #: hours); VGG-BN nets of this size are reported near 90% with this standard recipe
    recipe: ClassVar[TrainParams] = TrainParams(
        epochs=40, batch_size=128, lr=0.05, momentum=0.9, weight_decay=5e-4, augment=True
    )

    def layers(self) -> list[tuple[str, nn.Module]]:
        p: VggSmallParams = self.params
        return vgg16_layers(p.width, normalize=p.normalize, num_classes=self.num_classes)
