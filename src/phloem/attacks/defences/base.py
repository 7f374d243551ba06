"""The defence contract: a transformation of the IR that ``f_edge`` sends, composable.

A :class:`Defence` maps an IR batch to the IR actually sent (noise, dropout, quantisation,
pruning). :class:`DefendedEdge` applies a list of them, in order, after ``f_edge``; the attacker
only ever sees its output (through :class:`~phloem.attacks.threat.EdgeOracle`). A defence that
needs the victim trained with it (a NoPeek-style penalty) says so with ``trains_victim`` and
gives its loss term in :meth:`penalty`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import nn

from phloem.core.registry import Configured

__all__ = ["Defence", "DefendedEdge"]


class Defence(Configured, ABC):
    """One transformation of the IR (built from its own ``Params``)."""

    kind: ClassVar[str] = "defence"
    #: whether the victim must be (re)trained with :meth:`penalty`
    trains_victim: ClassVar[bool] = False

    @abstractmethod
    def apply(self, ir: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """The IR that is sent instead of ``ir`` (randomness from ``gen``)."""

    def penalty(self, x: torch.Tensor, ir: torch.Tensor) -> torch.Tensor | None:
        """Hook: a training loss term for the victim (``None``: no training-time part)."""
        return None


class DefendedEdge(nn.Module):
    """``f_edge`` followed by the defences, in order; what leaves the edge device.

    Parameters
    ----------
    edge
        The edge part.
    defences
        Applied in order to every IR.
    gen
        The defences' randomness (seeded by the caller).
    """

    def __init__(self, edge: nn.Module, defences: Sequence[Defence], gen: torch.Generator) -> None:
        super().__init__()
        self.edge = edge
        self.defences = tuple(defences)
        self.gen = gen

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ir: torch.Tensor = self.edge(x)
        for defence in self.defences:
            ir = defence.apply(ir, self.gen)
        return ir
