"""Tests for :class:`phloem.spb.wrapper.SPB`."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from phloem.core.errors import ConfigError
from phloem.spb.wrapper import SPB


def net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 6), nn.ReLU(), nn.Linear(6, 3))


def test_full_depth_is_the_plain_model_and_a_cut_stops_the_gradient() -> None:
    model = net()
    spb = SPB.from_sequential(model)
    x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
    F.cross_entropy(spb(x), y).backward()
    plain = net()
    F.cross_entropy(plain(x), y).backward()
    for a, b in zip(spb.parameters(), plain.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad)
    spb.zero_grad(set_to_none=True)
    spb.depth = 2  # the last ReLU and Linear
    out = spb(x)
    F.cross_entropy(out, y).backward()
    grads = [p.grad is not None for p in spb.parameters()]
    assert grads == [False, False, False, False, True, True]
    torch.testing.assert_close(out, model(x))  # the same function, only the graph is shorter


def test_eval_mode_runs_every_block_and_depth_is_validated() -> None:
    spb = SPB.from_sequential(net(), depth=1).eval()
    seen: list[bool] = []
    spb.blocks[0].register_forward_hook(lambda *_: seen.append(torch.is_grad_enabled()))
    spb(torch.randn(2, 4))
    assert seen == [True]
    for bad in (0, 6, 2.5, True):
        with pytest.raises(ConfigError) as err:
            spb.depth = bad  # type: ignore[assignment]
        assert err.value.field == "spb.depth"
    with pytest.raises(ValueError, match="at least one block"):
        SPB([])
