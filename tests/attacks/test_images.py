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


def test_faces_are_the_hundred_faces_not_the_background_crops() -> None:
    """scikit-image's LFW subset is 100 faces then 100 non-faces: only the faces are served."""
    from skimage.data import lfw_subset

    faces = LfwFaces().load((1, 25, 25), 100, np.random.default_rng(0))
    assert torch.unique(faces.flatten(1), dim=0).shape[0] == 100
    subset = torch.from_numpy(np.asarray(lfw_subset(), dtype=np.float32)).flatten(1)
    served = {tuple(f.tolist()) for f in faces.flatten(1)}
    assert served == {tuple(f.tolist()) for f in subset[:100]}
    with pytest.raises(ConfigError, match="101 images asked, lfw-faces has 100") as err:
        LfwFaces().load((1, 25, 25), 101, np.random.default_rng(0))
    assert err.value.field == "count"
    with pytest.raises(ConfigError, match="count"):
        Noise().load((1, 4, 4), 0, np.random.default_rng(0))


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
    # labelled draws: the same images as load() for the same generator, with their labels
    x, y = Mnist(SplitParams(split="train")).load_labelled(  # type: ignore[arg-type]
        (1, 28, 28), 5, np.random.default_rng(0)
    )
    assert torch.equal(x, digits) and y.dtype == torch.int64 and y.shape == (5,)
    from phloem.nets.training import load_images

    data = load_images("mnist")
    for img, label in zip(x, y, strict=True):
        (where,) = torch.nonzero((data.x_train == img).flatten(1).all(dim=1), as_tuple=True)
        assert int(data.y_train[where[0]]) == int(label)
    assert LfwFaces().load_labelled((1, 28, 28), 3, np.random.default_rng(0))[1] is None


def _write_images(folder: Path, n: int, seed: int) -> None:
    from PIL import Image

    gen = np.random.default_rng(seed)
    for i in range(n):
        h, w = (int(v) for v in gen.integers(8, 60, size=2))
        mode = "RGB" if i % 2 else "L"
        pixels = gen.integers(0, 256, size=(h, w, 3) if mode == "RGB" else (h, w), dtype=np.uint8)
        sub = folder / f"part{i % 5}"  # nested folders, mixed suffixes
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels, mode).save(sub / f"img{i:03d}.{('png', 'jpg', 'bmp')[i % 3]}")


def test_a_folder_of_500_own_images_with_junk_among_them(tmp_path: Path) -> None:
    """A user's own folder: 500 images of mixed sizes, modes and formats, plus a truncated
    PNG, a text file named .jpg and a README: the junk is skipped and counted by kind."""
    from phloem.attacks.images import FolderParams, ImageFolder

    _write_images(tmp_path, 500, 0)
    (tmp_path / "part1" / "broken.png").write_bytes(
        (tmp_path / "part1" / "img001.jpg").read_bytes()[:40]
    )
    (tmp_path / "notes.jpg").write_text("not an image")
    (tmp_path / "README.txt").write_text("ignored: not an image suffix")
    images = ImageFolder(FolderParams(path=str(tmp_path)))
    with pytest.warns(UserWarning, match="skipped 2 unreadable files"):
        x = images.load((3, 32, 32), 500, np.random.default_rng(1))
    assert x.shape == (500, 3, 32, 32) and float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    grey = images.load((1, 28, 28), 10, np.random.default_rng(2))
    assert grey.shape == (10, 1, 28, 28)
    with pytest.raises(ConfigError, match="501 images asked") as err, pytest.warns(UserWarning):
        images.load((3, 32, 32), 501, np.random.default_rng(1))
    assert err.value.field == "count" and "2 skipped" in str(err.value)


def test_a_missing_empty_or_hostile_folder_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PIL import Image

    from phloem.attacks.images import FolderParams, ImageFolder
    from phloem.core.errors import DataNotFoundError

    with pytest.raises(DataNotFoundError, match="Set `path`"):
        ImageFolder(FolderParams(path=str(tmp_path / "nope"))).load(
            (1, 8, 8), 1, np.random.default_rng(0)
        )
    with pytest.raises(ConfigError, match="holds no image file"):
        ImageFolder(FolderParams(path=str(tmp_path))).load((1, 8, 8), 1, np.random.default_rng(0))
    with pytest.raises(ConfigError, match="path"):
        FolderParams(path="  ")
    # a decompression bomb (here: any image above a lowered pixel limit) is skipped, not opened
    _write_images(tmp_path, 3, 5)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10)
    with (
        pytest.raises(ConfigError, match="0 readable"),
        pytest.warns(UserWarning, match="3 Decompression"),
    ):
        ImageFolder(FolderParams(path=str(tmp_path))).load((1, 8, 8), 1, np.random.default_rng(0))
