"""Client sampling. A round's cohort comes from the run's sampling stream for that round only,
so the schedule is fixed by the seed: every algorithm run with the same seed sees the same
cohorts, and a resumed run sees the cohorts the interrupted one would have.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np

__all__ = ["ClientSampler", "FixedSchedule", "FullParticipation", "Poisson", "UniformCohort"]


class ClientSampler(ABC):
    """Draws the clients of one round."""

    @abstractmethod
    def cohort(self, round_: int, num_clients: int, rng: np.random.Generator) -> np.ndarray:
        """Sorted unique ``int64`` client ids for round ``round_`` (may be empty for Poisson)."""

    @abstractmethod
    def expected_size(self, num_clients: int) -> float:
        """Expected cohort size."""


@dataclass(frozen=True)
class FullParticipation(ClientSampler):
    """Every client, every round."""

    def cohort(self, round_: int, num_clients: int, rng: np.random.Generator) -> np.ndarray:
        return np.arange(num_clients, dtype=np.int64)

    def expected_size(self, num_clients: int) -> float:
        return float(num_clients)


@dataclass(frozen=True)
class UniformCohort(ClientSampler):
    """``size`` clients drawn uniformly without replacement ("nice" sampling)."""

    size: int

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError(f"sampling.cohort_size must be >= 1, got {self.size}")

    def cohort(self, round_: int, num_clients: int, rng: np.random.Generator) -> np.ndarray:
        if self.size > num_clients:
            raise ValueError(
                f"sampling.cohort_size={self.size} exceeds the number of clients ({num_clients})"
            )
        return np.sort(rng.choice(num_clients, self.size, replace=False)).astype(np.int64)

    def expected_size(self, num_clients: int) -> float:
        return float(min(self.size, num_clients))


@dataclass(frozen=True)
class Poisson(ClientSampler):
    """Each client independently with probability ``rate`` (the sampling of DP-FL accounting)."""

    rate: float

    def __post_init__(self) -> None:
        if not 0.0 < self.rate <= 1.0:
            raise ValueError(f"sampling.rate must be in (0, 1], got {self.rate}")

    def cohort(self, round_: int, num_clients: int, rng: np.random.Generator) -> np.ndarray:
        return np.flatnonzero(rng.random(num_clients) < self.rate).astype(np.int64)

    def expected_size(self, num_clients: int) -> float:
        return self.rate * num_clients


@dataclass(frozen=True)
class FixedSchedule(ClientSampler):
    """Replays a given schedule: row ``r - 1`` is the cohort of round ``r`` (order kept)."""

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
