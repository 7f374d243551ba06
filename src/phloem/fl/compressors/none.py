"""No compressor: every uplink vector travels as float32 (``[compressor] name = "none"``).

Algorithms then send their vectors as they are and count ``FLOAT_BITS * d`` bits
(:func:`phloem.fl.algorithms.base.compress` with ``compressor=None``); unlike ``identity``, no
operator runs and no copy is made.
"""

from __future__ import annotations

from typing import ClassVar

from phloem.core.registry import NoParams
from phloem.fl.registries import COMPRESSORS

__all__ = ["Uncompressed"]


@COMPRESSORS.register
class Uncompressed:
    """Builds no compressor."""

    name: ClassVar[str] = "none"
    description: ClassVar[str] = (
        "no compression, 32-bit floats (Burlachenko et al., DistributedML 2021)"
    )
    Params: ClassVar[type[NoParams]] = NoParams
    #: sending the vector itself: ``omega = 0``
    unbiased: ClassVar[bool] = True

    @classmethod
    def from_params(cls, params: NoParams, *, dim: int) -> None:
        """``None``: algorithms send their vectors uncompressed."""
        return None
