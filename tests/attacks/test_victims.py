"""The victims: every split point composes back to the whole model; names, params, registry."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from phloem.attacks.registries import VICTIMS
from phloem.attacks.victims import (
    He6ConvParams,
    LeNetParams,
    ResNet20Params,
    SplitModel,
    VggSmallParams,
)
from phloem.core.errors import ConfigError

# small widths keep the forward passes cheap; the structure (and split names) is the same
SMALL = {
    "he6conv": He6ConvParams(width=8, hidden=32),
    "vgg_small": VggSmallParams(width=4),
    "resnet20": ResNet20Params(width=4),
    "lenet": LeNetParams(),
}


def _build(name: str, params: object = None) -> SplitModel:
    torch.manual_seed(0)  # tests only: the library never touches global RNG
    model = VICTIMS.get(name)(params)
    model.eval()
    return model


def test_registry_lists_the_four_victims() -> None:
    assert set(VICTIMS.names()) >= {"he6conv", "vgg_small", "resnet20", "lenet"}
    for entry in VICTIMS.entries():
        assert entry.description


@pytest.mark.parametrize("name", sorted(SMALL))
def test_every_split_composes_to_forward(name: str) -> None:
    model = _build(name, SMALL[name])
    # BN running stats away from (0, 1) so eval-mode batch norm is not the identity
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    x = torch.rand(3, *model.input_shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = model(x)
        assert full.shape == (3, model.num_classes)
        assert len(model.splits) == len(model.net) - 1
        for split in model.splits:
            ir = model.edge(split)(x)
            torch.testing.assert_close(model.cloud(split)(ir), full, rtol=0, atol=0)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_default_params_build_and_run(name: str) -> None:
    model = _build(name)
    with torch.no_grad():
        out = model(torch.rand(2, *model.input_shape))
    assert out.shape == (2, 10)


def test_split_names_follow_the_papers() -> None:
    he = _build("he6conv", SMALL["he6conv"]).splits
    paper = ["conv11", "ReLU11", "conv12", "ReLU12", "pool1", "conv21", "ReLU21", "conv22",
             "ReLU22", "pool2", "conv31", "ReLU31", "conv32", "ReLU32", "pool3"]  # fmt: skip
    assert list(he[: len(paper)]) == paper
    vgg = _build("vgg_small", SMALL["vgg_small"]).splits
    convs = [f"block{b}_conv{k}" for b, n in enumerate((2, 2, 3, 3, 3), 1) for k in range(1, n + 1)]
    assert set(convs) <= set(vgg)
    assert [s for s in vgg if s.endswith("_pool")] == [f"block{b}_pool" for b in range(1, 6)]
    assert vgg[-1] == "fc1"
    res = _build("resnet20", SMALL["resnet20"]).splits
    blocks = [f"block{s}_{b}" for s in (1, 2, 3) for b in (1, 2, 3)]
    assert list(res) == ["stem", *blocks, "pool"]
    lenet = _build("lenet").splits
    assert list(lenet[:7]) == ["conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "fc1"]


def test_ir_shapes_at_known_splits() -> None:
    he = _build("he6conv")
    x = torch.rand(1, 3, 32, 32)
    assert he.edge("ReLU22")(x).shape == (1, 128, 16, 16)  # the paper's favourite split
    assert he.edge("pool3")(x).shape == (1, 128, 4, 4)
    res = _build("resnet20")
    assert res.edge("block2_1")(x).shape == (1, 32, 16, 16)
    assert res.edge("block3_3")(x).shape == (1, 64, 8, 8)
    vgg = _build("vgg_small")
    assert vgg.edge("block3_pool")(x).shape == (1, 128, 4, 4)
    lenet = _build("lenet")
    assert lenet.edge("pool2")(torch.rand(1, 1, 28, 28)).shape == (1, 16, 5, 5)


def test_parameter_counts() -> None:
    def count(name: str) -> int:
        return sum(p.numel() for p in _build(name).parameters())

    assert count("lenet") == 61_706  # LeNet-5's classic 61.7 k
    assert 0.26e6 < count("resnet20") < 0.28e6  # He et al. (2016): 0.27 M


def test_unknown_split_lists_the_splits() -> None:
    model = _build("lenet")
    for bad in ("conv9", "fc3"):  # fc3 is the output layer: not a split point
        with pytest.raises(ConfigError) as info:
            model.edge(bad)
        assert info.value.field == "victim.split"
        assert info.value.allowed == model.splits
        assert "pool2" in str(info.value)
    with pytest.raises(ConfigError):
        model.cloud("nope")


def test_unknown_victim_lists_the_names() -> None:
    with pytest.raises(ConfigError, match="resnet20"):
        VICTIMS.get("resnet56")


@pytest.mark.parametrize(
    ("cls", "field", "value"),
    [
        (He6ConvParams, "width", 0),
        (He6ConvParams, "hidden", 2.5),
        (He6ConvParams, "normalize", "yes"),
        (VggSmallParams, "width", -1),
        (VggSmallParams, "width", True),
        (ResNet20Params, "width", "16"),
        (LeNetParams, "channels", (6,)),
        (LeNetParams, "channels", (6, 0)),
    ],
)
def test_params_are_validated(cls: type, field: str, value: object) -> None:
    with pytest.raises(ConfigError) as info:
        cls(**{field: value})
    assert info.value.field == f"victim.{field}"


def test_params_are_frozen_and_typed() -> None:
    p = VggSmallParams()
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.width = 64  # type: ignore[misc]
    with pytest.raises(TypeError):
        VICTIMS.get("vgg_small")(LeNetParams())


def test_normalisation_is_inside_the_first_split() -> None:
    on = _build("lenet", LeNetParams(normalize=True))
    off = _build("lenet", LeNetParams(normalize=False))
    assert on.splits == off.splits
    assert len(on.state_dict()) == len(off.state_dict()) + 2  # mean and std buffers
