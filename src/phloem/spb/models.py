"""The networks SPB trains, each as an ordered list of named blocks (input side first).

A block is the unit a worker's depth counts: worker ``r`` backpropagates through the last
``d_r`` blocks. The block boundaries follow the architectures' own structure, from the shared
layer lists of :mod:`phloem.nets.architectures`:

- ``mlp``: one block per dense layer (with its ReLU);
- ``lenet``: LeNet-5's two conv-ReLU-pool stages, then ``fc1``, ``fc2``, ``fc3`` (5 blocks);
- ``resnet20``: the stem, the nine basic blocks, then pooling with the classifier (11 blocks;
  the basic blocks are residual, so DropBP may skip their backward pass);
- ``vgg16``: each conv-BN-ReLU layer (a pool joins the layer before it), ``fc1`` and
  ``predictions`` (15 blocks): VGG's parameters sit late, where every worker computes them.

Each model names the data set it is meant for and a default training recipe.
"""

from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from phloem.core import checks
from phloem.core.errors import ConfigError
from phloem.core.registry import Configured
from phloem.nets.architectures import lenet_layers, resnet20_layers, vgg16_layers
from phloem.nets.layers import BasicBlock
from phloem.nets.training import Optimizer, Schedule, TrainParams
from phloem.spb.registries import MODELS

__all__ = ["BlockModel", "Blocks", "Lenet", "Mlp", "ResNet20", "Vgg16"]


@dataclass(frozen=True, eq=False)
class Blocks:
    """A network as blocks: ``names[i]`` is ``modules[i]``'s name; ``residual`` holds the
    indices of blocks with an identity path (``branch``, ``shortcut``, ``combine``)."""

    names: tuple[str, ...]
    modules: tuple[nn.Module, ...]
    residual: frozenset[int] = frozenset()

    def __len__(self) -> int:
        return len(self.modules)


def _group(layers: list[tuple[str, nn.Module]], cuts: list[list[str]]) -> Blocks:
    """Consecutive layers joined into blocks named after their first layer."""
    by_name = dict(layers)
    assert [n for g in cuts for n in g] == [n for n, _ in layers], "grouping misses a layer"
    mods: list[nn.Module] = []
    for g in cuts:
        mods.append(by_name[g[0]] if len(g) == 1 else nn.Sequential(*(by_name[n] for n in g)))
    return Blocks(tuple(g[0] for g in cuts), tuple(mods))


class BlockModel(Configured, ABC):
    """A network SPB can train: its blocks, input shape, data set and default recipe."""

    kind: ClassVar[str] = "model"
    input_shape: ClassVar[tuple[int, int, int]]
    num_classes: ClassVar[int] = 10
    #: the data set it is meant for (``[data] name``'s default)
    data: ClassVar[str]
    #: the default ``[train]`` recipe
    recipe: ClassVar[TrainParams]
    #: whether some blocks are residual (the DropBP baseline needs them)
    residual_blocks: ClassVar[bool] = False
    #: whether it has batch norm (a worker's shard needs two images or more)
    batch_norm: ClassVar[bool] = False

    @abstractmethod
    def blocks(self) -> Blocks:
        """A freshly built network (torch's default initialisation: re-draw it from a seeded
        generator with :func:`phloem.nets.training.init_weights`)."""


@dataclass(frozen=True)
class MlpParams:
    """``hidden``: the widths of the hidden layers."""

    hidden: tuple[int, ...] = (256, 256, 128)

    def __post_init__(self) -> None:
        if not isinstance(self.hidden, tuple) or not self.hidden:
            raise ConfigError("hidden", f"{self.hidden!r}", ["a list of ints >= 1"])
        for h in self.hidden:
            checks.integer("hidden", h, low=1)


@MODELS.register
class Mlp(BlockModel):
    """A ReLU perceptron on flattened 28x28 images, one block per dense layer."""

    name: ClassVar[str] = "mlp"
    description: ClassVar[str] = "ReLU MLP for 28x28 digits; one block per dense layer"
    Params: ClassVar[type[MlpParams]] = MlpParams
    input_shape: ClassVar[tuple[int, int, int]] = (1, 28, 28)
    data: ClassVar[str] = "mnist"
    recipe: ClassVar[TrainParams] = TrainParams(
        epochs=5, batch_size=128, lr=0.05, momentum=0.9, weight_decay=0.0
    )

    def blocks(self) -> Blocks:
        widths = (28 * 28, *self.params.hidden)
        mods: list[nn.Module] = []
        for i, (a, b) in enumerate(itertools.pairwise(widths)):
            layers: list[nn.Module] = [nn.Flatten()] if i == 0 else []
            mods.append(nn.Sequential(*layers, nn.Linear(a, b), nn.ReLU()))
        mods.append(nn.Linear(widths[-1], self.num_classes))
        names = tuple(f"fc{i + 1}" for i in range(len(mods)))
        return Blocks(names, tuple(mods))


