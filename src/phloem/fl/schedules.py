"""Learning-rate schedules: the factor that multiplies a configured step size in round ``k``.

A schedule is picked per section, ``[local] schedule`` for the clients' step size
(``[local] lr``) and ``[server] schedule`` for the server optimiser's (``[server] lr``), with
its keys beside it. In round ``k = 1, ..., R`` of a run of ``R`` rounds the step used is
``lr * factor(k, R)``, where, with ``W = warmup_rounds`` and ``t = k - 1 - W``::

    factor(k, R) = k / (W + 1)              k <= W   (linear warm-up)
                 = decay(t, T),  T = R - W  k >  W    (t = 0, ..., T - 1)

and ``decay(0, T) = 1``, so the first round after the warm-up takes the configured step:

- ``constant``: ``1``;
- ``step``: ``gamma ** floor(t / step_rounds)`` (decay by ``gamma`` every ``step_rounds``);
- ``exponential``: ``gamma ** t``;
- ``cosine``: ``min_factor + (1 - min_factor) (1 + cos(pi t / T')) / 2`` for ``t < T'``
  and ``min_factor`` after, with ``T' = decay_rounds`` when set, else ``T`` (so the last round
  is one step short of ``min_factor`` and its step is never 0) (Loshchilov and Hutter, "SGDR",
  ICLR 2017, without restarts; PyTorch's ``CosineAnnealingLR`` with ``T_max = T'``);
- ``inverse``: ``a / (t + a)`` with ``a = offset``: the ``O(1/k)`` step of SGD theory,
  ``gamma_k = 2 / (mu (k + a))`` (e.g. Stich, "Unified Optimal Analysis of the (Stochastic)
  Gradient Method", 2019) when ``lr = 2 / (mu a)``;
- ``inverse_sqrt``: ``sqrt(a / (t + a))``, the ``O(1/sqrt(k))`` step of convex SGD theory.

The factor depends on ``k`` and ``R`` only, so a resumed run takes the same steps as an
uninterrupted one. :class:`LrSchedules` applies the two schedules to an algorithm (a copy whose
local solver and server optimiser carry round ``k``'s step sizes); the algorithms themselves
never see a schedule.
"""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Self, TypeVar

from phloem.core.errors import ConfigError
from phloem.core.registry import as_mapping
from phloem.fl.registries import SCHEDULES

__all__ = [
    "Constant",
    "Cosine",
    "Exponential",
    "Inverse",
    "InverseSqrt",
    "LrSchedules",
    "Schedule",
    "StepDecay",
]


def _finite(key: str, value: float, ok: bool, what: str) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and ok):
        raise ConfigError(key, f"must be {what}, got {value}")


@dataclass(frozen=True)
class Schedule(ABC):
    """A step-size multiplier per round (see the module docstring); its own ``Params``.

    Parameters
    ----------
    warmup_rounds
        Rounds of linear warm-up, ``k / (warmup_rounds + 1)``, before the decay starts.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    Params: ClassVar[type[Any]]

    warmup_rounds: int = 0

    def __post_init__(self) -> None:
        if not (isinstance(self.warmup_rounds, int) and self.warmup_rounds >= 0):
            raise ConfigError("warmup_rounds", f"must be an integer >= 0, got {self.warmup_rounds}")

    @classmethod
    def from_params(cls, params: Any) -> Self:
        """The schedule of ``params`` (a schedule is its own ``Params``)."""
        return cls(**as_mapping(params))

    def factor(self, k: int, rounds: int) -> float:
        """The multiplier of the configured step in round ``k`` (1-based) of ``rounds``."""
        w = self.warmup_rounds
        if k <= w:
            return k / (w + 1)
        return self.decay(k - 1 - w, max(rounds - w, 0))

    @abstractmethod
    def decay(self, t: int, horizon: int) -> float:
        """The factor ``t`` rounds after the warm-up; ``horizon``: rounds left to decay over."""

    @property
    def is_constant(self) -> bool:
        """Whether every round takes the configured step (no warm-up, no decay)."""
        return False

    @property
    def uses_run_length(self) -> bool:
        """Whether the factor depends on the run's number of rounds (not on ``k`` alone)."""
        return False


S = TypeVar("S", bound=type[Schedule])


def _own_params(cls: S) -> S:
    """A schedule is its own ``Params`` (its fields are the config keys)."""
    cls.Params = cls
    return cls


@SCHEDULES.register
@_own_params
@dataclass(frozen=True)
class Constant(Schedule):
    """``1`` (after the warm-up, if any)."""

    name: ClassVar[str] = "constant"
    description: ClassVar[str] = "the configured step every round (after an optional warm-up)"

    def decay(self, t: int, horizon: int) -> float:
        return 1.0

    @property
    def is_constant(self) -> bool:
        return self.warmup_rounds == 0


