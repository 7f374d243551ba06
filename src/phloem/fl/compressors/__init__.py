"""Compression operators, one module per operator, each carrying its constants and bit count.

Unbiased (``E[C(v)] = v``, variance ``omega``): :class:`Identity`, :class:`RandK`,
:class:`Natural`, :class:`QSGD`, :class:`Bernoulli`. Contractive and biased (``alpha``):
:class:`TopK`, and :class:`Scaled` which turns any unbiased operator into a contractive one.
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
from phloem.fl.compressors.identity import Identity
from phloem.fl.compressors.natural import NATURAL_BITS_PER_ENTRY, Natural
from phloem.fl.compressors.none import Uncompressed
from phloem.fl.compressors.qsgd import QSGD, QSGDParams
from phloem.fl.compressors.randk import RandK
from phloem.fl.compressors.scaled import Scaled
from phloem.fl.compressors.topk import TopK

__all__ = [
    "FLOAT_BITS",
    "NATURAL_BITS_PER_ENTRY",
    "QSGD",
    "Bernoulli",
    "BernoulliParams",
    "Compressed",
    "Compressor",
    "CompressorFactory",
    "Identity",
    "Natural",
    "QSGDParams",
    "RandK",
    "Scaled",
    "SparsifierParams",
    "TopK",
    "Uncompressed",
    "check_vector",
    "index_bits",
    "uniform_like",
]
