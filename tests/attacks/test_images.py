"""Tests for :mod:`phloem.attacks.images`: every set gives images of the asked shape in [0, 1],
reproducibly from the generator, and refuses counts it cannot serve."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from phloem.attacks.images import (
    Cifar10,
    LfwFaces,
    Mnist,
    Noise,
    SamplePatches,
    SplitParams,
    fit_shape,
)
from phloem.attacks.registries import IMAGE_SETS
from phloem.core.errors import ConfigError


def test_the_registry_lists_the_sets() -> None:
    assert {"lfw-faces", "sample-patches", "noise", "cifar10", "mnist"} <= set(IMAGE_SETS.names())


@pytest.mark.parametrize("cls", [LfwFaces, SamplePatches, Noise])
@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 28, 28)])
def test_bundled_sets_give_the_shape_in_unit_range_reproducibly(
    cls: type, shape: tuple[int, int, int]
) -> None:
    a = cls().load(shape, 12, np.random.default_rng(4))
    b = cls().load(shape, 12, np.random.default_rng(4))
    assert a.shape == (12, *shape) and a.dtype == torch.float32
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    assert torch.equal(a, b)
    assert float(a.std()) > 0.05  # real content, not a constant


def test_faces_are_distinct_and_limited_to_the_bundled_two_hundred() -> None:
    faces = LfwFaces().load((1, 25, 25), 200, np.random.default_rng(0))
    assert torch.unique(faces.flatten(1), dim=0).shape[0] == 200
    with pytest.raises(ConfigError, match="201 images asked, lfw-faces has 200") as err:
        LfwFaces().load((1, 25, 25), 201, np.random.default_rng(0))
    assert err.value.field == "count"
    with pytest.raises(ConfigError, match="count"):
        Noise().load((1, 4, 4), 0, np.random.default_rng(0))


def test_fit_shape_matches_channels_and_size() -> None:
    grey = torch.rand(2, 1, 10, 10)
    colour = fit_shape(grey, (3, 5, 5))
    assert colour.shape == (2, 3, 5, 5) and torch.equal(colour[:, 0], colour[:, 2])
    back = fit_shape(torch.rand(2, 3, 8, 8), (1, 8, 8))
    assert back.shape == (2, 1, 8, 8)


def test_split_params_name_the_field() -> None:
    with pytest.raises(ConfigError) as err:
        SplitParams(split="validation")  # type: ignore[arg-type]
    assert err.value.field == "split"


@pytest.mark.data
def test_cifar10_and_mnist_come_from_the_shared_folder(data_file: Callable[[str], Path]) -> None:
    data_file("cifar10_jpeg/cifar10_jpeg.npz")
    data_file("mnist/t10k-images-idx3-ubyte.gz")
    cifar = Cifar10().load((3, 32, 32), 5, np.random.default_rng(0))
    digits = Mnist(SplitParams(split="train")).load((1, 28, 28), 5, np.random.default_rng(0))  # type: ignore[arg-type]
    assert cifar.shape == (5, 3, 32, 32) and digits.shape == (5, 1, 28, 28)
    assert float(cifar.min()) >= 0.0 and float(cifar.max()) <= 1.0
