"""What the torch-based areas share for training image classifiers: the recipe, the data, and
the small pieces of a training loop.

- :class:`TrainParams` (a ``[train]`` section: epochs, batch size, :class:`Optimizer`, learning
  rate and :class:`Schedule`, momentum, weight decay, augmentation), validated on construction,
  each error naming ``train.<field>``; reading it imports no torch.
- :func:`load_images`: CIFAR-10, MNIST (from ``$PHLOEM_DATA_DIR`` through
  :mod:`phloem.data.loaders`) and scikit-learn's digits (upscaled to MNIST's shape, no file at
  all) as float tensors in [0, 1] (:class:`ImageData`).
- :func:`init_weights` (every weight from an injected generator), :func:`augment` (random crops
  and flips), :func:`lr_factor`, :func:`make_optimizer` and :func:`evaluate`.

Used by :mod:`phloem.attacks` (victims) and :mod:`phloem.spb` (data-parallel training).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from phloem.core.errors import ConfigError

if TYPE_CHECKING:
    import torch

__all__ = [
    "TRAINING_SETS",
    "ImageData",
    "Optimizer",
    "Schedule",
    "TrainParams",
    "augment",
    "evaluate",
    "init_weights",
    "load_images",
    "lr_factor",
    "make_optimizer",
]

#: the data sets :func:`load_images` knows
TRAINING_SETS = ("cifar10", "mnist", "digits", "folder")


class Optimizer(StrEnum):
    """The optimiser of a training run."""

    SGD = "sgd"
    """SGD with (heavy-ball) momentum and L2 weight decay."""
    ADAM = "adam"
    """Adam (Kingma & Ba, 2015) with L2 weight decay."""


class Schedule(StrEnum):
    """How the learning rate changes over the run (updated every step)."""

    CONSTANT = "constant"
    COSINE = "cosine"
    """``lr * (1 + cos(pi t / T)) / 2`` (Loshchilov & Hutter, 2017, without restarts)."""
    STEP = "step"
    """``lr``, then ``lr / 10`` after half the steps, ``lr / 100`` after three quarters."""


@dataclass(frozen=True)
class TrainParams:
    """How a model is trained.

    Attributes
    ----------
    epochs
        Passes over the training set.
    batch_size
        Images per step (the last, smaller batch of an epoch is kept).
    optimizer
        :class:`Optimizer`.
    lr
        Peak learning rate.
    momentum
        SGD momentum (ignored by Adam).
    weight_decay
        L2 penalty coefficient.
    schedule
        :class:`Schedule` of the learning rate.
    augment
        Random crops (4-pixel zero padding) and horizontal flips of each training batch: the
        standard CIFAR-10 augmentation; leave off for digits.

    Raises
    ------
    ConfigError
        Naming the field (``train.<field>``), for a value out of range or an unknown name.
    """

    epochs: int = 10
    batch_size: int = 128
    optimizer: Optimizer = Optimizer.SGD
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: Schedule = Schedule.COSINE
    augment: bool = False

    def __post_init__(self) -> None:
        for name, enum in (("optimizer", Optimizer), ("schedule", Schedule)):
            value = getattr(self, name)
            try:
                object.__setattr__(self, name, enum(value))
            except ValueError:
                raise ConfigError(
                    f"train.{name}", f"unknown {value!r}", [m.value for m in enum]
                ) from None
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"train.{name}", f"{value!r}; needs an int >= 1")
        for name, low_open in (("lr", True), ("momentum", False), ("weight_decay", False)):
            value = getattr(self, name)
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            ok = ok and math.isfinite(value) and (value > 0 if low_open else value >= 0)
            if not ok or (name == "momentum" and value >= 1):
                span = "> 0" if low_open else ("in [0, 1)" if name == "momentum" else ">= 0")
                raise ConfigError(f"train.{name}", f"{value!r}; needs a number {span}")
        if not isinstance(self.augment, bool):
            raise ConfigError("train.augment", f"{self.augment!r}", [True, False])


# --------------------------------------------------------------------------------------------
# data


@dataclass(frozen=True, eq=False)
class ImageData:
    """Train and test images of one data set, as float tensors.

    Attributes
    ----------
    name
        The data set (``"cifar10"``, ``"mnist"``, ``"digits"``).
    x_train, x_test
        ``(N, C, H, W)`` ``float32`` in [0, 1].
    y_train, y_test
        ``(N,)`` ``int64`` class labels.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    @cached_property
    def fingerprint(self) -> str:
        """A hash of the shapes and bytes of all four tensors (what the weights depend on)."""
        h = hashlib.blake2b(digest_size=16)
        for t in (self.x_train, self.y_train, self.x_test, self.y_test):
            arr = t.detach().cpu().contiguous().numpy()
            h.update(f"{arr.dtype}{arr.shape}".encode())
            h.update(arr.data)
        return h.hexdigest()


