"""What one worker's SPB step costs: forward and backward FLOPs, and activation bytes saved.

:func:`measure_step` runs :func:`~phloem.spb.virtual.local_gradients`'s work for one rank with

- ``torch.utils.flop_counter.FlopCounterMode`` around the forward and, separately, the
  backward (torch counts matrix products and convolutions: ``2 m n k`` for an ``m x k`` by
  ``k x n`` product; element-wise work is not counted);
- ``torch.autograd.graph.saved_tensors_hooks`` around the forward, adding up the bytes of
  every buffer autograd keeps for the backward pass, each buffer once (a tensor saved by two
  operations is held once), parameters excluded (weights are stored anyway; what SPB saves is
  activations).

Blocks before the cut run without autograd, so they save nothing and cost no backward FLOPs;
that is where a shallow worker's savings come from.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from phloem.spb.virtual import forward_from_cut

__all__ = ["StepCost", "measure_step"]


@dataclass(frozen=True)
class StepCost:
    """One worker's step: FLOPs forward and backward, activation bytes saved for backward."""

    depth: int
    forward_flops: int
    backward_flops: int
    saved_bytes: int


def measure_step(
    blocks: Sequence[nn.Module],
    x: torch.Tensor,
    y: torch.Tensor,
    depth: int,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> StepCost:
    """Run one worker's SPB step at ``depth`` and measure it (parameters' ``.grad`` untouched)."""
    n_blocks = len(blocks)
    cut = n_blocks - depth
    params = [p for b in blocks for p in b.parameters()]
    seen = {p.untyped_storage().data_ptr() for p in params}
    saved = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal saved
        storage = t.untyped_storage()
        if storage.data_ptr() not in seen:  # each buffer once: a tensor saved twice is one
            seen.add(storage.data_ptr())
            saved += storage.nbytes()
        return t

    forward = FlopCounterMode(display=False)
    with forward, torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = loss_fn(forward_from_cut(blocks, x, depth), y)
    trainable = [p for b in blocks[cut:] for p in b.parameters() if p.requires_grad]
    backward = FlopCounterMode(display=False)
    with backward:
        torch.autograd.grad(loss, trainable, allow_unused=True)
    return StepCost(depth, forward.get_total_flops(), backward.get_total_flops(), saved)
