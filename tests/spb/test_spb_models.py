"""Tests for :mod:`phloem.spb.models`: every model's blocks compose to its network, the block
boundaries are where the docs say, and bad keys name the field."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from phloem.core.errors import ConfigError
from phloem.nets.architectures import lenet_layers, resnet20_layers, vgg16_layers
from phloem.nets.layers import BasicBlock
from phloem.spb.config import load_config
from phloem.spb.registries import MODELS


@pytest.mark.parametrize(
    ("name", "count", "residual"),
    [("mlp", 4, 0), ("lenet", 5, 0), ("resnet20", 11, 9), ("vgg16", 15, 0)],
)
def test_blocks_compose_to_the_shared_architecture(name: str, count: int, residual: int) -> None:
    part = MODELS.get(name)()
    blocks = part.blocks()
    assert len(blocks) == count and len(blocks.residual) == residual
    assert all(isinstance(blocks.modules[i], BasicBlock) for i in blocks.residual)
    x = torch.rand(3, *part.input_shape)
    h = x
    for m in blocks.modules:
        h = m(h)
    assert h.shape == (3, 10)
    reference = {"lenet": lenet_layers, "resnet20": resnet20_layers, "vgg16": vgg16_layers}
    if name in reference:  # same layers in the same order: the same parameter shapes
        ours = [p.shape for m in blocks.modules for p in m.parameters()]
        theirs = [p.shape for _, m in reference[name]() for p in m.parameters()]
        if name == "vgg16":
            theirs = [p.shape for _, m in vgg16_layers(32) for p in m.parameters()]
        assert ours == theirs


def test_a_basic_block_is_its_branch_plus_its_shortcut() -> None:
    torch.manual_seed(0)
    block = BasicBlock(4, 8, stride=2).eval()
    x = torch.randn(2, 4, 8, 8)
    assert torch.allclose(block(x), block.combine(block.branch(x), block.shortcut(x)))
    assert block.shortcut(x).shape == (2, 8, 4, 4)


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("model.width=0", "model.width"),
        ("model.width=1.5", "model.width"),
        ("model.hidden=[]", "model.hidden"),
        ("model.channels=[6]", "model.channels"),
    ],
)
def test_bad_model_keys_name_the_field(override: str, field: str) -> None:
    name = {"width": "resnet20", "hidden": "mlp", "channels": "lenet"}[override.split("=")[0][6:]]
    with pytest.raises(ConfigError) as e:
        load_config(None, [f"model.name={name}", override])
    assert field in str(e.value)


def test_every_model_is_a_module_list_of_trainable_blocks() -> None:
    for name in MODELS.names():
        blocks = MODELS.get(name)().blocks()
        assert isinstance(nn.ModuleList(blocks.modules), nn.ModuleList)
        assert sum(p.numel() for m in blocks.modules for p in m.parameters()) > 0
