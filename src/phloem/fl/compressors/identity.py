"""The identity compressor: send the vector uncompressed.

The no-compression baseline of every compressed method, and the reference point of the
FL_PyTorch simulator:

    K. Burlachenko, S. Horváth, P. Richtárik. "FL_PyTorch: optimization research simulator for
    federated learning". DistributedML '21 (2021).

Constants: ``C(v) = v``, so ``omega = 0`` and ``alpha = 1``.

Bits: ``FLOAT_BITS * d`` (every coordinate as a float32).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from phloem.fl.compressors.base import FLOAT_BITS, Compressed, Compressor, check_vector
from phloem.fl.registries import COMPRESSORS

if TYPE_CHECKING:
    import torch

__all__ = ["Identity"]


@COMPRESSORS.register
@dataclass(frozen=True)
class Identity(Compressor):
    """Send every coordinate: ``C(v) = v``.

    The returned value is a copy, so a caller that updates it in place never touches ``v``.
    """

    name: ClassVar[str] = "identity"
    description: ClassVar[str] = (
        "identity, counted like none (Burlachenko et al., DistributedML 2021)"
    )
    unbiased: ClassVar[bool] = True

    def compress(self, v: torch.Tensor, gen: torch.Generator) -> Compressed:
        """Return a copy of ``v`` and ``FLOAT_BITS * d`` bits; ``gen`` is not used."""
        d = check_vector(v)
        return Compressed(v.clone(), FLOAT_BITS * d)

    def omega(self, d: int) -> float:
        """``0``: the identity adds no variance."""
        return 0.0

    def expected_bits(self, d: int) -> float:
        """``FLOAT_BITS * d``."""
        return float(FLOAT_BITS * d)
