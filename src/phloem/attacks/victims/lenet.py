"""LeNet-5 for MNIST (1x28x28), with a split point after every layer.

Y. LeCun, L. Bottou, Y. Bengio and P. Haffner, "Gradient-based learning applied to document
recognition", Proc. IEEE 86(11), 1998: two 5x5 convolutions (6 and 16 channels) each followed
by a nonlinearity and 2x2 pooling, then 120-84-10 dense layers. As in most modern
reimplementations it uses ReLU and max-pooling, and pads ``conv1`` by 2 so a 28x28 MNIST digit
plays the role of the paper's 32x32 input. He, Zhang & Lee (ACSAC 2019) attack a LeNet of this
shape on MNIST (8 and 16 channels, unpadded): ``channels=(8, 16)`` approaches theirs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from phloem.attacks.registries import VICTIMS
from phloem.attacks.victims._common import check_bool, check_int
from phloem.attacks.victims.base import SplitModel
from phloem.core.errors import ConfigError
from phloem.nets.architectures import lenet_layers
from phloem.nets.training import Optimizer, Schedule, TrainParams

__all__ = ["LeNet", "LeNetParams"]


@dataclass(frozen=True)
class LeNetParams:
    """Parameters of :class:`LeNet`.

    Attributes
    ----------
    channels
        Output channels of ``conv1`` and ``conv2`` (LeNet-5: 6, 16).
    normalize
        Whether ``conv1`` first normalises by the MNIST mean and standard deviation.
    """

    channels: tuple[int, int] = (6, 16)
    normalize: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.channels, tuple) or len(self.channels) != 2:
            raise ConfigError("victim.channels", f"{self.channels!r} for 'lenet'; needs 2 ints")
        for c in self.channels:
            check_int("lenet", "channels", c, 1)
        check_bool("lenet", "normalize", self.normalize)


@VICTIMS.register
class LeNet(SplitModel):
    """LeNet-5 (ReLU, max-pool) for 28x28 grey images."""

    name: ClassVar[str] = "lenet"
    description: ClassVar[str] = "LeNet-5 for MNIST (LeCun et al. 1998): conv1, relu1, pool1, ..."
    Params: ClassVar[type[LeNetParams]] = LeNetParams
    input_shape: ClassVar[tuple[int, int, int]] = (1, 28, 28)
    num_classes: ClassVar[int] = 10
    #: ~99% MNIST test accuracy in a few epochs (typical for LeNet-5; untested here)
    recipe: ClassVar[TrainParams] = TrainParams(
        epochs=5,
        batch_size=128,
        optimizer=Optimizer.ADAM,
        lr=1e-3,
        momentum=0.0,
        weight_decay=0.0,
        schedule=Schedule.COSINE,
    )

    def layers(self) -> list[tuple[str, nn.Module]]:
        p: LeNetParams = self.params
        return lenet_layers(
            p.channels,
            normalize=p.normalize,
            in_channels=self.input_shape[0],
            num_classes=self.num_classes,
        )
