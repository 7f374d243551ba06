"""Where the private and the attacker's images come from: registered image sets.

Every set returns ``(N, C, H, W)`` float32 tensors in ``[0, 1]`` at the victim's input shape
(resized with bilinear interpolation and antialiasing; grey images repeated over colour
channels, colour images averaged for a grey victim), drawn with an injected generator:

- ``lfw-faces``: the 100 faces of LFW that scikit-image ships (the first half of
  ``skimage.data.lfw_subset``, whose second half is background crops; 25x25 grey), the private
  frames of the demo, which no attacker has queried;
- ``sample-patches``: random crops of the colour photographs bundled with scikit-image and
  scikit-learn (astronaut, coffee, chelsea, rocket, china, flower): other-distribution data that
  needs no download;
- ``noise``: uniform noise (an attacker with no data);
- ``cifar10``, ``mnist``: the shared data sets (``$PHLOEM_DATA_DIR``), train or test split;
- ``folder``: your own images, every PNG / JPEG / BMP / GIF / TIFF / WebP file under a folder;
  a file that cannot be read (corrupt, truncated, not an image, or so large it could be a
  decompression bomb) is skipped and counted by kind, with one warning.
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from phloem.attacks.registries import IMAGE_SETS
from phloem.core import checks as _checks
from phloem.core.errors import ConfigError, DataNotFoundError
from phloem.core.registry import Configured, NoParams
from phloem.nets.images import (
    IMAGE_SUFFIXES,
    fit_shape,
    image_files,
    read_image,
    unreadable_errors,
)

__all__ = [
    "Cifar10",
    "ImageFolder",
    "ImageSet",
    "LfwFaces",
    "Mnist",
    "Noise",
    "SamplePatches",
    "Split",
]

Shape = tuple[int, int, int]


class ImageSet(Configured, ABC):
    """A source of images in ``[0, 1]``."""

    kind: ClassVar[str] = "image set"

    @abstractmethod
    def load(self, shape: Shape, count: int, gen: np.random.Generator) -> torch.Tensor:
        """``count`` images of ``shape`` ``(C, H, W)``, drawn with ``gen``.

        Raises
        ------
        ConfigError
            Naming ``count`` when the set has fewer images.
        """

    def load_labelled(
        self, shape: Shape, count: int, gen: np.random.Generator
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The images :meth:`load` draws, with their class labels (``(count,)`` ``int64``)
        where the set has them, else ``None``."""
        return self.load(shape, count, gen), None


def _take(total: int, count: int, gen: np.random.Generator, what: str) -> np.ndarray:
    _checks.integer("count", count, low=1)
    if count > total:
        raise ConfigError("count", f"{count} images asked, {what} has {total}", [f"1..{total}"])
    return np.sort(gen.choice(total, size=count, replace=False))


#: faces in scikit-image's LFW subset (the first 100 of its 200 images)
FACES = 100


@IMAGE_SETS.register
class LfwFaces(ImageSet):
    """The 100 LFW faces bundled with scikit-image (``skimage.data.lfw_subset``: its first 100
    images are faces, the other 100 background crops, which this set leaves out)."""

    name: ClassVar[str] = "lfw-faces"
    description: ClassVar[str] = "100 LFW faces bundled with scikit-image (25x25 grey)"
    Params: ClassVar[type[NoParams]] = NoParams

    def load(self, shape: Shape, count: int, gen: np.random.Generator) -> torch.Tensor:
        from skimage.data import lfw_subset

        subset = np.asarray(lfw_subset(), dtype=np.float32)[:FACES]  # the rest are not faces
        faces = torch.from_numpy(subset)[:, None]
        return fit_shape(faces[_take(len(faces), count, gen, "lfw-faces")], shape)


def _photographs() -> list[np.ndarray]:
    from skimage import data
    from sklearn.datasets import load_sample_images

    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    return photos + list(load_sample_images().images)