@SCHEDULES.register
@_own_params
@dataclass(frozen=True)
class StepDecay(Schedule):
    """``gamma ** floor(t / step_rounds)``."""

    name: ClassVar[str] = "step"
    description: ClassVar[str] = "multiply by gamma every step_rounds rounds"

    gamma: float = 0.1
    step_rounds: int = 10

    def __post_init__(self) -> None:
        super().__post_init__()
        _finite("gamma", self.gamma, 0 < self.gamma <= 1, "in (0, 1]")
        if not (isinstance(self.step_rounds, int) and self.step_rounds >= 1):
            raise ConfigError("step_rounds", f"must be an integer >= 1, got {self.step_rounds}")

    def decay(self, t: int, horizon: int) -> float:
        return float(self.gamma ** (t // self.step_rounds))


@SCHEDULES.register
@_own_params
@dataclass(frozen=True)
class Exponential(Schedule):
    """``gamma ** t``."""

    name: ClassVar[str] = "exponential"
    description: ClassVar[str] = "multiply by gamma every round"

    gamma: float = 0.99

    def __post_init__(self) -> None:
        super().__post_init__()
        _finite("gamma", self.gamma, 0 < self.gamma <= 1, "in (0, 1]")

    def decay(self, t: int, horizon: int) -> float:
        return float(self.gamma**t)


@SCHEDULES.register
@_own_params
@dataclass(frozen=True)
class Cosine(Schedule):
    """Half a cosine from 1 to ``min_factor`` over ``decay_rounds`` (empty: the run's rounds
    after the warm-up), then ``min_factor``."""

    name: ClassVar[str] = "cosine"
    description: ClassVar[str] = (
        "cosine decay to min_factor over the run (Loshchilov and Hutter, ICLR 2017)"
    )

    min_factor: float = 0.0
    decay_rounds: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        _finite("min_factor", self.min_factor, 0 <= self.min_factor <= 1, "in [0, 1]")
        if self.decay_rounds is not None and not (
            isinstance(self.decay_rounds, int) and self.decay_rounds >= 1
        ):
            raise ConfigError(
                "decay_rounds", f"must be an integer >= 1 when set, got {self.decay_rounds}"
            )
        if self.decay_rounds is not None and self.min_factor == 0:
            raise ConfigError(
                "min_factor", "must be > 0 when decay_rounds is set (the step would reach 0)"
            )

    @property
    def uses_run_length(self) -> bool:
        return self.decay_rounds is None

    def decay(self, t: int, horizon: int) -> float:
        span = self.decay_rounds if self.decay_rounds is not None else horizon
        if span <= 0:
            return 1.0
        if t >= span:
            return self.min_factor
        return self.min_factor + (1 - self.min_factor) * (1 + math.cos(math.pi * t / span)) / 2


@SCHEDULES.register
@_own_params
@dataclass(frozen=True)
class Inverse(Schedule):
    """``offset / (t + offset)``: SGD theory's ``O(1/k)`` step."""

    name: ClassVar[str] = "inverse"
    description: ClassVar[str] = (
        "offset / (t + offset), the 1/k step of SGD theory (Stich, arXiv 2019)"
    )

    offset: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        _finite("offset", self.offset, self.offset > 0, "a number > 0")

    def decay(self, t: int, horizon: int) -> float:
        return self.offset / (t + self.offset)


@SCHEDULES.register
@_own_params
@dataclass(frozen=True)
class InverseSqrt(Schedule):
    """``sqrt(offset / (t + offset))``: the ``O(1/sqrt(k))`` step."""

    name: ClassVar[str] = "inverse_sqrt"
    description: ClassVar[str] = "sqrt(offset / (t + offset)), the 1/sqrt(k) step"

    offset: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        _finite("offset", self.offset, self.offset > 0, "a number > 0")

    def decay(self, t: int, horizon: int) -> float:
        return math.sqrt(self.offset / (t + self.offset))


A = TypeVar("A")


@dataclass(frozen=True)
class LrSchedules:
    """The schedules of a run's two step sizes, and the run's length they may depend on.

    Attributes
    ----------
    local, server
        Multipliers of the local solver's ``lr`` and of the server optimiser's ``lr``.
    rounds
        The run's number of rounds (the horizon of ``cosine``).
    """

    local: Schedule
    server: Schedule
    rounds: int

    def __post_init__(self) -> None:
        # the decays are non-increasing: a step that survives the last round survives all
        for section, schedule in (("local", self.local), ("server", self.server)):
            if self.rounds >= 1 and not schedule.factor(self.rounds, self.rounds) > 0:
                raise ConfigError(
                    f"{section}.schedule",
                    f"{schedule.name} makes the step 0 (underflow) by round {self.rounds}; "
                    "decay more slowly",
                )

    @property
    def is_constant(self) -> bool:
        """Whether both step sizes stay as configured every round."""
        return self.local.is_constant and self.server.is_constant

    def at_round(self, algorithm: A, k: int, **also: Any) -> A:
        """A copy of ``algorithm`` (a dataclass with ``local`` and ``server_opt`` parts, each
        with an ``lr``) whose step sizes are those of round ``k``; ``algorithm`` itself when
        neither changes. Every round is computed from ``algorithm``'s configured steps, never
        from an earlier round's, so round ``k``'s steps depend on ``k`` alone. ``also``: more
        fields to replace in the copy."""
        changes: dict[str, Any] = dict(also)
        for part, schedule in (("local", self.local), ("server_opt", self.server)):
            f = schedule.factor(k, self.rounds)
            inner = getattr(algorithm, part, None)
            if f != 1.0 and inner is not None:
                changes[part] = dataclasses.replace(inner, lr=inner.lr * f)
        return dataclasses.replace(algorithm, **changes) if changes else algorithm  # type: ignore[type-var]
