"""Where the private and the attacker's images come from: registered image sets.

Every set returns ``(N, C, H, W)`` float32 tensors in ``[0, 1]`` at the victim's input shape
(resized with bilinear interpolation and antialiasing; grey images repeated over colour
channels, colour images averaged for a grey victim), drawn with an injected generator:

- ``lfw-faces``: the 200 faces of LFW that scikit-image ships (``skimage.data.lfw_subset``,
  25x25 grey), the private frames of the demo, which no attacker has queried;
- ``sample-patches``: random crops of the colour photographs bundled with scikit-image and
  scikit-learn (astronaut, coffee, chelsea, rocket, china, flower): other-distribution data that
  needs no download;
- ``noise``: uniform noise (an attacker with no data);
- ``cifar10``, ``mnist``: the shared data sets (``$PHLOEM_DATA_DIR``), train or test split.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from phloem.attacks import _checks
from phloem.attacks.registries import IMAGE_SETS
from phloem.core.errors import ConfigError
from phloem.core.registry import Configured, NoParams

__all__ = [
    "Cifar10",
    "ImageSet",
    "LfwFaces",
    "Mnist",
    "Noise",
    "SamplePatches",
    "Split",
    "fit_shape",
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


def fit_shape(images: torch.Tensor, shape: Shape) -> torch.Tensor:
    """``(N, c, h, w)`` images in [0, 1] at ``shape``: resized, channels matched, clamped."""
    c, h, w = shape
    if images.shape[2:] != (h, w):
        images = F.interpolate(images, size=(h, w), mode="bilinear", antialias=True)
    if images.shape[1] != c:
        grey = images.mean(dim=1, keepdim=True)
        images = grey if c == 1 else grey.expand(-1, c, -1, -1)
    return images.clamp(0.0, 1.0).float().contiguous()


def _take(total: int, count: int, gen: np.random.Generator, what: str) -> np.ndarray:
    _checks.integer("count", count, low=1)
    if count > total:
        raise ConfigError("count", f"{count} images asked, {what} has {total}", [f"1..{total}"])
    return np.sort(gen.choice(total, size=count, replace=False))


@IMAGE_SETS.register
class LfwFaces(ImageSet):
    """The 200 LFW faces bundled with scikit-image."""

    name: ClassVar[str] = "lfw-faces"
    description: ClassVar[str] = "200 LFW faces bundled with scikit-image (25x25 grey)"
    Params: ClassVar[type[NoParams]] = NoParams

    def load(self, shape: Shape, count: int, gen: np.random.Generator) -> torch.Tensor:
        from skimage.data import lfw_subset

        faces = torch.from_numpy(np.asarray(lfw_subset(), dtype=np.float32))[:, None]
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
    """A shared data set, through :func:`phloem.attacks.training.load_images` (the loader the
    victims train from)."""

    Params: ClassVar[type[SplitParams]] = SplitParams

    def load(self, shape: Shape, count: int, gen: np.random.Generator) -> torch.Tensor:
        from phloem.attacks.training import load_images

        data = load_images(self.name)
        x = data.x_train if self.params.split is Split.TRAIN else data.x_test
        idx = _take(len(x), count, gen, f"{self.name} {self.params.split.value}")
        return fit_shape(x[torch.from_numpy(idx)], shape)


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
