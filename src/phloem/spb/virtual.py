"""SPB's arithmetic for ``W`` data-parallel workers in one process ("virtual workers").

:func:`spb_gradients` does what ``W`` real workers and their synchronisation do together:
worker ``r`` takes its shard, runs the first ``L - d_r`` blocks without autograd (nothing is
saved for backward there), the last ``d_r`` with it, and backpropagates its shard's loss
through those blocks only; then block ``l``'s gradient is the mean over the workers that
computed it (:func:`~phloem.spb.plans.base.members`), and every parameter's ``.grad`` is set to
that mean, as on every real worker after synchronisation. A block no worker reached gets no
gradient (``None``: the optimiser leaves it alone).

With every depth equal to ``L`` and equal shards this is plain data-parallel SGD: the mean of
the shards' mean losses' gradients is the full batch's gradient (a test checks it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, cast

import torch
from torch import nn

from phloem.core.errors import ConfigError
from phloem.spb.plans.base import members

if TYPE_CHECKING:
    from phloem.spb.accounting import StepMeter

__all__ = [
    "Residual",
    "StepReport",
    "average_into",
    "block_params",
    "forward_from_cut",
    "local_gradients",
    "spb_gradients",
]


def block_params(blocks: Sequence[nn.Module]) -> list[list[nn.Parameter]]:
    """Each block's trainable parameters, in order."""
    return [[p for p in b.parameters() if p.requires_grad] for b in blocks]


class Residual(Protocol):
    """A block with an identity path (:class:`phloem.nets.layers.BasicBlock`)."""

    def branch(self, x: torch.Tensor) -> torch.Tensor: ...
    def shortcut(self, x: torch.Tensor) -> torch.Tensor: ...
    def combine(self, branch: torch.Tensor, shortcut: torch.Tensor) -> torch.Tensor: ...


def forward_from_cut(
    blocks: Sequence[nn.Module],
    x: torch.Tensor,
    depth: int,
    dropped: frozenset[int] = frozenset(),
) -> torch.Tensor:
    """The model's output, the first ``len(blocks) - depth`` blocks run without autograd (they
    save nothing for backward), the last ``depth`` with it; a block in ``dropped`` (residual)
    runs its branch without autograd, so the gradient passes through its identity path only."""
    cut = len(blocks) - depth
    h = x
    with torch.no_grad():
        for block in blocks[:cut]:
            h = block(h)
    for i, block in enumerate(blocks[cut:], start=cut):
        if i in dropped:
            res = cast(Residual, block)
            with torch.no_grad():
                branch = res.branch(h)
            h = res.combine(branch, res.shortcut(h))
        else:
            h = block(h)
    return h


def local_gradients(
    blocks: Sequence[nn.Module],
    x: torch.Tensor,
    y: torch.Tensor,
    depth: int,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    dropped: frozenset[int] = frozenset(),
    *,
    meter: StepMeter | None = None,
) -> tuple[float, list[list[torch.Tensor] | None]]:
    """One worker's part of a step: the first ``L - depth`` blocks without autograd, the rest
    with it (a ``dropped`` block's branch without), and the gradients of the blocks it
    backpropagated through (``None`` for the others). Returns the shard's loss and the
    per-block gradients. A ``meter`` (:class:`~phloem.spb.accounting.StepMeter`) counts the
    forward and backward passes."""
    n_blocks = len(blocks)
    cut = n_blocks - depth
    with meter.forward() if meter is not None else nullcontext():
        loss = loss_fn(forward_from_cut(blocks, x, depth, dropped), y)
    params = block_params(blocks)
    trained = [b for b in range(cut, n_blocks) if b not in dropped]
    flat = [p for b in trained for p in params[b]]
    with meter.backward() if meter is not None else nullcontext():
        grads = torch.autograd.grad(loss, flat, allow_unused=True) if flat else ()
    out: list[list[torch.Tensor] | None] = [None] * n_blocks
    k = 0
    for b in trained:
        gs = []
        for p in params[b]:
            g = grads[k]
            k += 1
            gs.append(torch.zeros_like(p) if g is None else g.detach())
        out[b] = gs
    return float(loss.detach()), out


def average_into(
    params: Sequence[Sequence[nn.Parameter]],
    per_rank: Sequence[Sequence[Sequence[torch.Tensor] | None]],
    groups: Sequence[tuple[int, ...]],
) -> None:
    """Set each block's parameters' ``.grad`` to the mean of its members' gradients
    (``per_rank[r][b]``, ``None`` where rank ``r`` skipped block ``b``); ``None`` for a block
    with no members."""
    for b, ps in enumerate(params):
        count = len(groups[b])
        for i, p in enumerate(ps):
            s: torch.Tensor | None = None
            for grads in per_rank:
                gs = grads[b]
                if gs is not None:
                    s = gs[i] if s is None else s + gs[i]  # gs[i] is this rank's own tensor
            p.grad = None if s is None or count == 0 else s / count


@dataclass(frozen=True)
class StepReport:
    """What one virtual step did: each rank's depth and loss, and each block's members."""

    depths: tuple[int, ...]
    losses: tuple[float, ...]
    members: tuple[tuple[int, ...], ...]


def spb_gradients(
    blocks: Sequence[nn.Module],
    shards: Sequence[tuple[torch.Tensor, torch.Tensor]],
    depths: Sequence[int],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    dropped: frozenset[int] = frozenset(),
) -> StepReport:
    """Set every block parameter's ``.grad`` to SPB's synchronised gradient for one step.

    Parameters
    ----------
    blocks
        The model as an ordered list of blocks (input side first).
    shards
        One ``(inputs, targets)`` per worker.
    depths
        One depth per worker, ``1 <= d_r <= len(blocks)``: it backpropagates through the last
        ``d_r`` blocks.
    loss_fn
        ``loss_fn(output, targets)``, a scalar mean over the shard.
    dropped
        Residual blocks whose backward pass every worker skips (DropBP); they get no gradient.

    Raises
    ------
    ConfigError
        When the depths do not match the shards or lie outside ``[1, len(blocks)]``.
    """
    n_blocks = len(blocks)
    if len(depths) != len(shards):
        raise ConfigError("depths", f"{len(depths)} depths for {len(shards)} workers")
    if not all(1 <= d <= n_blocks for d in depths):
        raise ConfigError("depths", f"{list(depths)}", [f"ints in [1, {n_blocks}]"])
    losses, per_rank = [], []
    for (x, y), depth in zip(shards, depths, strict=True):
        loss, grads = local_gradients(blocks, x, y, depth, loss_fn, dropped)
        losses.append(loss)
        per_rank.append(grads)
    groups = members(tuple(depths), n_blocks, dropped)
    average_into(block_params(blocks), per_rank, groups)
    return StepReport(tuple(depths), tuple(losses), tuple(groups))
