"""Compression operators, one module per operator, each carrying its constants and bit count.

Unbiased (``E[C(v)] = v``, variance ``omega``): :class:`Identity`, :class:`RandK`,
:class:`Natural`, :class:`QSGD`, :class:`Dithering`, :class:`NaturalDithering`,
:class:`TernGrad`, :class:`Bernoulli`. Contractive and biased (``alpha``): :class:`TopK`,
:class:`Sign`, :class:`RankK`, and :class:`Scaled` which turns any unbiased operator into a
contractive one. :class:`Mixture` picks one of several at random (unbiased iff they all are).
:mod:`phloem.fl.compressors.coding` counts fixed-length and Elias-coded messages.
"""

from phloem.fl.compressors.base import (
    FLOAT_BITS,
    Compressed,
    Compressor,
    CompressorFactory,
    SparsifierParams,
    check_vector,
    index_bits,
    uniform_like,
)
from phloem.fl.compressors.bernoulli import Bernoulli, BernoulliParams
from phloem.fl.compressors.coding import (
    Coding,
    elias_gamma_bits,
    elias_omega_bits,
    sparse_levels_bits,
)
from phloem.fl.compressors.dithering import Dithering, DitheringParams
from phloem.fl.compressors.identity import Identity
from phloem.fl.compressors.mixture import Mixture, MixtureParams, MixturePart
from phloem.fl.compressors.natural import NATURAL_BITS_PER_ENTRY, Natural
from phloem.fl.compressors.natural_dithering import NaturalDithering, NaturalDitheringParams
from phloem.fl.compressors.none import Uncompressed
from phloem.fl.compressors.qsgd import QSGD, QSGDParams
from phloem.fl.compressors.randk import RandK
from phloem.fl.compressors.rankk import RankK, RankKParams, RankMethod
from phloem.fl.compressors.scaled import Scaled
from phloem.fl.compressors.sign import Sign
from phloem.fl.compressors.terngrad import TernGrad
from phloem.fl.compressors.topk import TopK

__all__ = [
    "FLOAT_BITS",
    "NATURAL_BITS_PER_ENTRY",
    "QSGD",
    "Bernoulli",
    "BernoulliParams",
    "Coding",
    "Compressed",
    "Compressor",
    "CompressorFactory",
    "Dithering",
    "DitheringParams",
    "Identity",
    "Mixture",
    "MixtureParams",
    "MixturePart",
    "Natural",
    "NaturalDithering",
    "NaturalDitheringParams",
    "QSGDParams",
    "RandK",
    "RankK",
    "RankKParams",
    "RankMethod",
    "Scaled",
    "Sign",
    "SparsifierParams",
    "TernGrad",
    "TopK",
    "Uncompressed",
    "check_vector",
    "elias_gamma_bits",
    "elias_omega_bits",
    "index_bits",
    "sparse_levels_bits",
    "uniform_like",
]
