"""The shared training recipe, image data and loop pieces (:mod:`phloem.nets.training`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from phloem.core.errors import ConfigError, DataNotFoundError
from phloem.nets import training
from phloem.nets.training import ImageData, Schedule, TrainParams, load_images


@pytest.fixture(scope="module")
def digits() -> ImageData:
    return load_images("digits")


# --------------------------------------------------------------------------------------------
# parameters and data


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("epochs", 0),
        ("batch_size", 1.5),
        ("optimizer", "lbfgs"),
        ("lr", 0.0),
        ("lr", float("nan")),
        ("momentum", 1.0),
        ("weight_decay", -1e-4),
        ("schedule", "linear"),
        ("augment", 1),
    ],
)
def test_train_params_are_validated(field: str, value: object) -> None:
    with pytest.raises(ConfigError) as info:
        TrainParams(**{field: value})  # type: ignore[arg-type]
    assert info.value.field == f"train.{field}"


def test_enum_fields_accept_their_names() -> None:
    p = TrainParams(optimizer="adam", schedule="step")  # type: ignore[arg-type]
    assert p.optimizer is training.Optimizer.ADAM and p.schedule is Schedule.STEP


def test_digits_look_like_mnist(digits: ImageData) -> None:
    assert digits.x_train.shape[1:] == (1, 28, 28) and digits.x_train.dtype == torch.float32
    assert len(digits.x_train) + len(digits.x_test) == 1797
    assert float(digits.x_train.min()) == 0.0 and float(digits.x_train.max()) == 1.0
    assert float(digits.x_train[:, :, :4].abs().max()) == 0.0  # MNIST-like empty border
    assert set(digits.y_train.tolist()) == set(range(10))


def test_unknown_image_set_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="cifar10"):
        load_images("imagenet")


@pytest.mark.parametrize("name", ["cifar10", "mnist"])
def test_missing_data_says_how_to_fix(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PHLOEM_DATA_DIR", raising=False)
    with pytest.raises(DataNotFoundError, match="PHLOEM_DATA_DIR"):
        load_images(name)


def test_fingerprint_tracks_the_data(digits: ImageData) -> None:
    other = ImageData(
        "digits", digits.x_train.clone(), digits.y_train, digits.x_test, digits.y_test
    )
    assert other.fingerprint == digits.fingerprint
    other.x_train[0, 0, 10, 10] += 0.5
    changed = ImageData("digits", other.x_train, digits.y_train, digits.x_test, digits.y_test)
    assert changed.fingerprint != digits.fingerprint


@pytest.mark.data
def test_mnist_tensors(data_file: Callable[[str], Path]) -> None:
    data_file("mnist/train-images-idx3-ubyte.gz")
    d = load_images("mnist", limit_train=500, limit_test=100)
    assert d.x_train.shape == (500, 1, 28, 28) and d.x_test.shape == (100, 1, 28, 28)
    assert float(d.x_train.min()) >= 0.0 and float(d.x_train.max()) <= 1.0
    assert d.y_train.dtype == torch.int64


@pytest.mark.data
def test_cifar10_tensors(data_file: Callable[[str], Path]) -> None:
    data_file("cifar10_jpeg/cifar10_jpeg.npz")
    d = load_images("cifar10", limit_train=200, limit_test=50)
    assert d.x_train.shape == (200, 3, 32, 32) and d.x_test.shape == (50, 3, 32, 32)
    assert float(d.x_train.min()) >= 0.0 and float(d.x_train.max()) <= 1.0
    assert torch.bincount(d.y_train).tolist() == [20] * 10  # balanced subset


def test_augment_matches_a_per_image_reference() -> None:
    x = torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    out = training.augment(x, torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    dy = torch.randint(0, 9, (6,), generator=g)
    dx = torch.randint(0, 9, (6,), generator=g)
    flip = torch.rand(6, generator=g) < 0.5
    for i in range(6):
        img = F.pad(x[i], (4, 4, 4, 4))
        if flip[i]:
            img = img.flip(-1)  # flip of the padded image == crop then flip, mirrored offset
            crop = img[:, dy[i] : dy[i] + 8, 8 - dx[i] : 16 - dx[i]]
        else:
            crop = img[:, dy[i] : dy[i] + 8, dx[i] : dx[i] + 8]
        torch.testing.assert_close(out[i], crop, rtol=0, atol=0)


def test_lr_schedules() -> None:
    f = training.lr_factor
    assert f(Schedule.CONSTANT, 50, 100) == 1.0
    assert f(Schedule.COSINE, 0, 100) == 1.0 and f(Schedule.COSINE, 50, 100) == pytest.approx(0.5)
    assert [f(Schedule.STEP, s, 100) for s in (0, 49, 50, 75, 99)] == [1, 1, 0.1, 0.01, 0.01]
