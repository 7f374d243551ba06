"""``SPB``: a model given as an ordered list of blocks, backpropagating through its last
``depth`` blocks only.

Wrap any model that is a sequence of blocks (ResNet stages or basic blocks, VGG blocks,
transformer layers): ``SPB(blocks)`` or ``SPB.from_sequential(nn.Sequential(...))``. In training
mode, :meth:`SPB.forward` runs the blocks before the cut under ``torch.no_grad`` (they save no
activations and receive no gradient from this worker), the last ``depth`` with autograd; in
eval mode, or at full depth, it is the plain model. A depth plan sets ``depth`` per step.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from phloem.core import checks
from phloem.spb.virtual import forward_from_cut

__all__ = ["SPB"]


class SPB(nn.Module):
    """The blocks, and how many of the last ones this worker backpropagates through."""

    def __init__(self, blocks: Sequence[nn.Module], depth: int | None = None) -> None:
        super().__init__()
        if not blocks:
            raise ValueError("SPB needs at least one block")
        self.blocks = nn.ModuleList(blocks)
        self._depth = len(self.blocks)
        if depth is not None:
            self.depth = depth

    @classmethod
    def from_sequential(cls, model: nn.Sequential, depth: int | None = None) -> SPB:
        """Each child of ``model`` becomes a block (sharing its weights)."""
        return cls(list(model.children()), depth)

    @property
    def num_blocks(self) -> int:
        """``L``."""
        return len(self.blocks)

    @property
    def depth(self) -> int:
        """How many of the last blocks backpropagate, ``1 <= depth <= L``."""
        return self._depth

    @depth.setter
    def depth(self, value: int) -> None:
        self._depth = checks.integer("spb.depth", value, low=1, high=len(self.blocks))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self._depth == len(self.blocks):
            for block in self.blocks:
                x = block(x)
            return x
        return forward_from_cut(list(self.blocks), x, self._depth)
