"""Mixture: run one of several compressors, picked at random with fixed probabilities.

    K. Burlachenko, S. Horváth, P. Richtárik. "FL_PyTorch: optimization research simulator for
    federated learning". DistributedML '21 (2021) -- compressors composed in the simulator.

    A. Beznosikov, S. Horváth, P. Richtárik, M. Safaryan. "On biased compression for distributed
    learning". arXiv:2002.12410 (2020) -- the classes ``B(omega)`` and ``B(alpha)`` used below.

``C(v) = C_J(v)`` where ``J = j`` with probability ``p_j``, drawn from the generator first and
independently of the components' own randomness (which comes from the same generator after).

Constants. Conditioning on ``J`` (total expectation):

- ``E[C(v)] = sum_j p_j E[C_j(v)]``, so ``C`` is unbiased when every ``C_j`` is;
- ``E||C(v) - v||^2 = sum_j p_j E||C_j(v) - v||^2``, so for unbiased components
  ``E||C(v) - v||^2 <= (sum_j p_j omega_j) ||v||^2``: ``omega = sum_j p_j omega_j``; and for any
  components ``E||C(v) - v||^2 <= sum_j p_j (1 - alpha_j) ||v||^2``:
  ``alpha = sum_j p_j alpha_j`` (an unbiased ``C_j`` counts with ``alpha_j = max(0, 1 - omega_j)``,
  see :meth:`Compressor.alpha`). A mixture with a biased component is biased
  (``omega = inf``); it is contractive when some component with ``alpha_j > 0`` has weight.

Bits: those of the component used, plus ``ceil(log2 J)`` bits that tell the receiver which one
it was (``J`` components; none for ``J = 1``). ``expected_bits = sum_j p_j bits_j + ceil(log2 J)``.

Config: ``components`` lists the compressors, each a name (with that compressor's default
keys) or an inline table with its name and keys, and ``probabilities`` their weights
(default: uniform), e.g.::

    [compressor]
    name = "mixture"
    components = [{name = "randk", ratio = 0.1}, {name = "qsgd", levels = 4}]
    probabilities = [0.5, 0.5]

A mixture cannot contain a mixture (its components' names are checked against the registry,
and ``mixture`` is refused); ``none`` is taken as ``identity``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Self

import torch

from phloem.core.config import Picks, Section
from phloem.core.errors import ConfigError
from phloem.fl.compressors.base import Compressed, Compressor
from phloem.fl.compressors.identity import Identity
from phloem.fl.registries import COMPRESSORS

__all__ = ["Mixture", "MixtureParams", "MixturePart"]

#: how far ``sum_j p_j`` may be from 1 (rounding in a config's decimals)
SUM_TOLERANCE = 1e-9
_NAME = "mixture"


@dataclass(frozen=True)
class MixturePart(Section):
    """One component of a mixture in a config: a compressor's ``name`` and its ``params``."""

    #: no default: a table without a name is refused ("unknown compressor ''"), listing the names
    name: Annotated[str, Picks(COMPRESSORS, "params")] = ""
    params: Any = None

    def __post_init__(self) -> None:
        if self.name == _NAME:
            raise ConfigError("name", "a mixture cannot contain a mixture; list its parts instead")
        super().__post_init__()


@dataclass(frozen=True)
class MixtureParams:
    """``components``: names or ``{name = ..., key = ...}`` tables; ``probabilities``: weights
    in (0, 1] summing to 1, one per component (empty: uniform)."""

    components: tuple[MixturePart | str, ...] = ("qsgd", "natural")
    probabilities: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.components, Sequence) or isinstance(self.components, str):
            raise ConfigError(
                "compressor.components", f"must be a list of compressors, got {self.components!r}"
            )
        parts = tuple(_part(c, i) for i, c in enumerate(self.components))
        object.__setattr__(self, "components", parts)
        if not parts:
            raise ConfigError("compressor.components", "must name at least one compressor")
        if self.probabilities is not None:
            check_probabilities(self.probabilities, len(parts), "compressor.probabilities")

    def parts(self) -> tuple[MixturePart, ...]:
        """The components, each as a :class:`MixturePart` (names are expanded on creation)."""
        return tuple(p for p in self.components if isinstance(p, MixturePart))

    def weights(self) -> tuple[float, ...]:
        """``probabilities``, or uniform weights."""
        n = len(self.components)
        return tuple(self.probabilities) if self.probabilities is not None else (1.0 / n,) * n


def _part(c: object, i: int) -> MixturePart:
    field = f"compressor.components[{i}]"
    if isinstance(c, MixturePart):
        return c
    if not isinstance(c, str):
        raise ConfigError(field, f"must be a compressor's name or a table, got {c!r}")
    if c == _NAME:
        raise ConfigError(field, "a mixture cannot contain a mixture; list its parts instead")
    COMPRESSORS.get(c, field=field)
    return MixturePart(c)


