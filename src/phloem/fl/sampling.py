"""Client sampling. A round's cohort comes from the run's sampling stream for that round only,
so the schedule is fixed by the seed: every algorithm run with the same seed sees the same
cohorts, and a resumed run sees the cohorts the interrupted one would have.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

import numpy as np

from phloem.core.errors import ConfigError
from phloem.core.registry import NoParams
from phloem.fl.registries import SAMPLERS

__all__ = [
    "ClientSampler",
    "FixedSchedule",
    "FullParticipation",
    "Poisson",
    "PoissonParams",
    "UniformCohort",
    "UniformParams",
]


class ClientSampler(ABC):
    """Draws the clients of one round; the registered ones are picked by ``[sampling] scheme``."""

    name: ClassVar[str]
    description: ClassVar[str]
    Params: ClassVar[type[Any]] = NoParams

    @classmethod
    def from_params(cls, params: Any) -> Self:
        """The sampler with its config parameters."""
        return cls()

    def fixed_size(self, num_clients: int) -> int | None:
        """The cohort size when every round has the same one, else ``None``.

        Raises
        ------
        ConfigError
            When no cohort can be drawn from ``num_clients`` clients.
        """
        return None

    @abstractmethod
    def cohort(self, round_: int, num_clients: int, rng: np.random.Generator) -> np.ndarray:
        """Sorted unique ``int64`` client ids for round ``round_`` (may be empty for Poisson)."""

    @abstractmethod
    def expected_size(self, num_clients: int) -> float:
        """Expected cohort size."""


@SAMPLERS.register
@dataclass(frozen=True)
class FullParticipation(ClientSampler):
    """Every client, every round."""

    name: ClassVar[str] = "full"
    description: ClassVar[str] = "every client, every round"

    def fixed_size(self, num_clients: int) -> int | None:
        return num_clients

    def cohort(self, round_: int, num_clients: int, rng: np.random.Generator) -> np.ndarray:
        return np.arange(num_clients, dtype=np.int64)

    def expected_size(self, num_clients: int) -> float:
        return float(num_clients)


@dataclass(frozen=True)
class UniformParams:
    """``cohort_size``: clients per round."""

    cohort_size: int = 10

    def __post_init__(self) -> None:
        if self.cohort_size < 1:
            raise ValueError(f"sampling.cohort_size must be >= 1, got {self.cohort_size}")


@SAMPLERS.register
@dataclass(frozen=True)
class UniformCohort(ClientSampler):
    """``size`` clients drawn uniformly without replacement ("nice" sampling)."""

    name: ClassVar[str] = "uniform"
    description: ClassVar[str] = "cohort_size clients uniformly without replacement"
    Params: ClassVar[type[UniformParams]] = UniformParams

    size: int

    def __post_init__(self) -> None:
        UniformParams(self.size)

    @classmethod
    def from_params(cls, params: UniformParams) -> Self:
        return cls(params.cohort_size)

    def fixed_size(self, num_clients: int) -> int | None:
        if self.size > num_clients:
            raise ConfigError(
                "sampling.cohort_size", f"{self.size} exceeds the {num_clients} clients"
            )
        return self.size

    def cohort(self, round_: int, num_clients: int, rng: np.random.Generator) -> np.ndarray:
        if self.size > num_clients:
            raise ValueError(
                f"sampling.cohort_size={self.size} exceeds the number of clients ({num_clients})"
            )
        return np.sort(rng.choice(num_clients, self.size, replace=False)).astype(np.int64)

    def expected_size(self, num_clients: int) -> float:
        return float(min(self.size, num_clients))


@dataclass(frozen=True)
class PoissonParams:
    """``rate``: each client's probability of taking part in a round, in (0, 1]."""

    rate: float = 0.1

    def __post_init__(self) -> None:
        if not 0.0 < self.rate <= 1.0:
            raise ValueError(f"sampling.rate must be in (0, 1], got {self.rate}")


@SAMPLERS.register
@dataclass(frozen=True)
class Poisson(ClientSampler):
    """Each client independently with probability ``rate`` (the sampling of DP-FL accounting)."""

    name: ClassVar[str] = "poisson"
    description: ClassVar[str] = "each client independently with probability rate"
    Params: ClassVar[type[PoissonParams]] = PoissonParams

    rate: float

    def __post_init__(self) -> None:
        PoissonParams(self.rate)

    @classmethod
    def from_params(cls, params: PoissonParams) -> Self:
        return cls(params.rate)

    def cohort(self, round_: int, num_clients: int, rng: np.random.Generator) -> np.ndarray:
        return np.flatnonzero(rng.random(num_clients) < self.rate).astype(np.int64)

    def expected_size(self, num_clients: int) -> float:
        return self.rate * num_clients


@dataclass(frozen=True)
class FixedSchedule(ClientSampler):
    """Replays a given schedule: row ``r - 1`` is the cohort of round ``r`` (order kept).

    Not registered: a schedule is data, built in Python.
    """

    name: ClassVar[str] = "fixed"
    description: ClassVar[str] = "a given schedule of cohorts"

    schedule: np.ndarray = field(repr=False)

    def cohort(self, round_: int, num_clients: int, rng: np.random.Generator) -> np.ndarray:
        if not 1 <= round_ <= len(self.schedule):
            raise ValueError(
                f"the fixed schedule has {len(self.schedule)} rounds, asked for round {round_}"
            )
        ids = np.asarray(self.schedule[round_ - 1], dtype=np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= num_clients):
            raise ValueError(f"schedule round {round_} names a client outside 0..{num_clients - 1}")
        return ids

    def expected_size(self, num_clients: int) -> float:
        return float(np.mean([len(r) for r in self.schedule]))
