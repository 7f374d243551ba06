"""FedProx: FedAvg whose clients minimise a proximal local objective.

Li, Sahu, Zaheer, Sanjabi, Talwalkar, Smith. "Federated Optimization in Heterogeneous
Networks." MLSys 2020.

Client ``i`` approximately minimises ``f_i(w) + mu/2 ||w - x||^2`` with its local solver; the
server aggregates exactly as FedAvg does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from phloem.fl.algorithms.fedavg import FedAvg

__all__ = ["FedProx"]


@dataclass(frozen=True)
class FedProx(FedAvg):
    """FedAvg with a proximal term of strength ``mu`` in every client's objective."""

    name: ClassVar[str] = "fedprox"
    mu: float = 0.01

    def __post_init__(self) -> None:
        if self.mu < 0:
            raise ValueError(f"algorithm.mu must be >= 0, got {self.mu}")

    def _prox_mu(self) -> float:
        return self.mu