def check_probabilities(probabilities: object, n: int, field: str) -> tuple[float, ...]:
    """``probabilities`` as ``n`` numbers in (0, 1] summing to 1 (within ``1e-9``).

    Raises
    ------
    ConfigError
        Naming ``field`` and saying what is wrong (NaN, out of range, length, sum).
    """
    if not isinstance(probabilities, Sequence) or isinstance(probabilities, str):
        raise ConfigError(field, f"must be a list of {n} numbers, got {probabilities!r}")
    ps = tuple(probabilities)
    if len(ps) != n:
        raise ConfigError(field, f"must have one weight per component ({n}), got {len(ps)}")
    for j, p in enumerate(ps):
        ok = isinstance(p, int | float) and not isinstance(p, bool)
        if not ok or not (0.0 < float(p) <= 1.0):  # also refuses NaN
            raise ConfigError(field, f"entry {j} must be a probability in (0, 1], got {p!r}")
    total = math.fsum(float(p) for p in ps)
    if abs(total - 1.0) > SUM_TOLERANCE:
        raise ConfigError(field, f"must sum to 1, got {ps!r} (sum {total!r})")
    return tuple(float(p) for p in ps)


@COMPRESSORS.register
@dataclass(frozen=True)
class Mixture(Compressor):
    """``C_j`` with probability ``p_j``: unbiased iff every ``C_j`` is.

    Parameters
    ----------
    components
        The compressors ``C_j`` (at least one; no mixture among them).
    probabilities
        ``p_j`` in (0, 1], one per component, summing to 1.
    """

    components: tuple[Compressor, ...]
    probabilities: tuple[float, ...]

    name: ClassVar[str] = _NAME
    description: ClassVar[str] = (
        "mixture: compressor j with probability p_j, omega and alpha averaged "
        "(Burlachenko et al., DistributedML 2021)"
    )
    Params: ClassVar[type[MixtureParams]] = MixtureParams
    #: set per instance: ``True`` when every component is unbiased
    unbiased: ClassVar[bool] = False

    @classmethod
    def from_params(cls, params: MixtureParams, *, dim: int) -> Self:
        built: list[Compressor] = []
        for i, part in enumerate(params.parts()):
            try:
                c = COMPRESSORS.get(part.name).from_params(part.params, dim=dim)
            except ConfigError as e:
                where = e.field.removeprefix("compressor.").removeprefix("compressor")
                field = f"compressor.components[{i}]" + (f".{where}" if where else "")
                raise ConfigError(field, e.problem, e.allowed) from None
            built.append(Identity() if c is None else c)
        return cls(tuple(built), params.weights())

    def __post_init__(self) -> None:
        cs = tuple(self.components) if isinstance(self.components, Sequence) else ()
        if not cs or not all(isinstance(c, Compressor) for c in cs):
            raise ConfigError(
                "Mixture.components", f"must be one or more compressors, got {self.components!r}"
            )
        if any(isinstance(c, Mixture) for c in cs):
            raise ConfigError("Mixture.components", "a mixture cannot contain a mixture")
        ps = check_probabilities(self.probabilities, len(cs), "Mixture.probabilities")
        object.__setattr__(self, "components", cs)
        object.__setattr__(self, "probabilities", ps)
        # unbiasedness is a property of the components, so it is set per instance
        object.__setattr__(self, "unbiased", all(c.unbiased for c in cs))

    def _selector_bits(self) -> int:
        return math.ceil(math.log2(len(self.components)))

    def choose(self, gen: torch.Generator) -> int:
        """The index ``j`` drawn with probability ``p_j`` (one uniform from ``gen``)."""
        u = float(torch.rand((), generator=gen, dtype=torch.float64, device=gen.device))
        acc = 0.0
        for j, p in enumerate(self.probabilities[:-1]):
            acc += p
            if u < acc:
                return j
        return len(self.probabilities) - 1

    def compress(self, v: torch.Tensor, gen: torch.Generator) -> Compressed:
        """Draw ``j`` from ``gen``, then compress with ``C_j`` using ``gen``."""
        sent = self.components[self.choose(gen)].compress(v, gen)
        return Compressed(sent.value, sent.bits + self._selector_bits())

    def omega(self, d: int) -> float:
        """``sum_j p_j omega_j`` when every component is unbiased, else ``inf``."""
        if not self.unbiased:
            return math.inf
        return math.fsum(
            p * c.omega(d) for p, c in zip(self.probabilities, self.components, strict=True)
        )

    def alpha(self, d: int) -> float:
        """``sum_j p_j alpha_j``."""
        return math.fsum(
            p * c.alpha(d) for p, c in zip(self.probabilities, self.components, strict=True)
        )

    def expected_bits(self, d: int) -> float:
        """``sum_j p_j bits_j + ceil(log2 J)``."""
        expected = (
            p * c.expected_bits(d) for p, c in zip(self.probabilities, self.components, strict=True)
        )
        return math.fsum(expected) + self._selector_bits()
