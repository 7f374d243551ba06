"""Tests for :mod:`phloem.spb.accounting` against analytic counts on a tiny model."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from phloem.spb.accounting import measure_step

B, SIZES = 4, (6, 8, 8, 5)


def mlp() -> nn.ModuleList:
    torch.manual_seed(0)
    return nn.ModuleList(
        [nn.Sequential(nn.Linear(a, b), nn.Tanh()) for a, b in itertools.pairwise(SIZES)]
    )


def mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(out, y)


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_flops_and_saved_bytes_match_the_analytic_counts(depth: int) -> None:
    """Forward: every Linear costs 2 B in out. Backward: each trained Linear's weight gradient
    costs as much again, and its input gradient too except at the cut (nothing below needs
    it). Saved, each buffer once (float32): the first trained Linear's input, every trained
    Tanh's output (which is also the next Linear's input) and the mse loss's target (its input
    is the last Tanh's output, already counted)."""
    blocks = mlp()
    x, y = torch.randn(B, SIZES[0]), torch.randn(B, SIZES[-1])
    cost = measure_step(blocks, x, y, depth, mse)
    pairs = list(itertools.pairwise(SIZES))
    assert cost.forward_flops == sum(2 * B * a * b for a, b in pairs)
    trained = pairs[len(pairs) - depth :]
    weight_grads = sum(2 * B * a * b for a, b in trained)
    input_grads = sum(2 * B * a * b for a, b in trained[1:])
    assert cost.backward_flops == weight_grads + input_grads
    activations = 4 * B * (trained[0][0] + sum(b for _, b in trained))
    assert cost.saved_bytes == activations + 4 * B * SIZES[-1]
    assert all(p.grad is None for p in blocks.parameters())


def test_a_half_depth_worker_saves_backward_work_and_memory() -> None:
    blocks = mlp()
    x, y = torch.randn(B, SIZES[0]), torch.randn(B, SIZES[-1])
    full, half = measure_step(blocks, x, y, 3, mse), measure_step(blocks, x, y, 1, mse)
    assert full.forward_flops == half.forward_flops
    assert half.backward_flops < 0.5 * full.backward_flops
    assert half.saved_bytes < full.saved_bytes  # exact counts: the test above


def test_a_profile_adds_up_and_matches_measure_step() -> None:
    from phloem.spb.accounting import Profile, profile_model

    blocks = mlp()
    x, y = torch.randn(B, SIZES[0]), torch.randn(B, SIZES[-1])
    p = profile_model("mlp", ["a", "b", "c"], list(blocks), x, y, mse, repeats=1)
    assert [c.depth for c in p.depths] == [1, 2, 3]
    for c in p.depths:
        assert c == measure_step(blocks, x, y, c.depth, mse)
    assert sum(b.backward_flops for b in p.blocks) == p.depths[-1].backward_flops
    assert sum(b.saved_bytes for b in p.blocks) == p.depths[-1].saved_bytes
    pairs = itertools.pairwise(SIZES)
    assert [b.param_bytes for b in p.blocks] == [4 * (a * b + b) for a, b in pairs]
    assert Profile.from_json(p.to_json()) == p
