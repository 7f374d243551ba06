"""Rand-K: unbiased random sparsification.

Keep ``k`` coordinates chosen uniformly at random without replacement and scale them by ``d / k``
so that ``E[C(v)] = v``:

    S. U. Stich, J.-B. Cordonnier, M. Jaggi. "Sparsified SGD with memory". NeurIPS 2018.

with the constants as tabulated in

    A. Beznosikov, S. Horváth, P. Richtárik, M. Safaryan. "On biased compression for distributed
    learning". arXiv:2002.12410 (2020).

Constants: ``omega = d / k - 1``, and the bound is an equality for every ``v``:
``E||C(v) - v||^2 = (d / k - 1) ||v||^2``. With ``k >= d`` the operator is the identity
(``omega = 0``).

Bits: ``k * (FLOAT_BITS + index_bits(d))`` -- each kept value and its index. When sender and
receiver share the random seed (``shared_seed=True``), the receiver regenerates the indices and
only ``k * FLOAT_BITS`` bits travel. With ``k >= d`` the dense vector is sent:
``FLOAT_BITS * d``.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import ClassVar, Self

import torch

from phloem.core.errors import ConfigError
from phloem.fl.compressors.base import (
    FLOAT_BITS,
    Compressed,
    Compressor,
    SparsifierParams,
    check_vector,
    index_bits,
)
from phloem.fl.registries import COMPRESSORS

__all__ = ["RandK"]


@COMPRESSORS.register
@dataclass(frozen=True)
class RandK(Compressor):
    """Unbiased Rand-K sparsification.

    Parameters
    ----------
    k
        Number of coordinates kept (``>= 1``). With ``k >= d`` the vector is sent uncompressed.
    shared_seed
        When ``True``, sender and receiver are assumed to share the generator, so the indices
        are not sent and only ``k * FLOAT_BITS`` bits are counted.
    """

    k: int
    shared_seed: bool = False

    name: ClassVar[str] = "randk"
    description: ClassVar[str] = (
        "Rand-K sparsification, unbiased, k or ratio (Stich et al., NeurIPS 2018)"
    )
    Params: ClassVar[type[SparsifierParams]] = SparsifierParams
    unbiased: ClassVar[bool] = True

    @classmethod
    def from_params(cls, params: SparsifierParams, *, dim: int) -> Self:
        return cls(params.k_for(dim, cls.name))

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, numbers.Integral) or self.k < 1:
            raise ConfigError("RandK.k", f"must be an integer >= 1, got {self.k!r}")
        object.__setattr__(self, "k", int(self.k))

    def compress(self, v: torch.Tensor, gen: torch.Generator) -> Compressed:
        """Keep ``k`` uniformly random coordinates of ``v``, scaled by ``d / k``."""
        d = check_vector(v)
        if self.k >= d:
            return Compressed(v.clone(), FLOAT_BITS * d)
        idx = torch.randperm(d, generator=gen, device=gen.device)[: self.k].to(v.device)
        out = torch.zeros_like(v)
        out[idx] = v[idx] * (d / self.k)
        return Compressed(out, self._bits(d))

    def omega(self, d: int) -> float:
        """``d / k - 1`` (``0`` when ``k >= d``)."""
        return d / self.k - 1.0 if self.k < d else 0.0

    def expected_bits(self, d: int) -> float:
        """``k * (FLOAT_BITS + index_bits(d))``, or ``k * FLOAT_BITS`` with a shared seed."""
        return float(self._bits(d))

    def _bits(self, d: int) -> int:
        if self.k >= d:
            return FLOAT_BITS * d
        per_value = FLOAT_BITS if self.shared_seed else FLOAT_BITS + index_bits(d)
        return self.k * per_value
