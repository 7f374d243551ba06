"""Train a victim, measure its test accuracy, and cache the trained weights.

Attacks need trained victims, and training a CIFAR-10 network on a CPU takes minutes to hours,
so :func:`trained_victim` trains once and caches the result: the ``state_dict`` in a ``.pt``
file (read back with ``torch.load(weights_only=True)``, so a cache file cannot run code) and,
beside it, a JSON record of everything the weights depend on (victim name and parameters,
training parameters, seed, a fingerprint of the data, the defence whose penalty shaped them)
plus the test accuracy. The file name is a hash of that record, so changing any of it trains
anew; a damaged or mismatched entry is retrained with a warning, never a traceback.

Training is plain cross-entropy (SGD with momentum or Adam; constant, cosine or step learning
rate; optional random-crop-and-flip augmentation), with every random draw (initial weights,
shuffling, augmentation) taken from an injected :class:`torch.Generator`. A defence that must
shape the victim during training (a NoPeek-style penalty, ``Defence.trains_victim``) plugs in
through ``defence`` and ``split``: its ``penalty(x, ir)`` at the split is added to the loss.

The recipe (:class:`~phloem.nets.training.TrainParams`), the image data
(:func:`~phloem.nets.training.load_images`) and the loop's small pieces live in
:mod:`phloem.nets.training`, shared with :mod:`phloem.spb`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from phloem.core.errors import ConfigError
from phloem.nets.training import (
    ImageData,
    TrainParams,
    augment,
    evaluate,
    init_weights,
    lr_factor,
    make_optimizer,
)

if TYPE_CHECKING:
    import torch

    from phloem.attacks.defences.base import Defence
    from phloem.attacks.victims.base import SplitModel

__all__ = [
    "TrainedVictim",
    "finetune_cloud",
    "train",
    "trained_victim",
    "victim_cache_dir",
]

_CACHE_VERSION = 1


def train(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    params: TrainParams,
    gen: torch.Generator,
    *,
    defence: Defence | None = None,
    split: str | None = None,
    on_epoch: Callable[[int, float], None] | None = None,
) -> list[float]:
    """Train ``model`` in place with cross-entropy (plus a defence's penalty).

    Parameters
    ----------
    model
        The victim (a :class:`~phloem.attacks.victims.base.SplitModel` when ``defence`` is
        given); its current weights are the starting point (see :func:`init_weights`).
    x, y
        Training images ``(N, C, H, W)`` in [0, 1] and labels.
    params
        The recipe.
    gen
        Every random draw: shuffling and augmentation.
    defence, split
        When given, each step computes ``ir = model.edge(split)(x)`` and adds
        ``defence.penalty(x, ir)`` (if not ``None``) to the loss.
    on_epoch
        Called with ``(epoch, mean training loss)`` after each epoch.

    Returns
    -------
    list of float
        The mean training loss of each epoch.

    Raises
    ------
    ConfigError
        When ``defence`` is given without a ``split`` (or with an unknown one).
    """
    import torch
    import torch.nn.functional as F

    parts = None
    if defence is not None:
        from phloem.attacks.victims.base import SplitModel

        if not isinstance(model, SplitModel):
            raise TypeError(f"a training-time defence needs a SplitModel, got {type(model)}")
        if split is None:
            raise ConfigError(
                "victim.split", "a training-time defence needs the split point", model.splits
            )
        parts = (model.edge(split), model.cloud(split))
    opt = make_optimizer(model, params)
    n = len(y)
    steps_per_epoch = math.ceil(n / params.batch_size)
    total = params.epochs * steps_per_epoch
    losses: list[float] = []
    model.train()
    for epoch in range(params.epochs):
        order = torch.randperm(n, generator=gen)
        running = 0.0
        for k in range(steps_per_epoch):
            idx = order[k * params.batch_size : (k + 1) * params.batch_size]
            xb, yb = x[idx], y[idx]
            if params.augment:
                xb = augment(xb, gen)
            for group in opt.param_groups:
                group["lr"] = params.lr * lr_factor(
                    params.schedule, epoch * steps_per_epoch + k, total
                )
            if parts is not None and defence is not None:
                ir = parts[0](xb)
                loss = F.cross_entropy(parts[1](ir), yb)
                extra = defence.penalty(xb, ir)
                if extra is not None:
                    loss = loss + extra
            else:
                loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
            running += float(loss.detach()) * len(idx)
        losses.append(running / n)
        if on_epoch is not None:
            on_epoch(epoch, losses[-1])
    model.eval()
    return losses


def finetune_cloud(
    edge: torch.nn.Module,
    cloud: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    params: TrainParams,
    gen: torch.Generator,
) -> list[float]:
    """Retrain ``cloud`` in place on what ``edge`` sends, the edge frozen.

    What a deployment does after putting a defence on the IR (He, Zhang & Lee retrain the
    cloud part for the same reason): the edge (with its defences) stays in eval mode and
    outside autograd, so its batch-norm statistics and weights do not move, and each step's
    defence noise is fresh; the cloud part is trained with :func:`train`'s recipe
    (augmentation applies to the images before the edge).

    Returns
    -------
    list of float
        The mean training loss of each epoch.
    """
    import torch
    from torch import nn

    class FrozenEdge(nn.Module):
        """``cloud(edge(x))``: only ``cloud`` is a submodule (only its parameters train);
        ``edge`` always runs in eval mode, without gradients."""

        def __init__(self) -> None:
            super().__init__()
            self.cloud = cloud

        def forward(self, xb: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                ir = edge(xb)
            out: torch.Tensor = self.cloud(ir)
            return out

    edge.eval()
    return train(FrozenEdge(), x, y, params, gen)


# --------------------------------------------------------------------------------------------
# the cache


def victim_cache_dir() -> Path:
    """Default folder of trained victims: ``$PHLOEM_CACHE_DIR/victims``, else
    ``$XDG_CACHE_HOME/phloem/victims``, else ``~/.cache/phloem/victims``."""
    from phloem.data.loaders import default_cache_dir

    return default_cache_dir() / "victims"


@dataclass(frozen=True, eq=False)
class TrainedVictim:
    """A trained victim and where it came from.

    Attributes
    ----------
    model
        The victim, in eval mode.
    accuracy
        Top-1 test accuracy.
    from_cache
        Whether the weights were loaded rather than trained.
    weights
        The cached ``.pt`` file (its JSON record is beside it, ``.json``).
    train_s
        Seconds the training took (when the weights were trained, even if now loaded).
    """

    model: SplitModel
    accuracy: float
    from_cache: bool
    weights: Path
    train_s: float


def _jsonable(params: object) -> Any:
    if dataclasses.is_dataclass(params) and not isinstance(params, type):
        return {f.name: _jsonable(getattr(params, f.name)) for f in dataclasses.fields(params)}
    if isinstance(params, tuple | list):
        return [_jsonable(v) for v in params]
    if isinstance(params, StrEnum):
        return params.value
    return params if isinstance(params, int | float | str | bool | None) else repr(params)


def _write_atomic(file: Path, write: Callable[[Path], object]) -> None:
    fd, tmp = tempfile.mkstemp(dir=file.parent, prefix=file.name, suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, file)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _load_cached(model: SplitModel, weights: Path, record: Path, key: str) -> dict[str, Any] | None:
    """The cache record when the entry is whole and matches ``key`` (``model`` then holds the
    weights); ``None`` when there is no entry. A damaged entry warns and counts as absent."""
    import torch

    if not record.exists() and not weights.exists():
        return None
    try:
        meta = json.loads(record.read_text())
        if meta.get("key") != key:
            raise ValueError(f"its record is for key {meta.get('key')!r}, not {key!r}")
        state = torch.load(weights, weights_only=True, map_location="cpu")
        model.load_state_dict(state)
        accuracy = float(meta["accuracy"])
        if not 0.0 <= accuracy <= 1.0:
            raise ValueError(f"accuracy {accuracy!r} is not in [0, 1]")
    except Exception as exc:  # a damaged cache entry is retrained, never fatal
        warnings.warn(
            f"the cached victim {weights} is unreadable or does not match its record "
            f"({type(exc).__name__}: {exc}); retraining it",
            stacklevel=3,
        )
        return None
    return dict(meta)


def trained_victim(
    victim: str,
    data: ImageData,
    victim_params: Any = None,
    train_params: TrainParams | None = None,
    *,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    defence: Defence | None = None,
    split: str | None = None,
    on_epoch: Callable[[int, float], None] | None = None,
) -> TrainedVictim:
    """The victim ``victim`` trained on ``data``: loaded from the cache, or trained and cached.

    Parameters
    ----------
    victim
        A name registered in :data:`~phloem.attacks.registries.VICTIMS`.
    data
        Training and test images (:func:`load_images`); their shape must be the victim's
        ``input_shape``.
    victim_params
        The victim's ``Params`` (default: its defaults).
    train_params
        The recipe (default: the victim's ``recipe``, else ``TrainParams()``).
    seed
        Seeds the generator of initial weights, shuffling and augmentation.
    cache_dir
        Folder of cached victims (default :func:`victim_cache_dir`).
    defence, split
        A training-time defence whose ``penalty`` at ``split`` joins the loss (see
        :func:`train`); part of the cache key.
    on_epoch
        Progress callback, as in :func:`train`.

    Returns
    -------
    TrainedVictim
        In eval mode, with its test accuracy.

    Raises
    ------
    ConfigError
        For an unknown victim (listing them), or data of the wrong shape.
    """
    import torch

    from phloem.attacks.registries import VICTIMS

    cls = VICTIMS.get(victim)
    model = cls(victim_params)
    if tuple(data.x_train.shape[1:]) != cls.input_shape:
        raise ConfigError(
            "data.name",
            f"{data.name!r} images are {tuple(data.x_train.shape[1:])}, victim {victim!r} takes "
            f"{cls.input_shape}",
        )
    if train_params is None:
        recipe = getattr(cls, "recipe", None)
        train_params = recipe if isinstance(recipe, TrainParams) else TrainParams()
    if split is not None:
        model.edge(split)  # an unknown split is a ConfigError listing the splits, before training
    record = {
        "version": _CACHE_VERSION,
        "victim": victim,
        "victim_params": _jsonable(model.params),
        "train_params": _jsonable(train_params),
        "seed": seed,
        "data": {"name": data.name, "fingerprint": data.fingerprint},
        "defence": None
        if defence is None
        else {"name": defence.name, "params": _jsonable(defence.params), "split": split},
    }
    key = hashlib.blake2b(json.dumps(record, sort_keys=True).encode(), digest_size=16).hexdigest()
    folder = Path(cache_dir).expanduser() if cache_dir is not None else victim_cache_dir()
    weights = folder / f"{victim}-{key}.pt"
    meta_file = folder / f"{victim}-{key}.json"
    hit = _load_cached(model, weights, meta_file, key)
    if hit is not None:
        model.eval()
        return TrainedVictim(model, float(hit["accuracy"]), True, weights, float(hit["train_s"]))
    gen = torch.Generator().manual_seed(seed)
    init_weights(model, gen)
    start = time.perf_counter()
    train(
        model,
        data.x_train,
        data.y_train,
        train_params,
        gen,
        defence=defence,
        split=split,
        on_epoch=on_epoch,
    )
    train_s = time.perf_counter() - start
    accuracy = evaluate(model, data.x_test, data.y_test)
    meta = {
        **record,
        "key": key,
        "accuracy": accuracy,
        "train_s": train_s,
        "torch": torch.__version__,
    }
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _write_atomic(weights, lambda p: torch.save(model.state_dict(), p))
        _write_atomic(meta_file, lambda p: p.write_text(json.dumps(meta, indent=2) + "\n"))
    except OSError as exc:
        warnings.warn(
            f"could not write the victim cache {folder} ({exc}); not cached", stacklevel=2
        )
    return TrainedVictim(model, accuracy, False, weights, train_s)
