"""Tests for :mod:`phloem.spb.virtual` against a slow, obviously correct reference: each
worker's full gradient by ordinary backprop, averaged block by block over the members only."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from phloem.spb.plans.base import members
from phloem.spb.virtual import spb_gradients


def model(seed: int = 0) -> nn.ModuleList:
    torch.manual_seed(seed)
    return nn.ModuleList(
        [
            nn.Sequential(nn.Linear(6, 8), nn.Tanh()),
            nn.Sequential(nn.Linear(8, 8), nn.Tanh()),
            nn.Sequential(nn.Linear(8, 8), nn.Tanh()),
            nn.Linear(8, 3),
        ]
    )


def run(blocks: nn.ModuleList, x: torch.Tensor) -> torch.Tensor:
    for b in blocks:
        x = b(x)
    return x


def shards(world: int, n: int = 5) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return [
        (torch.randn(n, 6, generator=g), torch.randint(0, 3, (n,), generator=g))
        for _ in range(world)
    ]


def reference(
    blocks: nn.ModuleList, data: list[tuple[torch.Tensor, torch.Tensor]], depths: tuple[int, ...]
) -> list[list[torch.Tensor | None]]:
    """Each worker's gradient of every block by plain backprop; block l: mean over members."""
    per_rank = []
    for x, y in data:
        blocks.zero_grad()
        F.cross_entropy(run(blocks, x), y).backward()
        per_rank.append([[p.grad.clone() for p in b.parameters()] for b in blocks])
    out: list[list[torch.Tensor | None]] = []
    for blk, group in enumerate(members(depths, len(blocks))):
        n_params = len(list(blocks[blk].parameters()))
        if not group:
            out.append([None] * n_params)
            continue
        out.append(
            [sum(per_rank[r][blk][i] for r in group) / len(group) for i in range(n_params)]  # type: ignore[misc]
        )
    return out


def test_every_block_gets_the_mean_over_exactly_its_members() -> None:
    blocks, data = model(), shards(4)
    for depths in [(4, 4, 2, 2), (4, 3, 2, 1), (1, 1, 1, 4), (2, 2, 2, 2)]:
        want = reference(blocks, data, depths)
        blocks.zero_grad()
        report = spb_gradients(blocks, data, depths, F.cross_entropy)
        assert report.members == tuple(members(depths, 4))
        for blk, b in enumerate(blocks):
            for p, w in zip(b.parameters(), want[blk], strict=True):
                if w is None:
                    assert p.grad is None, (depths, blk)
                else:
                    torch.testing.assert_close(p.grad, w, rtol=1e-5, atol=1e-7)


def test_full_depth_everywhere_is_plain_data_parallel_sgd() -> None:
    """Equal shards, every depth L: the synchronised gradient is the whole batch's, and k
    steps of SGD land where k steps of full-batch SGD do."""
    a, b = model(3), model(3)
    data = shards(4, n=6)
    x = torch.cat([s[0] for s in data])
    y = torch.cat([s[1] for s in data])
    opt_a = torch.optim.SGD(a.parameters(), lr=0.1)
    opt_b = torch.optim.SGD(b.parameters(), lr=0.1)
    for _ in range(5):
        opt_a.zero_grad()
        spb_gradients(a, data, (4, 4, 4, 4), F.cross_entropy)
        opt_a.step()
        opt_b.zero_grad()
        F.cross_entropy(run(b, x), y).backward()
        opt_b.step()
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-6)


def test_blocks_before_the_cut_run_without_autograd() -> None:
    blocks = model()
    seen: list[bool] = []
    blocks[0].register_forward_hook(lambda *_: seen.append(torch.is_grad_enabled()))
    spb_gradients(blocks, shards(2), (4, 2), F.cross_entropy)
    assert seen == [True, False]  # rank 0 backpropagates through block 0, rank 1 does not