def load_images(
    name: str,
    *,
    path: str | Path | None = None,
    limit_train: int | None = None,
    limit_test: int | None = None,
    seed: int = 0,
    shape: tuple[int, int, int] | None = None,
) -> ImageData:
    """An image set as tensors in [0, 1].

    Parameters
    ----------
    name
        ``"cifar10"`` (``(3, 32, 32)``, the shared JPEG npz, decode cached by
        :func:`phloem.data.load_cifar10`), ``"mnist"`` (``(1, 28, 28)``) or ``"digits"``
        (scikit-learn's 8x8 digits bilinearly upscaled to ``(1, 28, 28)``: MNIST's shape with no
        data folder; 1,437 train and 360 test images), or ``"folder"``: your own labelled
        images under ``path``, one subfolder per class (``path/<class>/<image>``), or
        ``path/train/<class>/...`` and ``path/test/<class>/...`` for a split of your own
        (otherwise a seeded 20% of each class is the test set); every image is fitted to
        ``shape``, and unreadable files are skipped with a warning counting them by kind.
    path
        Where the files are, instead of ``$PHLOEM_DATA_DIR`` (not used by ``digits``; the
        folder itself for ``folder``).
    limit_train, limit_test
        Keep at most this many images of each split (CIFAR-10: balanced over classes; MNIST:
        the first ones); ``None`` keeps all.
    seed
        Draws the ``digits`` and ``folder`` train/test splits (the others have fixed splits).
    shape
        ``(C, H, W)`` the images are fitted to (``folder`` only, where it is required).

    Raises
    ------
    ConfigError
        For an unknown ``name`` (listing :data:`TRAINING_SETS`) or a bad limit.
    DataNotFoundError
        When the files are missing: it says where it looked and how to set ``PHLOEM_DATA_DIR``.
    """
    import numpy as np
    import torch

    from phloem.data import loaders

    for field, limit in (("limit_train", limit_train), ("limit_test", limit_test)):
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or limit < 1
        ):
            raise ConfigError(field, f"{limit!r}; needs an int >= 1 or None")
    if name == "folder":
        return _load_folder(path, shape, limit_train, limit_test, seed)
    if name == "cifar10":
        tt = loaders.load_cifar10(path, limit_train=limit_train, limit_test=limit_test)
    elif name == "mnist":
        tt = loaders.load_mnist(path)
    elif name == "digits":
        tt = loaders.load_digits(0.2, rng=np.random.default_rng(seed))
    else:
        raise ConfigError("data.name", f"unknown image set {name!r}", TRAINING_SETS)
    xs, ys = [], []
    for split, limit in ((tt.train, limit_train), (tt.test, limit_test)):
        x = torch.from_numpy(np.ascontiguousarray(split.x[:limit], dtype=np.float32))
        if name == "digits":
            x = _upscale_digits(x)
        xs.append(x)
        ys.append(torch.from_numpy(np.asarray(split.y[:limit], dtype=np.int64)))
    return ImageData(name, xs[0], ys[0], xs[1], ys[1])


