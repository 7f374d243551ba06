"""Victims: split models the attacks target (each registers itself in :data:`VICTIMS`).

Importing this package registers the built-in victims (it is the registry's ``populate``
module): ``he6conv``, ``vgg_small``, ``resnet20`` and ``lenet``.
"""

from phloem.attacks.victims.base import SplitModel
from phloem.attacks.victims.he6conv import He6Conv, He6ConvParams
from phloem.attacks.victims.lenet import LeNet, LeNetParams
from phloem.attacks.victims.resnet20 import ResNet20, ResNet20Params
from phloem.attacks.victims.vgg_small import VggSmall, VggSmallParams

__all__ = [
    "He6Conv",
    "He6ConvParams",
    "LeNet",
    "LeNetParams",
    "ResNet20",
    "ResNet20Params",
    "SplitModel",
    "VggSmall",
    "VggSmallParams",
]
