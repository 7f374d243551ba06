"""DropBP (:mod:`phloem.spb.plans.dropbp`) and dropped blocks in the step: a dropped residual
block gets no gradient and passes the gradient through its identity path only (checked against
a model whose branch output is detached), every rank draws the same blocks, and the meter
counts no backward work for the dropped branch."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from phloem.core.errors import ConfigError
from phloem.spb.accounting import measure_step
from phloem.spb.config import load_config
from phloem.spb.plans.dropbp import DropBP, DropBPParams
from phloem.spb.registries import MODELS
from phloem.spb.virtual import local_gradients, spb_gradients


def _blocks() -> list[torch.nn.Module]:
    torch.manual_seed(0)
    return list(MODELS.get("resnet20")(MODELS.get("resnet20").Params(width=4)).blocks().modules)


def test_a_dropped_block_passes_the_gradient_through_its_shortcut_only() -> None:
    blocks = _blocks()
    for b in blocks:
        b.eval()  # batch norm on running statistics: the reference sees the same arithmetic
    x, y = torch.rand(4, 3, 32, 32), torch.randint(0, 10, (4,))
    dropped = frozenset({2, 5})
    _, grads = local_gradients(blocks, x, y, len(blocks), F.cross_entropy, dropped)
    # reference: the plain network with the dropped blocks' branch outputs detached
    h = x
    for i, b in enumerate(blocks):
        h = b.combine(b.branch(h).detach(), b.shortcut(h)) if i in dropped else b(h)  # type: ignore[operator]
    F.cross_entropy(h, y).backward()
    for i, b in enumerate(blocks):
        if i in dropped:
            assert grads[i] is None
            continue
        got = grads[i]
        assert got is not None
        for g, p in zip(got, [q for q in b.parameters() if q.requires_grad], strict=True):
            want = p.grad if p.grad is not None else torch.zeros_like(p)
            assert torch.allclose(g, want, atol=1e-6)


def test_the_draw_is_a_function_of_seed_and_step_and_only_of_residual_blocks() -> None:
    plan = DropBP(DropBPParams(rate=0.5))
    residual = frozenset(range(1, 10))
    a = [plan.dropped(11, residual, step, seed=3) for step in range(200)]
    assert a == [plan.dropped(11, residual, step, seed=3) for step in range(200)]
    assert all(d <= residual for d in a)
    share = sum(len(d) for d in a) / (200 * 9)
    assert 0.4 < share < 0.6
    assert DropBP(DropBPParams(rate=0.0)).dropped(11, residual, 0, 0) == frozenset()
    assert DropBP(DropBPParams(rate=1.0)).dropped(11, residual, 0, 0) == residual


def test_dropped_blocks_cost_no_backward_work_and_get_no_update() -> None:
    blocks = _blocks()
    x, y = torch.rand(4, 3, 32, 32), torch.randint(0, 10, (4,))
    full = measure_step(blocks, x, y, len(blocks), F.cross_entropy)
    some = measure_step(blocks, x, y, len(blocks), F.cross_entropy, frozenset({1, 2, 3}))
    assert some.backward_flops < full.backward_flops
    assert some.saved_bytes < full.saved_bytes
    shards = [(x[:2], y[:2]), (x[2:], y[2:])]
    spb_gradients(blocks, shards, [11, 11], F.cross_entropy, frozenset({4}))
    assert all(p.grad is None for p in blocks[4].parameters())
    assert all(p.grad is not None for p in blocks[5].parameters())


def test_dropbp_on_a_model_without_residual_blocks_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"plan\.name"):
        load_config(None, ["model.name=vgg16", "plan.name=dropbp"])
    with pytest.raises(ConfigError, match="rate"):
        load_config(None, ["model.name=resnet20", "plan.name=dropbp", "plan.rate=1.5"])
