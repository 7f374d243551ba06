"""The attack contract: fit on auxiliary data through the oracle, then reconstruct private IRs.

An :class:`Attack` states which :class:`~phloem.attacks.threat.Access` it works under, learns
what it needs in :meth:`fit` (querying the edge part through an
:class:`~phloem.attacks.threat.EdgeOracle` within the budget, or using the edge module if
white-box), and maps a batch of private IRs to images in ``[0, 1]`` in :meth:`reconstruct`.
Every learned inverter gets the same query set, training budget and loss options from its
caller, so that comparisons are about the attack and not the recipe.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar

import torch

from phloem.attacks.threat import Access, EdgeOracle
from phloem.core.errors import ConfigError
from phloem.core.registry import Configured

__all__ = ["Attack", "fit_queries"]

#: images pushed through the oracle at a time
QUERY_BATCH = 256


class Attack(Configured, ABC):
    """A reconstruction attack (built from its own ``Params``)."""

    kind: ClassVar[str] = "attack"
    #: the threat models it works under
    access: ClassVar[frozenset[Access]] = frozenset(Access)
    #: hears a line per finished stage of a long fit (an epoch), when a caller sets it
    on_progress: Callable[[str], None] | None = None

    @abstractmethod
    def fit(
        self,
        oracle: EdgeOracle,
        aux: torch.Tensor,
        gen: torch.Generator,
        *,
        labels: torch.Tensor | None = None,
    ) -> None:
        """Learn from the attacker's auxiliary images ``aux`` (``(N, C, H, W)`` in [0, 1]),
        and their class ``labels`` (``(N,)`` ``int64``) where the attacker's set has them
        (``None`` otherwise; only attacks that train through the cloud part use them)."""

    @abstractmethod
    def reconstruct(self, irs: torch.Tensor) -> torch.Tensor:
        """Images ``(N, C, H, W)`` in ``[0, 1]`` reconstructed from private IRs."""


def fit_queries(oracle: EdgeOracle, aux: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The attacker's query set and its IRs: the first ``budget`` images of ``aux`` (all of
    them when the budget allows), pushed through the oracle in batches.

    Every query-based attack uses this, so all of them see the same query set.
    """
    budget = oracle.threat.budget
    images = aux if budget is None else aux[:budget]
    if images.shape[0] == 0:
        raise ConfigError(
            "threat.query_budget",
            f"this attack queries the edge part, but it may make {budget} queries with "
            f"{aux.shape[0]} auxiliary images",
            ["a budget >= 1 and auxiliary data"],
        )
    irs = [
        oracle.query(images[i : i + QUERY_BATCH]) for i in range(0, images.shape[0], QUERY_BATCH)
    ]
    return images, torch.cat(irs)
