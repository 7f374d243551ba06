"""Standard random dithering: unbiased rounding of ``|v_i| / ||v||_p`` to ``s`` uniform levels.

    D. Alistarh, D. Grubic, J. Li, R. Tomioka, M. Vojnovic. "QSGD: Communication-efficient SGD
    via gradient quantization and encoding". NeurIPS 2017 (the case ``p = 2``).

    S. Horváth, C.-Y. Ho, L. Horváth, A. N. Sahu, M. Canini, P. Richtárik. "Natural compression
    for distributed deep learning". arXiv:1905.10988 (2019); MSML 2022 -- standard dithering
    ``C_sd^{p,s}`` in the general ``p``-norm form (Section 4), beside natural dithering.

With ``s = levels`` and ``r_i = s |v_i| / ||v||_p`` in ``[0, s]``, entry ``i`` becomes
``||v||_p sign(v_i) xi_i / s`` where ``xi_i = floor(r_i) + 1`` with probability
``r_i - floor(r_i)`` and ``floor(r_i)`` otherwise, independently across entries; ``C(0) = 0``.
Then ``E[C(v)] = v``. ``p = 2`` is QSGD; ``p = inf`` with ``s = 1`` is TernGrad.

Constants: ``omega = min(d / s^2, sqrt(d) / s)`` for ``p`` in ``{2, inf}``, the bound of the
papers (QSGD Lemma 3.1; Horváth et al. with ``r = min(p, 2) = 2``). Proof for both norms: a
coordinate rounded between neighbouring levels ``a < r_i / s < a + 1/s`` has variance
``||v||_p^2 (r_i/s - a)(a + 1/s - r_i/s) <= ||v||_p^2 min(1 / (4 s^2), r_i / s^2)``; summed,
``E||C(v) - v||^2 <= min(d ||v||_p^2 / (4 s^2), ||v||_p ||v||_1 / s)``, and
``||v||_inf <= ||v||_p <= ||v||_2``, ``||v||_1 <= sqrt(d) ||v||_2``. The argument gives the
sharper ``min(d / (4 s^2), sqrt(d) / s)``; ``omega`` keeps the papers' constant, as DIANA's
and MARINA's step sizes are stated with it.

Bits, with ``coding = "fixed"`` (the default): ``FLOAT_BITS + d (1 + ceil(log2(s + 1)))`` -- the
norm as a float32, then per entry a sign bit and the level ``xi_i`` in ``{0, ..., s}``. With
``coding = "elias"``: the length of QSGD's sparse Elias code of the realised levels
(:func:`phloem.fl.compressors.coding.sparse_levels_bits`); ``expected_bits`` is then the longest
possible message, an upper bound.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import torch

from phloem.core.errors import ConfigError
from phloem.fl.compressors.base import (
    FLOAT_BITS,
    Compressed,
    Compressor,
    check_vector,
    uniform_like,
)
from phloem.fl.compressors.coding import (
    MAX_LEVELS,
    Coding,
    elias_worst_bits,
    parse_coding,
    sparse_levels_bits,
)
from phloem.fl.registries import COMPRESSORS

__all__ = [
    "DitheredLevels",
    "Dithering",
    "DitheringParams",
    "check_levels",
    "parse_norm",
    "vector_norm",
]

#: the norms a dithering compressor scales by, as a config spells them
NORMS = (2, "inf")


def parse_norm(value: object, field: str) -> float:
    """``2.0`` or ``math.inf`` from a config's ``norm`` (``2``, ``"2"``, ``"inf"`` or a float).

    Raises
    ------
    ConfigError
        Naming ``field`` and listing the norms.
    """
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        if float(value) in (2.0, math.inf):
            return float(value)
    elif isinstance(value, str) and value.strip().lower() in ("2", "inf"):
        return math.inf if value.strip().lower() == "inf" else 2.0
    raise ConfigError(field, f"must be 2 or 'inf', got {value!r}", NORMS)


def vector_norm(v: torch.Tensor, p: float) -> torch.Tensor:
    """``||v||_p`` for ``p`` in ``{2, inf}`` (0-dimensional tensor of ``v``'s dtype)."""
    norm: torch.Tensor = torch.linalg.vector_norm(v, ord=p)
    return norm


def check_levels(levels: object, field: str, most: int | None = None) -> int:
    """``levels`` as an ``int >= 1`` (and ``<= most``), or a :class:`ConfigError`."""
    value = int(levels) if isinstance(levels, numbers.Integral) else 0
    if isinstance(levels, bool) or value < 1 or (most is not None and value > most):
        upper = "" if most is None else f" and <= {most}"
        raise ConfigError(field, f"must be an integer >= 1{upper}, got {levels!r}")
    return value


@dataclass(frozen=True)
class DitheringParams:
    """``levels`` s >= 1; ``norm``: 2 or ``"inf"``; ``coding``: ``fixed`` or ``elias``."""

    levels: int = 4
    norm: int | str = 2
    coding: Coding = Coding.FIXED

    def __post_init__(self) -> None:
        check_levels(self.levels, "compressor.levels", MAX_LEVELS)
        parse_norm(self.norm, "compressor.norm")


@dataclass(frozen=True)
class DitheredLevels(Compressor):
    """What standard and natural dithering share: ``levels``, ``norm`` and ``coding``, checked
    and normalised on construction (errors name ``<Class>.<field>``), and read from a config's
    ``Params`` (errors name ``compressor.<field>``). A subclass sets :attr:`most_levels`."""

    levels: int
    norm: float = 2.0
    coding: Coding = Coding.FIXED

    #: the largest ``levels`` the operator takes
    most_levels: ClassVar[int] = MAX_LEVELS

    @classmethod
    def from_params(cls, params: Any, *, dim: int) -> Self:
        """From a ``DitheringParams`` or ``NaturalDitheringParams`` (the same three keys)."""
        return cls(params.levels, parse_norm(params.norm, "compressor.norm"), params.coding)

    def __post_init__(self) -> None:
        who = type(self).__name__
        levels = check_levels(self.levels, f"{who}.levels", self.most_levels)
        object.__setattr__(self, "levels", levels)
        object.__setattr__(self, "norm", parse_norm(self.norm, f"{who}.norm"))
        object.__setattr__(self, "coding", parse_coding(self.coding, f"{who}.coding"))


@COMPRESSORS.register
@dataclass(frozen=True)
class Dithering(DitheredLevels):
    """Standard random dithering ``C_sd^{p,s}``: ``s`` uniform levels of ``||v||_p``, unbiased.

    Parameters
    ----------
    levels
        Number of levels ``s >= 1`` (the grid ``0, 1/s, ..., 1``).
    norm
        ``p``: ``2.0`` or ``math.inf``.
    coding
        How the message's bits are counted: ``Coding.FIXED`` or QSGD's ``Coding.ELIAS``.
    """

    name: ClassVar[str] = "dithering"
    description: ClassVar[str] = (
        "standard random dithering, s uniform levels of the 2- or inf-norm, unbiased "
        "(Alistarh et al., NeurIPS 2017)"
    )
    Params: ClassVar[type[DitheringParams]] = DitheringParams
    unbiased: ClassVar[bool] = True

    def compress(self, v: torch.Tensor, gen: torch.Generator) -> Compressed:
        """Round ``s |v_i| / ||v||_p`` up or down to an integer level, unbiasedly."""
        check_vector(v)
        s = self.levels
        u = uniform_like(v, gen)
        norm = vector_norm(v, self.norm)
        if float(norm) == 0.0:
            zero = torch.zeros_like(v)
            return Compressed(zero, self._bits(zero))
        # rounding can push |v_i| / ||v||_2 a hair above 1; the clamp keeps xi_i <= s
        r = (v.abs() / norm * s).clamp_(max=s)
        low = torch.floor(r)
        xi = low + (u < r - low).to(v.dtype)
        return Compressed(torch.sign(v) * xi * (norm / s), self._bits(xi))

    def omega(self, d: int) -> float:
        """``min(d / s^2, sqrt(d) / s)``."""
        s = self.levels
        return min(d / s**2, math.sqrt(d) / s)

    def expected_bits(self, d: int) -> float:
        """``FLOAT_BITS + d (1 + ceil(log2(s + 1)))``; with Elias coding, an upper bound."""
        if self.coding is Coding.ELIAS:
            return float(elias_worst_bits(d, self.levels))
        return float(FLOAT_BITS + d * (1 + math.ceil(math.log2(self.levels + 1))))

    def _bits(self, xi: torch.Tensor) -> int:
        if self.coding is Coding.ELIAS:
            return sparse_levels_bits(xi)
        return int(self.expected_bits(xi.numel()))