@IMAGE_SETS.register
class SamplePatches(ImageSet):
    """Random square crops of the bundled photographs (a side of 1/8 to 1/2 of the shorter
    edge), one photograph drawn per crop."""

    name: ClassVar[str] = "sample-patches"
    description: ClassVar[str] = "random crops of the photographs bundled with skimage/sklearn"
    Params: ClassVar[type[NoParams]] = NoParams

    def load(self, shape: Shape, count: int, gen: np.random.Generator) -> torch.Tensor:
        _checks.integer("count", count, low=1)
        photos = _photographs()
        out = []
        for _ in range(count):
            img = photos[int(gen.integers(len(photos)))]
            short = min(img.shape[:2])
            side = int(gen.integers(short // 8, short // 2 + 1))
            top = int(gen.integers(0, img.shape[0] - side + 1))
            left = int(gen.integers(0, img.shape[1] - side + 1))
            crop = torch.from_numpy(img[top : top + side, left : left + side].copy())
            patch = crop.permute(2, 0, 1)[None].float() / 255.0
            out.append(fit_shape(patch, shape))
        return torch.cat(out)


@IMAGE_SETS.register
class Noise(ImageSet):
    """Uniform noise in [0, 1]: an attacker without data."""

    name: ClassVar[str] = "noise"
    description: ClassVar[str] = "uniform noise (an attacker with no data)"
    Params: ClassVar[type[NoParams]] = NoParams

    def load(self, shape: Shape, count: int, gen: np.random.Generator) -> torch.Tensor:
        _checks.integer("count", count, low=1)
        return torch.from_numpy(gen.random((count, *shape), dtype=np.float32))


class Split(StrEnum):
    """Which split of a shared data set."""

    TRAIN = "train"
    TEST = "test"


@dataclass(frozen=True)
class SplitParams:
    """``split``: the data set's ``train`` or ``test`` images."""

    split: Split = Split.TEST

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "split", Split(self.split))
        except ValueError:
            raise ConfigError(
                "split", f"unknown {self.split!r}", [s.value for s in Split]
            ) from None


class _Shared(ImageSet):
    """A shared data set, through :func:`phloem.nets.training.load_images` (the loader the
    victims train from)."""

    Params: ClassVar[type[SplitParams]] = SplitParams

    def load(self, shape: Shape, count: int, gen: np.random.Generator) -> torch.Tensor:
        return self.load_labelled(shape, count, gen)[0]

    def load_labelled(
        self, shape: Shape, count: int, gen: np.random.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        from phloem.nets.training import load_images

        data = load_images(self.name)
        train = self.params.split is Split.TRAIN
        x, y = (data.x_train, data.y_train) if train else (data.x_test, data.y_test)
        idx = torch.from_numpy(_take(len(x), count, gen, f"{self.name} {self.params.split.value}"))
        return fit_shape(x[idx], shape), y[idx]


@IMAGE_SETS.register
class Cifar10(_Shared):
    """CIFAR-10 (the shared JPEG re-encodes)."""

    name: ClassVar[str] = "cifar10"
    description: ClassVar[str] = "CIFAR-10 from the shared data folder (32x32 colour)"


@IMAGE_SETS.register
class Mnist(_Shared):
    """MNIST."""

    name: ClassVar[str] = "mnist"
    description: ClassVar[str] = "MNIST from the shared data folder (28x28 grey)"


#: the file suffixes ``folder`` reads


@dataclass(frozen=True)
class FolderParams:
    """``path``: the folder (searched recursively)."""

    path: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.path, str) or not self.path.strip():
            raise ConfigError("path", "the folder of your images is not set", ["a folder path"])


@IMAGE_SETS.register
class ImageFolder(ImageSet):
    """Your own images: ``count`` files drawn at random from a folder, resized to the victim's
    input; unreadable files skipped and counted by kind."""

    name: ClassVar[str] = "folder"
    description: ClassVar[str] = "your own images: the PNG/JPEG/... files under a folder"
    Params: ClassVar[type[FolderParams]] = FolderParams

    def load(self, shape: Shape, count: int, gen: np.random.Generator) -> torch.Tensor:
        _checks.integer("count", count, low=1)
        root = Path(self.params.path).expanduser()
        if not root.is_dir():
            raise DataNotFoundError(
                "the folder of images",
                [root],
                f"Set `path` in [private] or [aux] to a folder of {', '.join(IMAGE_SUFFIXES)} "
                "files.",
            )
        files = image_files(root)
        if not files:
            raise ConfigError("path", f"{root} holds no image file", list(IMAGE_SUFFIXES))
        unreadable = unreadable_errors()
        images: list[torch.Tensor] = []
        skipped: Counter[str] = Counter()
        for i in gen.permutation(len(files)):
            if len(images) == count:
                break
            try:
                images.append(fit_shape(read_image(files[int(i)], shape[0]), shape))
            except unreadable as exc:  # PIL's error kinds; the bomb warning made an error
                skipped[type(exc).__name__] += 1
        kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(skipped.items()))
        if skipped:
            warnings.warn(
                f"{root}: skipped {sum(skipped.values())} unreadable files ({kinds})", stacklevel=2
            )
        if len(images) < count:
            raise ConfigError(
                "count",
                f"{count} images asked, {root} has {len(images)} readable"
                + (f" ({sum(skipped.values())} skipped: {kinds})" if skipped else ""),
                [f"1..{len(images)}"] if images else None,
            )
        return torch.cat(images)