@dataclass(frozen=True)
class LenetParams:
    """``channels``: output channels of the two convolutions (LeNet-5: 6, 16)."""

    channels: tuple[int, int] = (6, 16)

    def __post_init__(self) -> None:
        if not isinstance(self.channels, tuple) or len(self.channels) != 2:
            raise ConfigError("channels", f"{self.channels!r}", ["two ints >= 1"])
        for c in self.channels:
            checks.integer("channels", c, low=1)


@MODELS.register
class Lenet(BlockModel):
    """LeNet-5: two conv stages, then three dense layers (5 blocks)."""

    name: ClassVar[str] = "lenet"
    description: ClassVar[str] = "LeNet-5 for MNIST: conv1, conv2 stages, fc1, fc2, fc3"
    Params: ClassVar[type[LenetParams]] = LenetParams
    input_shape: ClassVar[tuple[int, int, int]] = (1, 28, 28)
    data: ClassVar[str] = "mnist"
    recipe: ClassVar[TrainParams] = TrainParams(
        epochs=5, batch_size=128, lr=0.05, momentum=0.9, weight_decay=5e-4
    )

    def blocks(self) -> Blocks:
        layers = lenet_layers(self.params.channels)
        cuts = [
            ["conv1", "relu1", "pool1"],
            ["conv2", "relu2", "pool2"],
            ["fc1", "relu3"],
            ["fc2", "relu4"],
            ["fc3"],
        ]
        return _group(layers, cuts)


@dataclass(frozen=True)
class WidthParams:
    """``width``: channels of the first stage (ResNet-20: 16; VGG-16: 64, default 32)."""

    width: int = 16

    def __post_init__(self) -> None:
        checks.integer("width", self.width, low=1)


@MODELS.register
class ResNet20(BlockModel):
    """CIFAR ResNet-20: stem, nine basic blocks, pool + classifier (11 blocks)."""

    name: ClassVar[str] = "resnet20"
    description: ClassVar[str] = "CIFAR ResNet-20 (He et al.): stem, 9 basic blocks, head"
    Params: ClassVar[type[WidthParams]] = WidthParams
    input_shape: ClassVar[tuple[int, int, int]] = (3, 32, 32)
    data: ClassVar[str] = "cifar10"
    recipe: ClassVar[TrainParams] = TrainParams(
        epochs=30, batch_size=128, lr=0.1, momentum=0.9, weight_decay=1e-4, augment=True
    )
    residual_blocks: ClassVar[bool] = True
    batch_norm: ClassVar[bool] = True

    def blocks(self) -> Blocks:
        layers = resnet20_layers(self.params.width)
        cuts = [[n] for n, _ in layers[:-2]] + [[layers[-2][0], layers[-1][0]]]
        b = _group(layers, cuts)
        residual = frozenset(i for i, m in enumerate(b.modules) if isinstance(m, BasicBlock))
        return Blocks(b.names, b.modules, residual)


@dataclass(frozen=True)
class VggParams(WidthParams):
    """``width``: channels of VGG-16's first block (the paper: 64)."""

    width: int = 32


@MODELS.register
class Vgg16(BlockModel):
    """VGG-16-BN, width-scaled: 13 conv blocks (pools joined to the conv before), fc1,
    predictions."""

    name: ClassVar[str] = "vgg16"
    description: ClassVar[str] = "VGG-16-BN for CIFAR, width-scaled: 13 conv blocks, fc1, head"
    Params: ClassVar[type[VggParams]] = VggParams
    input_shape: ClassVar[tuple[int, int, int]] = (3, 32, 32)
    data: ClassVar[str] = "cifar10"
    recipe: ClassVar[TrainParams] = TrainParams(
        epochs=30,
        batch_size=128,
        optimizer=Optimizer.SGD,
        lr=0.05,
        momentum=0.9,
        weight_decay=5e-4,
        schedule=Schedule.COSINE,
        augment=True,
    )
    batch_norm: ClassVar[bool] = True

    def blocks(self) -> Blocks:
        layers = vgg16_layers(self.params.width)
        cuts: list[list[str]] = []
        for name, _ in layers:
            if name.endswith("_pool"):
                cuts[-1].append(name)
            else:
                cuts.append([name])
        return _group(layers, cuts)
