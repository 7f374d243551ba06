"""FedProx: FedAvg whose clients minimise a proximal local objective.

Li, Sahu, Zaheer, Sanjabi, Talwalkar, Smith. "Federated Optimization in Heterogeneous
Networks." MLSys 2020.

Client ``i`` approximately minimises ``f_i(w) + mu/2 ||w - x||^2`` with its local solver (the
client's oracle wrapped in :class:`~phloem.fl.problem.ProximalOracle`); the server aggregates
exactly as FedAvg does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from phloem.fl.algorithms.base import Algorithm
from phloem.fl.algorithms.fedavg import FedAvg
from phloem.fl.problem import ClientOracle, ProximalOracle
from phloem.fl.registries import ALGORITHMS

__all__ = ["FedProx", "FedProxParams"]


@dataclass(frozen=True)
class FedProxParams:
    """``mu``: proximal strength, ``>= 0`` (0 is FedAvg)."""

    mu: float = 0.01

    def __post_init__(self) -> None:
        if self.mu < 0:
            raise ValueError(f"algorithm.mu must be >= 0, got {self.mu}")


@ALGORITHMS.register
@dataclass(frozen=True)
class FedProx(FedAvg):
    """FedAvg with a proximal term of strength ``mu`` in every client's objective."""

    name: ClassVar[str] = "fedprox"
    description: ClassVar[str] = "FedAvg with a proximal local objective (Li et al., MLSys 2020)"
    Params: ClassVar[type[FedProxParams]] = FedProxParams
    mu: float = 0.01

    # Khaled et al.'s local GD theorem (FedAvg's theory step) does not cover the proximal term
    theory_step = Algorithm.theory_step

    def __post_init__(self) -> None:
        FedProxParams(self.mu)

    def local_objective(self, oracle: ClientOracle, x: torch.Tensor) -> ClientOracle:
        return ProximalOracle(oracle, x, self.mu) if self.mu else oracle