def _load_folder(
    path: str | Path | None,
    shape: tuple[int, int, int] | None,
    limit_train: int | None,
    limit_test: int | None,
    seed: int,
) -> ImageData:
    import warnings

    import numpy as np
    import torch

    from phloem.nets.images import read_labelled

    if path is None or not str(path).strip():
        raise ConfigError("data.path", "the folder of your labelled images is not set")
    if shape is None:
        raise ConfigError("data.name", "'folder' needs the model's input shape to fit images to")
    root = Path(path).expanduser()
    if (root / "train").is_dir() and (root / "test").is_dir():
        x, y, classes, skipped = read_labelled(root / "train", shape)
        xt, yt, test_classes, more = read_labelled(root / "test", shape)
        skipped.update(more)
        if test_classes != classes:
            raise ConfigError(
                "data.path",
                f"{root}: train has classes {list(classes)}, test {list(test_classes)}",
            )
    else:
        xs, ys, classes, skipped = read_labelled(root, shape)
        rng = np.random.default_rng(seed)
        test = np.zeros(len(ys), dtype=bool)
        for c in range(len(classes)):
            idx = np.flatnonzero(ys.numpy() == c)
            if len(idx) > 1:  # a class with one image trains on it
                test[rng.choice(idx, size=max(1, round(0.2 * len(idx))), replace=False)] = True
        keep = torch.from_numpy(~test)
        x, y, xt, yt = xs[keep], ys[keep], xs[~keep], ys[~keep]
    if skipped:
        kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(skipped.items()))
        warnings.warn(
            f"{root}: skipped {sum(skipped.values())} unreadable files ({kinds})", stacklevel=3
        )
    if len(yt) == 0:
        raise ConfigError("data.path", f"{root}: no image left for a test set")
    return ImageData("folder", x[:limit_train], y[:limit_train], xt[:limit_test], yt[:limit_test])


def _upscale_digits(flat: torch.Tensor) -> torch.Tensor:
    import torch.nn.functional as F

    # 8x8 -> 20x20 inside a 4-pixel border, like MNIST's digits inside their 28x28 frame
    small = flat.reshape(-1, 1, 8, 8)
    big = F.interpolate(small, size=(20, 20), mode="bilinear", align_corners=False)
    return F.pad(big, (4, 4, 4, 4)).clamp_(0.0, 1.0)


# --------------------------------------------------------------------------------------------
# training


def init_weights(model: torch.nn.Module, gen: torch.Generator) -> None:
    """Re-draw every conv and linear layer's weights from ``gen`` (PyTorch's default scheme:
    Kaiming-uniform weights, uniform biases in ``±1/sqrt(fan_in)``); batch norm to 1 and 0.

    Models draw their initial weights from torch's global generator when built; this makes
    them a function of the injected one instead.
    """
    import torch
    from torch import nn

    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=gen)
                if m.bias is not None:
                    bound = 1.0 / math.sqrt(m.weight[0].numel())
                    nn.init.uniform_(m.bias, -bound, bound, generator=gen)
            elif isinstance(m, nn.BatchNorm2d):
                m.reset_parameters()
                m.reset_running_stats()


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random 4-pixel-padded crops and horizontal flips, one draw per image, vectorised."""
    import torch
    import torch.nn.functional as F

    n, c, h, w = x.shape
    pad = 4
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    flip = torch.rand(n, generator=gen) < 0.5
    rows = dy[:, None] + torch.arange(h)[None, :]
    cols = torch.arange(w)[None, :].expand(n, w)
    cols = torch.where(flip[:, None], cols.flip(1), cols) + dx[:, None]
    idx_n = torch.arange(n)[:, None, None, None]
    idx_c = torch.arange(c)[None, :, None, None]
    return padded[idx_n, idx_c, rows[:, None, :, None], cols[:, None, None, :]]


def lr_factor(schedule: Schedule, step: int, total: int) -> float:
    """The learning rate's multiplier at ``step`` of ``total`` under ``schedule``."""
    t = step / max(total, 1)
    if schedule is Schedule.COSINE:
        return 0.5 * (1.0 + math.cos(math.pi * t))
    if schedule is Schedule.STEP:
        return 1.0 if t < 0.5 else (0.1 if t < 0.75 else 0.01)
    return 1.0


def make_optimizer(model: torch.nn.Module, p: TrainParams) -> torch.optim.Optimizer:
    import torch

    if p.optimizer is Optimizer.ADAM:
        return torch.optim.Adam(model.parameters(), lr=p.lr, weight_decay=p.weight_decay)
    return torch.optim.SGD(
        model.parameters(), lr=p.lr, momentum=p.momentum, weight_decay=p.weight_decay
    )


def evaluate(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000
) -> float:
    """Top-1 accuracy of ``model`` (in eval mode, no gradients) on ``(x, y)``."""
    import torch

    was_training = model.training
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(y), batch_size):
            pred = model(x[i : i + batch_size]).argmax(dim=1)
            correct += int((pred == y[i : i + batch_size]).sum())
    model.train(was_training)
    return correct / max(len(y), 1)
