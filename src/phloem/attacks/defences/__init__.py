"""Defences: wrappers of the edge part (each registers itself in :data:`DEFENCES`).

Inference-time transformations of the IR: :class:`GaussianNoise`, :class:`LaplaceNoise`,
:class:`IRDropout`, :class:`Quantise`, :class:`TopKChannels`; and a training-time one,
:class:`NoPeek` (a distance-correlation penalty, the identity at inference).
"""

from phloem.attacks.defences.base import Defence, DefendedEdge
from phloem.attacks.defences.gaussian_noise import GaussianNoise, GaussianNoiseParams
from phloem.attacks.defences.ir_dropout import IRDropout, IRDropoutParams
from phloem.attacks.defences.laplace_noise import LaplaceNoise, LaplaceNoiseParams
from phloem.attacks.defences.nopeek import NoPeek, NoPeekParams, distance_correlation
from phloem.attacks.defences.quantise import Quantise, QuantiseParams
from phloem.attacks.defences.topk_channels import TopKChannels, TopKChannelsParams

__all__ = [
    "Defence",
    "DefendedEdge",
    "GaussianNoise",
    "GaussianNoiseParams",
    "IRDropout",
    "IRDropoutParams",
    "LaplaceNoise",
    "LaplaceNoiseParams",
    "NoPeek",
    "NoPeekParams",
    "Quantise",
    "QuantiseParams",
    "TopKChannels",
    "TopKChannelsParams",
    "distance_correlation",
]
