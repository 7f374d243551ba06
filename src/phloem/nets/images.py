"""Image files as tensors: reading one file safely, fitting images to a model's input shape,
and a user's own labelled folder (one subfolder per class).

Shared by :mod:`phloem.attacks` (a folder of private or auxiliary images) and
:mod:`phloem.nets.training` (``load_images("folder", ...)``, what ``phloem spb train`` reads
with ``[data] name = "folder"``).
"""

from __future__ import annotations

import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from phloem.core.errors import ConfigError, DataNotFoundError

__all__ = [
    "IMAGE_SUFFIXES",
    "fit_shape",
    "image_files",
    "read_image",
    "read_labelled",
    "unreadable_errors",
]

Shape = tuple[int, int, int]

#: the file names a folder of images is searched for
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def unreadable_errors() -> tuple[type[BaseException], ...]:
    """What :func:`read_image` raises for a file it cannot read: PIL's error kinds for a
    damaged, foreign or oversized file (the decompression-bomb warning made an error)."""
    from PIL import Image

    return (OSError, ValueError, SyntaxError, Warning, Image.DecompressionBombError)


def read_image(file: Path, channels: int) -> torch.Tensor:
    """One image file as ``(1, C, H, W)`` in [0, 1]; raises on anything unreadable (a
    decompression bomb included)."""
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)  # huge: refuse
        with Image.open(file) as img:
            img.load()
            pixels = np.asarray(img.convert("RGB" if channels == 3 else "L"), dtype=np.float32)
    x = torch.from_numpy(pixels / 255.0)
    return (x[None, None] if x.ndim == 2 else x.permute(2, 0, 1)[None]).contiguous()


def fit_shape(images: torch.Tensor, shape: Shape) -> torch.Tensor:
    """``(N, c, h, w)`` images in [0, 1] at ``shape``: resized, channels matched, clamped."""
    c, h, w = shape
    if images.shape[2:] != (h, w):
        images = F.interpolate(images, size=(h, w), mode="bilinear", antialias=True)
    if images.shape[1] != c:
        grey = images.mean(dim=1, keepdim=True)
        images = grey if c == 1 else grey.expand(-1, c, -1, -1)
    return images.clamp(0.0, 1.0).float().contiguous()


def image_files(root: Path) -> list[Path]:
    """The image files under ``root`` (recursively), sorted."""
    return sorted(f for f in root.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)


def read_labelled(
    root: Path, shape: Shape, *, limit: int | None = None
) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...], Counter[str]]:
    """A labelled folder: one subfolder per class (``root/cat/*.png``, ``root/dog/*.jpg``),
    every image fitted to ``shape``.

    Returns the images ``(N, C, H, W)`` in [0, 1], the labels (the class's index in sorted
    subfolder order), the class names, and the unreadable files skipped, counted by kind.

    Raises
    ------
    DataNotFoundError
        When ``root`` is not a folder.
    ConfigError
        When it has fewer than two class subfolders holding readable images.
    """
    if not root.is_dir():
        raise DataNotFoundError(
            "the folder of labelled images",
            [root],
            "Set [data] path to a folder with one subfolder of images per class "
            f"({', '.join(IMAGE_SUFFIXES)}).",
        )
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and image_files(d))
    if len(classes) < 2:
        raise ConfigError(
            "data.path",
            f"{root} has {len(classes)} class subfolder(s) with images; a classifier needs at "
            "least two (root/<class>/<image>)",
        )
    xs: list[torch.Tensor] = []
    ys: list[int] = []
    skipped: Counter[str] = Counter()
    unreadable = unreadable_errors()
    for label, name in enumerate(classes):
        for f in image_files(root / name):
            if limit is not None and len(xs) >= limit:
                break
            try:
                xs.append(fit_shape(read_image(f, shape[0]), shape))
            except unreadable as exc:
                skipped[type(exc).__name__] += 1
                continue
            ys.append(label)
    if len(set(ys)) < 2:
        raise ConfigError("data.path", f"{root}: fewer than two classes have a readable image")
    return torch.cat(xs), torch.tensor(ys, dtype=torch.int64), tuple(classes), skipped
