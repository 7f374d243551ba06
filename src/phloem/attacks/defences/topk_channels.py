"""``topk_channels``: send only the ``k`` most active channels of each sample's IR.

A channel-pruning defence on the IR: for each sample, the ``k`` channels
with the largest *mean activation* (signed mean over the channel's spatial entries; after a
ReLU, the mean magnitude) are kept and every other channel is zeroed. Exactly ``k`` channels
are kept: among channels of equal mean, the lowest index first. Deterministic (the generator
is not used). ``k`` is given directly or as a fraction of the channels (``ceil(fraction *
C)``, at least 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from phloem.attacks.defences.base import Defence
from phloem.attacks.registries import DEFENCES
from phloem.core import checks as _checks
from phloem.core.errors import ConfigError

__all__ = ["TopKChannels", "TopKChannelsParams"]


@dataclass(frozen=True)
class TopKChannelsParams:
    """Parameters of :class:`TopKChannels`: at most one of ``k`` and ``fraction`` (neither:
    ``fraction = 0.5``).

    Attributes
    ----------
    k
        Channels kept per sample, ``>= 1`` (all of them when ``k >= C``).
    fraction
        Share of the channels kept, in ``(0, 1]``: ``ceil(fraction * C)``.
    """

    k: int | None = None
    fraction: float | None = None

    def __post_init__(self) -> None:
        if self.k is not None and self.fraction is not None:
            raise ConfigError("fraction", "give k or fraction, not both")
        if self.k is None and self.fraction is None:
            object.__setattr__(self, "fraction", 0.5)
        if self.k is not None:
            object.__setattr__(self, "k", _checks.integer("k", self.k, low=1))
        if self.fraction is not None:
            f = _checks.real("fraction", self.fraction, low=0.0, high=1.0, low_open=True)
            object.__setattr__(self, "fraction", f)

    def k_for(self, channels: int) -> int:
        """Channels kept out of ``channels``."""
        if self.k is not None:
            return min(self.k, channels)
        assert self.fraction is not None
        return min(channels, max(1, math.ceil(self.fraction * channels)))


@DEFENCES.register
class TopKChannels(Defence):
    """Keeps, per sample, the ``k`` channels of largest mean activation; zeroes the rest."""

    name: ClassVar[str] = "topk_channels"
    description: ClassVar[str] = "keep the k channels of largest mean activation, zero the rest"
    Params: ClassVar[type[TopKChannelsParams]] = TopKChannelsParams
    params: TopKChannelsParams

    def apply(self, ir: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """``ir`` (``(N, C, ...)``) with all but ``k`` channels per sample zeroed."""
        if ir.ndim < 2:
            raise ValueError(f"expected an IR (N, C, ...), got shape {tuple(ir.shape)}")
        n, c = ir.shape[:2]
        k = self.params.k_for(c)
        means = ir.detach().reshape(n, c, -1).mean(dim=2)
        # a stable descending sort keeps the lowest index first among equal means, on every
        # device (torch.topk does not say which of several equal entries it returns)
        order = torch.sort(means, dim=1, descending=True, stable=True).indices[:, :k]
        keep = torch.zeros(n, c, dtype=torch.bool, device=ir.device)
        keep.scatter_(1, order, True)
        keep = keep.view(n, c, *([1] * (ir.ndim - 2)))
        return torch.where(keep, ir, torch.zeros_like(ir))
