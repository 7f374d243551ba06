"""The standard image classifiers as ordered, named layer lists.

Each builder returns ``[(name, module), ...]`` whose composition is the network; the names follow
the papers, so a layer can be named in a config. :mod:`phloem.attacks` cuts a list at a named
layer (the split point); :mod:`phloem.spb` groups consecutive layers into backpropagation
blocks. Input normalisation is the first layer's own first step, so inputs stay in [0, 1].

- :func:`lenet_layers`: LeNet-5 (LeCun et al. 1998) with ReLU and max-pooling, ``conv1`` padded
  so that a 28x28 MNIST digit plays the paper's 32x32 input.
- :func:`resnet20_layers`: the CIFAR ResNet-20 of He et al. (CVPR 2016, section 4.2): a 3x3
  stem, three stages of three basic blocks (``width``, 2 ``width``, 4 ``width`` channels),
  global average pooling, a linear classifier; option-A shortcuts.
- :func:`vgg16_layers`: VGG-16 (Simonyan & Zisserman, ICLR 2015, configuration D) with batch
  norm, at a reduced ``width``, Keras layer names (``block1_conv1`` ... ``predictions``).
"""

from __future__ import annotations

from torch import nn

from phloem.nets.layers import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    MNIST_MEAN,
    MNIST_STD,
    BasicBlock,
    Normalize,
    conv_bn_relu,
)

__all__ = ["VGG16_BLOCKS", "lenet_layers", "resnet20_layers", "vgg16_layers"]

Layers = list[tuple[str, nn.Module]]

#: convolutions per VGG-16 block and each block's width as a multiple of ``width``
VGG16_BLOCKS = ((2, 1), (2, 2), (3, 4), (3, 8), (3, 8))


def lenet_layers(
    channels: tuple[int, int] = (6, 16),
    *,
    normalize: bool = True,
    in_channels: int = 1,
    num_classes: int = 10,
) -> Layers:
    """LeNet-5 for 28x28 images: ``conv1, relu1, pool1, conv2, relu2, pool2, fc1, relu3, fc2,
    relu4, fc3``."""
    c1, c2 = channels
    conv1: nn.Module = nn.Conv2d(in_channels, c1, kernel_size=5, padding=2)
    if normalize:
        conv1 = nn.Sequential(Normalize(MNIST_MEAN, MNIST_STD), conv1)
    return [
        ("conv1", conv1),
        ("relu1", nn.ReLU()),
        ("pool1", nn.MaxPool2d(2, 2)),
        ("conv2", nn.Conv2d(c1, c2, kernel_size=5)),
        ("relu2", nn.ReLU()),
        ("pool2", nn.MaxPool2d(2, 2)),
        ("fc1", nn.Sequential(nn.Flatten(), nn.Linear(c2 * 5 * 5, 120))),
        ("relu3", nn.ReLU()),
        ("fc2", nn.Linear(120, 84)),
        ("relu4", nn.ReLU()),
        ("fc3", nn.Linear(84, num_classes)),
    ]


def resnet20_layers(width: int = 16, *, normalize: bool = True, num_classes: int = 10) -> Layers:
    """CIFAR ResNet-20: ``stem, block1_1 ... block3_3, pool, fc`` (~0.27 M parameters at width
    16)."""
    stem: nn.Module = nn.Sequential(
        nn.Conv2d(3, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()
    )
    if normalize:
        stem = nn.Sequential(Normalize(CIFAR10_MEAN, CIFAR10_STD), stem)
    out: Layers = [("stem", stem)]
    c_in = width
    for s in range(1, 4):
        c_out = width * 2 ** (s - 1)
        for b in range(1, 4):
            stride = 2 if s > 1 and b == 1 else 1
            out.append((f"block{s}_{b}", BasicBlock(c_in, c_out, stride)))
            c_in = c_out
    out.append(("pool", nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())))
    out.append(("fc", nn.Linear(c_in, num_classes)))
    return out


def vgg16_layers(width: int = 32, *, normalize: bool = True, num_classes: int = 10) -> Layers:
    """VGG-16-BN for 32x32 images: ``block1_conv1 ... block5_pool, fc1, predictions``; the
    blocks have ``width x (1, 2, 4, 8, 8)`` channels, and after five pools the image is 1x1."""
    out: Layers = []
    c_in = 3
    for b, (convs, mult) in enumerate(VGG16_BLOCKS, start=1):
        c_out = width * mult
        for k in range(1, convs + 1):
            layer: nn.Module = conv_bn_relu(c_in, c_out)
            if b == 1 and k == 1 and normalize:
                layer = nn.Sequential(Normalize(CIFAR10_MEAN, CIFAR10_STD), layer)
            out.append((f"block{b}_conv{k}", layer))
            c_in = c_out
        out.append((f"block{b}_pool", nn.MaxPool2d(2, 2)))
    c = 8 * width
    out.append(("fc1", nn.Sequential(nn.Flatten(), nn.Linear(c, c), nn.ReLU())))
    out.append(("predictions", nn.Linear(c, num_classes)))
    return out
