"""The configuration of ``phloem spb train``: one TOML file, every key optional.

::

    [model]            # a registered model (phloem spb list) and its own keys
    name = "lenet"
    [data]             # digits (built in), mnist, cifar10 ($PHLOEM_DATA_DIR) or folder (yours)
    name = "mnist"
    [train]            # the recipe (default: the model's own); batch_size is the global batch
    epochs = 3
    [plan]             # a registered depth plan and its own keys
    name = "static"
    shallow_fraction = 0.5
    [spb]
    workers = 4        # data-parallel world size (virtual workers, or torchrun processes)
    sync = "zeros"     # zeros | subgroup | ddp (torch's DistributedDataParallel, plan full)
    [run]
    seed = 0
    target_accuracy = 0.98   # time-to-accuracy is reported for it

Reading a config imports the registries' modules (torch) only to validate the parts' keys.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from phloem.core import checks
from phloem.core.config import Picks, Section, read_config
from phloem.core.errors import ConfigError
from phloem.nets.training import TRAINING_SETS, TrainParams
from phloem.spb.registries import DEPTH_PLANS, MODELS, SYNC_METHODS

__all__ = [
    "DataConfig",
    "ModelConfig",
    "ModelOnly",
    "PlanConfig",
    "RunOptions",
    "SpbOptions",
    "TrainConfig",
    "load_config",
]


@dataclass(frozen=True)
class ModelConfig(Section):
    """``[model]``: the network (``phloem spb list`` shows the names and keys)."""

    name: Annotated[str, Picks(MODELS, "params")] = "lenet"
    params: Any = None


@dataclass(frozen=True)
class DataConfig:
    """``[data]``: ``name`` (``digits``, ``mnist``, ``cifar10``, or ``folder``: your own
    labelled images, one subfolder per class; default: the model's own), ``path`` (instead of
    ``$PHLOEM_DATA_DIR``; the folder for ``folder``) and optional ``limit_train`` / ``limit_test``
    (CIFAR-10: class-balanced heads; MNIST: the first images)."""

    name: str | None = None
    path: str | None = None
    limit_train: int | None = None
    limit_test: int | None = None

    def __post_init__(self) -> None:
        if self.name is not None and self.name not in TRAINING_SETS:
            raise ConfigError("data.name", f"unknown {self.name!r}", TRAINING_SETS)
        for key in ("limit_train", "limit_test"):
            value = getattr(self, key)
            if value is not None:
                checks.integer(f"data.{key}", value, low=1)


@dataclass(frozen=True)
class PlanConfig(Section):
    """``[plan]``: the depth plan and its own keys (``phloem spb list``)."""

    name: Annotated[str, Picks(DEPTH_PLANS, "params")] = "static"
    params: Any = None


@dataclass(frozen=True)
class SpbOptions:
    """``[spb]``: ``workers`` (the data-parallel world size) and ``sync`` (how ranks outside
    a block's member set receive its update; ``ddp`` is torch's ``DistributedDataParallel``,
    for the ``full`` plan only)."""

    workers: int = 4
    sync: str = "zeros"

    def __post_init__(self) -> None:
        checks.integer("spb.workers", self.workers, low=1, high=1024)
        SYNC_METHODS.get(self.sync)


@dataclass(frozen=True)
class RunOptions:
    """``[run]``: ``seed`` (weights, data order, augmentation, DropBP draws), ``name`` and
    ``out_dir`` of the run folder, ``target_accuracy`` (time-to-accuracy is reported for it,
    ``None``: not), ``eval_batch_size``, and ``progress`` (a progress bar on rank 0)."""

    seed: int = 0
    name: str = "spb"
    out_dir: str = "runs"
    target_accuracy: float | None = None
    eval_batch_size: int = 1000
    progress: bool = True

    def __post_init__(self) -> None:
        checks.integer("run.seed", self.seed, low=0, high=2**63 - 1)
        checks.integer("run.eval_batch_size", self.eval_batch_size, low=1)
        checks.boolean("run.progress", self.progress)
        if self.target_accuracy is not None:
            checks.real("run.target_accuracy", self.target_accuracy, low=0.0, high=1.0)


@dataclass(frozen=True)
class TrainConfig:
    """A whole ``phloem spb train`` configuration (see the module docstring)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainParams | None = None
    plan: PlanConfig = field(default_factory=PlanConfig)
    spb: SpbOptions = field(default_factory=SpbOptions)
    run: RunOptions = field(default_factory=RunOptions)

    def __post_init__(self) -> None:
        model = MODELS.get(self.model.name)
        recipe = self.recipe
        if recipe.batch_size % self.spb.workers:
            raise ConfigError(
                "train.batch_size",
                f"{recipe.batch_size} does not split evenly over {self.spb.workers} workers",
                [f"a multiple of {self.spb.workers}"],
            )
        if model.batch_norm and recipe.batch_size // self.spb.workers < 2:
            raise ConfigError(
                "train.batch_size",
                f"{recipe.batch_size} over {self.spb.workers} workers is one image per worker; "
                f"{self.model.name!r} has batch norm, which needs two",
                [f">= {2 * self.spb.workers}"],
            )
        plan = DEPTH_PLANS.get(self.plan.name)
        if plan.needs_residual and not model.residual_blocks:
            raise ConfigError(
                "plan.name",
                f"{self.plan.name!r} drops residual blocks, and {self.model.name!r} has none",
                [n for n in DEPTH_PLANS.names() if not DEPTH_PLANS.get(n).needs_residual],
            )
        if SYNC_METHODS.get(self.spb.sync).native_ddp and self.plan.name != "full":
            raise ConfigError(
                "spb.sync",
                f"'ddp' is torch's DistributedDataParallel: full backprop only, not plan "
                f"{self.plan.name!r} (use plan 'full', or another sync)",
                [n for n in SYNC_METHODS.names() if not SYNC_METHODS.get(n).native_ddp],
            )

    @property
    def recipe(self) -> TrainParams:
        """``[train]``, or the model's own recipe."""
        return self.train if self.train is not None else MODELS.get(self.model.name).recipe

    @property
    def data_name(self) -> str:
        """``[data] name``, or the model's own data set."""
        return self.data.name or MODELS.get(self.model.name).data


@dataclass(frozen=True)
class ModelOnly:
    """Just a ``[model]`` section (``phloem spb profile MODEL --set model.width=8``)."""

    model: ModelConfig = field(default_factory=ModelConfig)


def load_config(path: str | Path | None, overrides: Sequence[str] = ()) -> TrainConfig:
    """The config of ``path`` (``None``: the defaults) with ``--set`` ``overrides`` applied.

    Raises
    ------
    ConfigError
        Naming the field, for an unknown key, a bad value or an unreadable file.
    """
    return read_config(TrainConfig, path, overrides)
