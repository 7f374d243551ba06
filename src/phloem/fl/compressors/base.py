"""The compression operator contract shared by every compressor.

A compressor maps a vector ``v`` to what the receiver reconstructs, ``C(v)``, and says how many
bits travelled. Two families (FL_PyTorch, Richtarik et al.):

- unbiased: ``E[C(v)] = v`` and ``E||C(v) - v||^2 <= omega ||v||^2``;
- contractive (possibly biased): ``E||C(v) - v||^2 <= (1 - alpha) ||v||^2`` with ``alpha`` in
  (0, 1].

An unbiased compressor with ``omega < 1`` is also contractive with ``alpha = 1 - omega``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, Self

from phloem.core.errors import ConfigError
from phloem.core.registry import NoParams, as_mapping

if TYPE_CHECKING:
    import torch

__all__ = [
    "FLOAT_BITS",
    "Compressed",
    "Compressor",
    "CompressorFactory",
    "SparsifierParams",
    "check_vector",
    "index_bits",
    "uniform_like",
]

#: Bits per transmitted real number (float32 on the wire).
FLOAT_BITS = 32


def index_bits(d: int) -> int:
    """Bits needed to address one of ``d`` coordinates."""
    return max(1, math.ceil(math.log2(d))) if d > 1 else 1


def check_vector(v: torch.Tensor) -> int:
    """Check that ``v`` is a 1-D floating-point tensor and return its dimension.

    Parameters
    ----------
    v
        The vector about to be compressed.

    Returns
    -------
    int
        ``d = v.numel()``.

    Raises
    ------
    ValueError
        If ``v`` is not 1-D or not of a floating-point dtype.
    """
    if v.dim() != 1:
        raise ValueError(
            f"compressors take a 1-D tensor, got shape {tuple(v.shape)}; flatten it first "
            "(e.g. torch.nn.utils.parameters_to_vector)"
        )
    if not v.is_floating_point():
        raise ValueError(f"compressors take a floating-point tensor, got dtype {v.dtype}")
    return int(v.numel())


def uniform_like(v: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Draw ``U[0, 1)`` variates, one per entry of ``v``, from ``gen`` alone.

    The draw happens on ``gen``'s device (a CPU generator may serve a CUDA tensor) and the result
    is moved to ``v``'s device with ``v``'s dtype, so the same generator state gives the same
    numbers whatever device ``v`` lives on.
    """
    import torch

    u = torch.rand(v.shape, generator=gen, dtype=v.dtype, device=gen.device)
    return u.to(v.device)


@dataclass(frozen=True)
class Compressed:
    """The result of compressing one vector.

    Attributes
    ----------
    value
        The vector the receiver reconstructs (same shape and dtype as the input).
    bits
        Bits sent on the wire for this vector.
    """

    value: torch.Tensor
    bits: int


class CompressorFactory(Protocol):
    """What ``[compressor] name`` picks: a compressor class, or ``none`` (no compressor)."""

    name: ClassVar[str]
    description: ClassVar[str]
    Params: ClassVar[type[Any]]

    @classmethod
    def from_params(cls, params: Any, *, dim: int) -> Compressor | None:
        """The operator for vectors of dimension ``dim`` (``None``: send floats as they are)."""
        ...


@dataclass(frozen=True)
class SparsifierParams:
    """``k`` coordinates kept, or ``ratio`` of the dimension (``k = ceil(ratio d)``)."""

    k: int | None = None
    ratio: float | None = None

    def __post_init__(self) -> None:
        for key in ("k", "ratio"):
            v = getattr(self, key)
            if v is not None and v <= 0:
                raise ValueError(f"compressor.{key} must be positive, got {v}")
        if self.ratio is not None and self.ratio > 1:
            raise ValueError(f"compressor.ratio must be in (0, 1], got {self.ratio}")

    def k_for(self, dim: int, name: str) -> int:
        """``k`` for dimension ``dim`` (``name``: the compressor, for the error)."""
        if self.k is not None:
            return self.k
        if self.ratio is not None:
            return max(1, math.ceil(self.ratio * dim))
        raise ConfigError("compressor.k", f"{name} needs compressor.k or compressor.ratio")


class Compressor(ABC):
    """A compression operator with its constants and bit accounting.

    Subclasses are frozen dataclasses holding their parameters; randomness comes only from the
    generator passed to :meth:`compress`. The registered ones (``[compressor] name``) declare
    ``name``, ``description`` and their config ``Params``.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    Params: ClassVar[type[Any]] = NoParams
    #: ``True`` when ``E[C(v)] = v``.
    unbiased: ClassVar[bool]

    @classmethod
    def from_params(cls, params: Any, *, dim: int) -> Self:
        """The operator with its config parameters, for vectors of dimension ``dim``."""
        return cls(**as_mapping(params))

    @abstractmethod
    def compress(self, v: torch.Tensor, gen: torch.Generator) -> Compressed:
        """Compress the 1-D tensor ``v`` using only ``gen`` for randomness."""

    @abstractmethod
    def omega(self, d: int) -> float:
        """Variance constant for dimension ``d`` (``math.inf`` for a biased compressor)."""

    def alpha(self, d: int) -> float:
        """Contraction constant for dimension ``d`` (0.0 when the operator is not contractive)."""
        w = self.omega(d)
        return max(0.0, 1.0 - w) if math.isfinite(w) else 0.0

    @abstractmethod
    def expected_bits(self, d: int) -> float:
        """Expected bits sent for one vector of dimension ``d``."""
