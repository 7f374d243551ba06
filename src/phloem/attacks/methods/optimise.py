"""Inversion by optimisation, shared by rMLE, the shadow-model attack and UnSplit.

Find the input that an edge part maps to an observed IR,

    x* = argmin_x  mean((f(x) - ir)^2) + tv_weight * TV(x),   x = sigmoid(z) in [0, 1],

by Adam from a neutral start (``z`` near 0, so ``x`` near grey). ``f`` is the victim's own edge
part (rMLE, white-box), a shadow trained through the cloud part (He et al.'s query-free attack),
or an untrained copy whose weights are optimised too, alternating with ``x`` (UnSplit).
TV (total variation) is the natural-image prior.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["invert", "total_variation"]


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Per-image anisotropic TV: mean |horizontal| plus mean |vertical| neighbour difference."""
    dh = (x[..., :, 1:] - x[..., :, :-1]).abs().flatten(1).mean(dim=1)
    dv = (x[..., 1:, :] - x[..., :-1, :]).abs().flatten(1).mean(dim=1)
    return dh + dv


def invert(
    edge: nn.Module,
    target: torch.Tensor,
    input_shape: tuple[int, int, int],
    gen: torch.Generator,
    *,
    steps: int,
    lr: float,
    tv_weight: float,
    model_lr: float | None = None,
) -> torch.Tensor:
    """Images whose IR through ``edge`` matches ``target`` (one batch), in ``[0, 1]``.

    Parameters
    ----------
    edge
        The edge part to invert, run in eval mode (its mode is restored after).
    target
        Observed IRs ``(N, ...)``.
    input_shape
        ``(C, H, W)`` of one input.
    gen
        Draws the start (0.01-scale noise around ``z = 0``, to break symmetry).
    steps, lr, tv_weight
        Adam steps on ``z`` at ``lr``; the prior's weight (0: plain MLE).
    model_lr
        When given, each step is followed by an Adam step on ``edge``'s own weights at this
        rate (UnSplit's alternation; the module is changed in place). A parameter-free edge
        part has nothing to optimise and is known exactly.
    """
    z = (0.01 * torch.randn((target.shape[0], *input_shape), generator=gen)).requires_grad_()
    opts: list[torch.optim.Optimizer] = [torch.optim.Adam([z], lr=lr)]
    weights = [w for w in edge.parameters() if w.requires_grad]
    if model_lr is not None and weights:
        opts.append(torch.optim.Adam(weights, lr=model_lr))

    def loss() -> torch.Tensor:
        x = torch.sigmoid(z)
        out: torch.Tensor = edge(x)
        fit = (out - target).pow(2).flatten(1).mean(dim=1)
        return (fit + tv_weight * total_variation(x)).sum()

    was_training = edge.training
    edge.eval()
    try:
        for _ in range(steps):
            for opt in opts:
                for o in opts:
                    o.zero_grad()
                loss().backward()  # type: ignore[no-untyped-call]
                opt.step()
    finally:
        edge.train(was_training)
    return torch.sigmoid(z).detach()
