"""The baselines every attack claim must beat: the mean image, and nearest neighbour in IR space.

- ``mean-image`` ignores the IR and answers the mean of the attacker's images: what an attacker
  knows without seeing anything.
- ``nearest-neighbour`` pushes the attacker's images through the edge part (the same query set
  as the learned inverters) and answers, for each private IR, the attacker image whose IR is
  closest in L2: what memorising the query set buys.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from phloem.attacks.methods.base import Attack, fit_queries
from phloem.attacks.registries import ATTACKS
from phloem.attacks.threat import Access, EdgeOracle
from phloem.core import checks as _checks
from phloem.core.registry import NoParams

__all__ = ["MeanImage", "NearestNeighbour", "NearestNeighbourParams"]


@ATTACKS.register
class MeanImage(Attack):
    """Every reconstruction is the mean of the attacker's images."""

    name: ClassVar[str] = "mean-image"
    description: ClassVar[str] = "baseline: the mean of the attacker's images, whatever the IR"
    Params: ClassVar[type[NoParams]] = NoParams

    def fit(
        self,
        oracle: EdgeOracle,
        aux: torch.Tensor,
        gen: torch.Generator,
        *,
        labels: torch.Tensor | None = None,
    ) -> None:
        self._mean = aux.mean(dim=0, keepdim=True)

    def reconstruct(self, irs: torch.Tensor) -> torch.Tensor:
        return self._mean.expand(irs.shape[0], *self._mean.shape[1:]).clone()


@dataclass(frozen=True)
class NearestNeighbourParams:
    """``batch``: private IRs compared at a time (memory: ``batch x queries`` distances)."""

    batch: int = 256

    def __post_init__(self) -> None:
        _checks.integer("batch", self.batch, low=1)


@ATTACKS.register
class NearestNeighbour(Attack):
    """The attacker image whose IR is nearest (L2) to the private IR."""

    name: ClassVar[str] = "nearest-neighbour"
    description: ClassVar[str] = "baseline: the query image with the nearest IR (L2)"
    Params: ClassVar[type[NearestNeighbourParams]] = NearestNeighbourParams
    access: ClassVar[frozenset[Access]] = frozenset({Access.WHITE_BOX, Access.BLACK_BOX})

    def fit(
        self,
        oracle: EdgeOracle,
        aux: torch.Tensor,
        gen: torch.Generator,
        *,
        labels: torch.Tensor | None = None,
    ) -> None:
        images, irs = fit_queries(oracle, aux)
        self._images = images
        self._irs = irs.flatten(1)

    def reconstruct(self, irs: torch.Tensor) -> torch.Tensor:
        flat = irs.flatten(1)
        step = self.params.batch
        picks = [
            torch.cdist(flat[i : i + step], self._irs).argmin(dim=1)
            for i in range(0, flat.shape[0], step)
        ]
        return self._images[torch.cat(picks)].clone()
