"""``phloem spb train``: data-parallel training with structured partial backpropagation.

One loop serves two engines with the same arithmetic:

- **virtual workers** (no process group): ``W`` workers take turns in one process, each on its
  shard, and their gradients are averaged over each block's members
  (:func:`~phloem.spb.virtual.average_into`); fast accuracy sweeps;
- **torch.distributed** (launched by ``torchrun``, ``phloem spb train --nproc W``): one
  process per worker, gloo on CPU or NCCL on a GPU; gradients are synchronised with the
  configured :class:`~phloem.spb.sync.SyncMethod` (or torch's ``DistributedDataParallel``).

Every step: the global batch (the epoch's permutation, from the seed, the same on every rank)
is cut into ``W`` equal shards; the plan gives each rank its depth (and, for DropBP, the
dropped residual blocks); each rank runs its step; batch-norm buffers follow rank 0's (as
DDP's ``broadcast_buffers`` does); every rank applies the same update. After every epoch,
rank 0 evaluates, appends a history row and writes ``checkpoint.pt``; ``--resume`` continues
from it. A NaN loss stops the run with the last good checkpoint kept (status ``diverged``);
Ctrl-C keeps the finished epochs (status ``interrupted``).

Accounting per rank, in every history row: backward FLOPs and activation bytes saved (measured
with :class:`~phloem.spb.accounting.StepMeter` the first time a step shape occurs, then reused:
the counts depend only on the shape), bytes handed to collectives, CPU time of the rank's own
compute, and wall time (meaningful per rank only with one process per core).
"""

from __future__ import annotations

import copy
import functools
import math
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from phloem.core.config import to_dict, to_toml
from phloem.core.errors import ConfigError, DivergenceError, RunNotFoundError
from phloem.core.history import History, Row
from phloem.core.progress import progress_bar
from phloem.core.rundir import RunDir
from phloem.nets.training import (
    ImageData,
    augment,
    init_weights,
    load_images,
    lr_factor,
    make_optimizer,
)
from phloem.spb.accounting import Profile, StepCost, StepMeter, profile_model
from phloem.spb.config import TrainConfig, load_config
from phloem.spb.models import Blocks
from phloem.spb.plans.base import DepthPlan, members
from phloem.spb.registries import DEPTH_PLANS, MODELS, SYNC_METHODS
from phloem.spb.sync import Groups, SyncMethod, Traffic, member_sets
from phloem.spb.virtual import average_into, block_params, local_gradients

__all__ = ["RankMeters", "TrainResult", "launch", "resume_training", "train"]

T = TypeVar("T")


@dataclass
class RankMeters:
    """One rank's running totals."""

    backward_flops: int = 0
    peak_saved_bytes: int = 0
    cpu_s: float = 0.0
    #: wall seconds of its forward and backward passes (DDP: synchronisation overlapped)
    compute_s: float = 0.0
    #: wall seconds of its synchronisation (DDP: inside ``compute_s``)
    sync_s: float = 0.0
    traffic: Traffic = field(default_factory=Traffic)

    def to_json(self) -> dict[str, Any]:
        return {
            "backward_flops": self.backward_flops,
            "peak_saved_bytes": self.peak_saved_bytes,
            "cpu_s": self.cpu_s,
            "compute_s": self.compute_s,
            "sync_s": self.sync_s,
            "sent": dict(self.traffic.sent),
            "received": dict(self.traffic.received),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> RankMeters:
        return cls(
            int(d["backward_flops"]),
            int(d["peak_saved_bytes"]),
            float(d["cpu_s"]),
            float(d["compute_s"]),
            float(d["sync_s"]),
            Traffic(dict(d["sent"]), dict(d["received"])),
        )


@dataclass
class TrainResult:
    """What a run did: its folder, history and summary (``status``, ``final`` row,
    ``time_to_target``, per-rank totals)."""

    run_dir: Path
    history: History
    summary: dict[str, Any]


# --------------------------------------------------------------------------------------------
# set-up


def _seed_for(seed: int, *parts: int) -> int:
    import numpy as np

    return int(np.random.SeedSequence([seed, *parts]).generate_state(1, dtype=np.uint64)[0] >> 1)


def build_blocks(cfg: TrainConfig) -> Blocks:
    """The configured model, its weights drawn from the run seed."""
    part = MODELS.get(cfg.model.name)(cfg.model.params)
    blocks = part.blocks()
    init_weights(nn.ModuleList(blocks.modules), torch.Generator().manual_seed(cfg.run.seed))
    return blocks


def load_data(cfg: TrainConfig) -> ImageData:
    """The configured data set, checked against the model's input shape."""
    name = cfg.data_name
    want = MODELS.get(cfg.model.name).input_shape
    data = load_images(
        name,
        path=cfg.data.path,
        limit_train=cfg.data.limit_train,
        limit_test=cfg.data.limit_test,
        seed=cfg.run.seed,
        shape=want,
    )
    shape = tuple(data.x_train.shape[1:])
    if shape != want:
        raise ConfigError(
            "data.name", f"{name!r} images are {shape}; {cfg.model.name!r} takes {want}"
        )
    classes = MODELS.get(cfg.model.name).num_classes
    top = int(max(data.y_train.max(), data.y_test.max()))
    if top >= classes:
        raise ConfigError(
            "data.path" if name == "folder" else "data.name",
            f"{name!r} has {top + 1} classes; {cfg.model.name!r} has {classes} outputs",
            [f"at most {classes} classes"],
        )
    if len(data.y_train) < cfg.recipe.batch_size:
        raise ConfigError(
            "train.batch_size",
            f"{cfg.recipe.batch_size} is more than the {len(data.y_train)} training images",
            [f"<= {len(data.y_train)}"],
        )
    return data


def profile_for(cfg: TrainConfig, blocks: Blocks, data: ImageData) -> Profile:
    """One worker's costs at every depth, on a copy of the model and one shard."""
    shard = cfg.recipe.batch_size // cfg.spb.workers
    copies = copy.deepcopy(list(blocks.modules))
    dev = next(p for b in copies for p in b.parameters()).device
    x, y = data.x_train[:shard].to(dev), data.y_train[:shard].to(dev)
    return profile_model(cfg.model.name, blocks.names, copies, x, y, F.cross_entropy, repeats=1)


# --------------------------------------------------------------------------------------------
# the engines


class _Engine(ABC):
    """How the ``W`` workers' step is carried out; rank 0 of a process group or the one
    process of the virtual workers owns the run folder."""

    def __init__(self, cfg: TrainConfig, blocks: Blocks) -> None:
        self.cfg, self.blocks = cfg, blocks
        self.device = device()
        self.modules = list(blocks.modules)
        self.model = nn.Sequential(*self.modules).to(self.device)
        self.params = block_params(self.modules)
        self.numels = [sum(p.numel() for p in ps) for ps in self.params]
        self.world = cfg.spb.workers
        self.costs: dict[tuple[int, frozenset[int], int], StepCost] = {}

    @property
    @abstractmethod
    def ranks(self) -> Sequence[int]:
        """The ranks this process runs."""

    @property
    def is_main(self) -> bool:
        return 0 in self.ranks

    def measured(
        self, depth: int, dropped: frozenset[int], n: int, body: Callable[[StepMeter | None], T]
    ) -> tuple[T, StepCost]:
        """``body(meter)`` (one rank's forward and backward of ``n`` inputs), and its cost:
        counted by the meter the first time this shape runs (FLOPs and bytes depend on the
        shape only), looked up after that (``meter`` is ``None``)."""
        key = (depth, dropped, n)
        meter = StepMeter(self.modules) if key not in self.costs else None
        out = body(meter)
        if meter is not None:
            self.costs[key] = meter.cost(depth)
        return out, self.costs[key]

    def rank_step(
        self, rank: int, x: torch.Tensor, y: torch.Tensor, depth: int, dropped: frozenset[int]
    ) -> tuple[float, list[list[torch.Tensor] | None], StepCost]:
        """One rank's forward and backward through the last ``depth`` blocks, and its cost."""
        (loss, grads), cost = self.measured(
            depth,
            dropped,
            len(y),
            lambda meter: local_gradients(
                self.modules, x, y, depth, F.cross_entropy, dropped, meter=meter
            ),
        )
        return loss, grads, cost

    @abstractmethod
    def step(
        self,
        shards: dict[int, tuple[torch.Tensor, torch.Tensor]],
        depths: tuple[int, ...],
        dropped: frozenset[int],
        meters: list[RankMeters],
    ) -> float:
        """Set every parameter's ``.grad`` to the step's synchronised gradient; the sum of
        this process's ranks' losses."""

    def gather(self, meters: list[RankMeters], loss: float) -> tuple[list[RankMeters], float]:
        """Every rank's meters and the sum of all ranks' losses, on the main process."""
        return meters, loss

    def broadcast_buffers(self) -> None:  # noqa: B027 - a hook: one process has nothing to do
        """Make every rank's batch-norm buffers rank 0's."""

    def build_groups(self, plan: DepthPlan, total: int) -> None:  # noqa: B027 - as above
        """Create the process groups the plan's member sets need."""


def _timed(fn: Callable[[], T]) -> tuple[T, tuple[float, float]]:
    """``fn()``, and the process's CPU seconds (torch's intra-op threads included) and wall
    seconds it took."""
    c0, w0 = time.process_time(), time.perf_counter()
    out = fn()
    return out, (time.process_time() - c0, time.perf_counter() - w0)


class _Virtual(_Engine):
    """All ``W`` workers in this process, one after another."""

    @property
    def ranks(self) -> Sequence[int]:
        return range(self.world)

    def __init__(self, cfg: TrainConfig, blocks: Blocks, sync: SyncMethod) -> None:
        super().__init__(cfg, blocks)
        self.sync = sync

    def step(
        self,
        shards: dict[int, tuple[torch.Tensor, torch.Tensor]],
        depths: tuple[int, ...],
        dropped: frozenset[int],
        meters: list[RankMeters],
    ) -> float:
        per_rank, total, buffers = [], 0.0, None
        for r in self.ranks:
            (loss, grads, cost), times = _timed(
                functools.partial(self.rank_step, r, *shards[r], depths[r], dropped)
            )
            if r == 0:  # batch-norm statistics follow rank 0, as on the real workers
                buffers = [b.detach().clone() for b in self.model.buffers()]
            per_rank.append(grads)
            total += loss
            _book(meters[r], cost, times)
        if buffers is not None:
            with torch.no_grad():
                for b, saved in zip(self.model.buffers(), buffers, strict=True):
                    b.copy_(saved)
        groups = members(depths, len(self.modules), dropped)
        average_into(self.params, per_rank, groups)
        for r, m in enumerate(meters):  # what each real rank's sync would book
            self.sync.book_step(m.traffic, r, self.world, groups, self.numels)
        return total


def _book(m: RankMeters, cost: StepCost, times: tuple[float, float]) -> None:
    m.backward_flops += cost.backward_flops
    m.peak_saved_bytes = max(m.peak_saved_bytes, cost.saved_bytes)
    m.cpu_s += times[0]
    m.compute_s += times[1]


class _Distributed(_Engine):
    """This process is one rank of the default process group."""

    def __init__(self, cfg: TrainConfig, blocks: Blocks, sync: SyncMethod) -> None:
        super().__init__(cfg, blocks)
        self.rank = dist.get_rank()
        if dist.get_world_size() != self.world:
            raise ConfigError(
                "spb.workers",
                f"{self.world} workers, but torchrun started {dist.get_world_size()} processes",
                [f"--nproc {self.world}"],
            )
        self.sync, self.groups = sync, Groups()
        self.ddp: nn.Module | None = None
        if sync.native_ddp:
            from torch.nn.parallel import DistributedDataParallel

            ids = None if self.device.type == "cpu" else [self.device]
            self.ddp = DistributedDataParallel(self.model, device_ids=ids)
        else:
            self._broadcast_params()

    def build_groups(self, plan: DepthPlan, total: int) -> None:
        """The process groups of every member set the plan produces over the run's steps,
        built once, in the same order on every rank."""
        if self.ddp is None:
            n_blocks = len(self.modules)
            patterns = (plan.depths(self.world, n_blocks, s, total) for s in range(total))
            self.groups.build(member_sets(patterns, n_blocks))

    @property
    def ranks(self) -> Sequence[int]:
        return (self.rank,)

    def _broadcast_params(self) -> None:
        for t in self.model.state_dict().values():
            dist.broadcast(t, src=0)

    def broadcast_buffers(self) -> None:
        if self.ddp is None:
            for b in self.model.buffers():
                dist.broadcast(b, src=0)

    def step(
        self,
        shards: dict[int, tuple[torch.Tensor, torch.Tensor]],
        depths: tuple[int, ...],
        dropped: frozenset[int],
        meters: list[RankMeters],
    ) -> float:
        x, y = shards[self.rank]
        m = meters[self.rank]
        if self.ddp is not None:
            ddp = self.ddp

            def run(meter: StepMeter | None) -> float:
                with meter.forward() if meter is not None else nullcontext():
                    loss = F.cross_entropy(ddp(x), y)
                self.model.zero_grad(set_to_none=True)
                with meter.backward() if meter is not None else nullcontext():
                    loss.backward()  # type: ignore[no-untyped-call]  # DDP all-reduces here
                return float(loss.detach())

            (loss, cost), times = _timed(
                lambda: self.measured(depths[self.rank], dropped, len(y), run)
            )
            _book(m, cost, times)
            groups = members(depths, len(self.modules), dropped)
            self.sync.book_step(m.traffic, self.rank, self.world, groups, self.numels)
            return loss
        (loss, grads, cost), times = _timed(
            lambda: self.rank_step(self.rank, x, y, depths[self.rank], dropped)
        )
        _book(m, cost, times)
        t0 = time.perf_counter()
        self.sync.synchronise(self.params, grads, depths, self.groups, m.traffic, dropped)
        m.sync_s += time.perf_counter() - t0
        return float(loss)

    def gather(self, meters: list[RankMeters], loss: float) -> tuple[list[RankMeters], float]:
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, (meters[self.rank].to_json(), loss))
        return [RankMeters.from_json(o[0]) for o in out], sum(float(o[1]) for o in out)


# --------------------------------------------------------------------------------------------
# the loop


def _shards(
    cfg: TrainConfig,
    data: ImageData,
    idx: torch.Tensor,
    ranks: Sequence[int],
    gens: dict[int, torch.Generator],
    dev: torch.device,
) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """Each rank's shard of the global batch ``idx``, augmented on the CPU from its own
    generator (the same draws on every device), then moved to ``dev``."""
    per = len(idx) // cfg.spb.workers
    out = {}
    for r in ranks:
        part = idx[r * per : (r + 1) * per]
        x = data.x_train[part]
        if cfg.recipe.augment:
            x = augment(x, gens[r])
        out[r] = (x.to(dev), data.y_train[part].to(dev))
    return out


def _test_loss_acc(model: nn.Module, data: ImageData, batch: int) -> tuple[float, float]:
    """Mean cross-entropy and top-1 accuracy on the test set (eval mode, no gradients)."""
    dev = next(model.parameters()).device
    model.eval()
    total, correct = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(data.y_test), batch):
            x, y = data.x_test[i : i + batch].to(dev), data.y_test[i : i + batch].to(dev)
            out = model(x)
            total += float(F.cross_entropy(out, y, reduction="sum"))
            correct += int((out.argmax(dim=1) == y).sum())
    model.train()
    n = max(len(data.y_test), 1)
    return total / n, correct / n


def _row(
    epoch: int,
    step: int,
    loss: float,
    test: tuple[float, float],
    meters: list[RankMeters],
    wall: float,
) -> Row:
    sent = [m.traffic.total_sent for m in meters]
    flops = [m.backward_flops for m in meters]
    return {
        "epoch": epoch,
        "step": step,
        "train_loss": loss,
        "test_loss": test[0],
        "test_acc": test[1],
        "backward_flops": sum(flops),
        "backward_flops_max_rank": max(flops),
        "saved_bytes_max_rank": max(m.peak_saved_bytes for m in meters),
        "bytes_sent_max_rank": max(sent),
        "bytes_sent_mean_rank": sum(sent) / len(sent),
        "cpu_s": sum(m.cpu_s for m in meters),
        "compute_s_max_rank": max(m.compute_s for m in meters),
        "sync_s_max_rank": max(m.sync_s for m in meters),
        "wall_s": wall,
    }


def _save_checkpoint(
    rd: RunDir, model: nn.Module, opt: torch.optim.Optimizer, state: dict[str, Any]
) -> None:
    tmp = rd.checkpoint_path.with_suffix(".tmp")
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), **state}, tmp)
    tmp.replace(rd.checkpoint_path)


def _load_checkpoint(rd: RunDir) -> dict[str, Any]:
    if not rd.checkpoint_path.is_file():
        raise RunNotFoundError(
            f"{rd.path} has no {RunDir.CHECKPOINT}: the run stopped before its first epoch "
            "ended; start it again"
        )
    try:
        ck: dict[str, Any] = torch.load(rd.checkpoint_path, weights_only=True)
    except Exception as e:  # a damaged or foreign file: say so, never run its code
        raise RunNotFoundError(
            f"{rd.checkpoint_path} cannot be read as a checkpoint: {e}"
        ) from None
    return ck


def _restore(
    ck: dict[str, Any],
    rd: RunDir,
    model: nn.Module,
    opt: torch.optim.Optimizer,
    cfg: TrainConfig,
) -> tuple[int, float, list[RankMeters]]:
    """Load a checkpoint into the model and optimiser: the next epoch, the wall seconds so
    far and the meters. A checkpoint of another model or world size, or with fields out of
    range, is refused naming the file (nothing is half-loaded into a run that goes on)."""
    try:
        epoch, wall = int(ck["epoch"]), float(ck["wall_s"])
        meters = [RankMeters.from_json(m) for m in ck["meters"]]
        if epoch < -1 or not math.isfinite(wall) or wall < 0:
            raise ValueError(f"epoch {epoch}, wall_s {wall}")
        if len(meters) != cfg.spb.workers:
            raise ValueError(f"{len(meters)} ranks' meters for spb.workers = {cfg.spb.workers}")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise RunNotFoundError(
            f"{rd.checkpoint_path} does not fit this run ({type(e).__name__}: {e}); it was "
            "written for another model or config, or altered"
        ) from None
    return epoch + 1, wall, meters


def _time_to_target(rows: Sequence[Row], target: float | None) -> dict[str, Any] | None:
    if target is None:
        return None
    for r in rows:
        acc = r.get("test_acc")
        if isinstance(acc, int | float) and acc >= target:
            return {k: r[k] for k in ("epoch", "step", "wall_s", "backward_flops", "cpu_s")}
    return {"reached": False}


def train(
    cfg: TrainConfig,
    run_dir: Path | None = None,
    *,
    resume: bool = False,
    on_epoch: Callable[[Row], None] | None = None,
) -> TrainResult:
    """Train ``cfg``'s model with its depth plan; one run folder (rank 0 writes it).

    In a process group (``torchrun``), every rank calls this with the same ``run_dir``;
    otherwise the ``spb.workers`` workers are virtual.

    Parameters
    ----------
    cfg
        The configuration.
    run_dir
        The run folder (created under ``run.out_dir`` when ``None``).
    resume
        Continue from ``run_dir``'s checkpoint: the epochs after it are run.
    on_epoch
        Called on rank 0 with each epoch's history row.

    Raises
    ------
    ConfigError, DataNotFoundError
        Before any training, for a bad config or missing data.
    DivergenceError
        When the training loss becomes NaN or infinite (history, summary and the last good
        checkpoint are kept).
    """
    s = _open(cfg, run_dir, resume)
    status, t_start = "finished", time.perf_counter()
    try:
        with progress_bar(
            s.total - s.start_epoch * s.steps_per_epoch,
            f"{s.plan.name} x{cfg.spb.workers}",
            enabled=cfg.run.progress and s.engine.is_main,
        ) as bar:
            for epoch in range(s.start_epoch, cfg.recipe.epochs):
                s.meters, loss_sum = _epoch(s, epoch, bar)
                wall = s.wall0 + time.perf_counter() - t_start
                train_loss = loss_sum / (s.steps_per_epoch * cfg.spb.workers)
                if not math.isfinite(train_loss):
                    status = "diverged"
                    raise DivergenceError(_diverged(s, epoch, train_loss, resume))
                if s.engine.is_main:
                    row = _end_epoch(s, epoch, train_loss, wall)
                    if on_epoch is not None:
                        on_epoch(row)
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    except DivergenceError:
        raise
    except BaseException:
        status = "failed"
        raise
    finally:
        summary: dict[str, Any] = {}
        if s.history is not None:
            summary = _summary(s, status)
            s.rd.write_summary(summary)
            s.history.close()
    return TrainResult(s.rd.path, s.history or History(), summary)


@dataclass
class _Session:
    """Everything one process of a run holds."""

    cfg: TrainConfig
    data: ImageData
    engine: _Engine
    plan: DepthPlan
    opt: torch.optim.Optimizer
    profile: Profile
    rd: RunDir
    history: History | None  # rank 0 only
    meters: list[RankMeters]
    start_epoch: int
    wall0: float

    @property
    def steps_per_epoch(self) -> int:
        return len(self.data.y_train) // self.cfg.recipe.batch_size

    @property
    def total(self) -> int:
        return self.cfg.recipe.epochs * self.steps_per_epoch


def _open(cfg: TrainConfig, run_dir: Path | None, resume: bool) -> _Session:
    """Data, model, plan and engine; the run folder, and the checkpoint when resuming."""
    distributed = dist.is_available() and dist.is_initialized()
    data = load_data(cfg)
    blocks = build_blocks(cfg)
    plan: DepthPlan = DEPTH_PLANS.get(cfg.plan.name)(cfg.plan.params)
    sync: SyncMethod = SYNC_METHODS.get(cfg.spb.sync)()
    engine: _Engine = (_Distributed if distributed else _Virtual)(cfg, blocks, sync)
    profile = profile_for(cfg, blocks, data)
    plan.fit(profile)
    engine.build_groups(plan, cfg.recipe.epochs * (len(data.y_train) // cfg.recipe.batch_size))
    opt = make_optimizer(engine.model, cfg.recipe)
    if run_dir is None:
        if distributed or resume:
            raise ValueError("every rank needs the same run_dir, and resuming needs one")
        rd = RunDir.create(Path(cfg.run.out_dir), cfg.run.name)
    else:
        rd = RunDir(run_dir)
    meters = [RankMeters() for _ in range(cfg.spb.workers)]
    rows: list[Row] = []
    start_epoch, wall0 = 0, 0.0
    if resume:
        start_epoch, wall0, meters = _restore(_load_checkpoint(rd), rd, engine.model, opt, cfg)
        try:
            rows = rd.history().rows[:start_epoch]
        except ValueError as e:  # a row that is not metrics: not a file phloem wrote
            raise RunNotFoundError(f"{rd.history_path} cannot be read: {e}") from None
    history = None
    if engine.is_main:
        rd.write_config(to_toml(to_dict(cfg)))
        profile.write(rd.path / "profile.json")
        history = History(rd.history_path, rows)
    return _Session(cfg, data, engine, plan, opt, profile, rd, history, meters, start_epoch, wall0)


def _diverged(s: _Session, epoch: int, loss: float, resume: bool) -> str:
    kept = (
        f"the last good checkpoint (epoch {epoch - 1}) and the history are"
        if epoch > s.start_epoch or resume
        else "no checkpoint (it diverged in the first epoch); the summary is"
    )
    return (
        f"the training loss became {loss} in epoch {epoch}; {kept} in {s.rd.path}; lower train.lr"
    )


def _end_epoch(s: _Session, epoch: int, train_loss: float, wall: float) -> Row:
    """Rank 0: evaluate, append the history row, write the checkpoint."""
    test = _test_loss_acc(s.engine.model, s.data, s.cfg.run.eval_batch_size)
    row = _row(epoch, (epoch + 1) * s.steps_per_epoch, train_loss, test, s.meters, wall)
    assert s.history is not None
    s.history.append(row)
    state = {"epoch": epoch, "wall_s": wall, "meters": [m.to_json() for m in s.meters]}
    _save_checkpoint(s.rd, s.engine.model, s.opt, state)
    return row


def _epoch(s: _Session, epoch: int, bar: Any) -> tuple[list[RankMeters], float]:
    """One epoch's steps; every rank's meters and the sum of all ranks' losses."""
    cfg, engine, plan, opt, data = s.cfg, s.engine, s.plan, s.opt, s.data
    steps_per_epoch, total, meters = s.steps_per_epoch, s.total, s.meters
    recipe, seed, world = cfg.recipe, cfg.run.seed, cfg.spb.workers
    order = torch.randperm(
        len(data.y_train), generator=torch.Generator().manual_seed(_seed_for(seed, 1, epoch))
    )
    gens = {r: torch.Generator().manual_seed(_seed_for(seed, 2, epoch, r)) for r in engine.ranks}
    residual = engine.blocks.residual
    n_blocks = len(engine.modules)
    loss_sum = 0.0
    engine.model.train()
    for k in range(steps_per_epoch):
        step = epoch * steps_per_epoch + k
        idx = order[k * recipe.batch_size : (k + 1) * recipe.batch_size]
        shards = _shards(cfg, data, idx, engine.ranks, gens, engine.device)
        depths = plan.depths(world, n_blocks, step, total)
        dropped = plan.dropped(n_blocks, residual, step, seed)
        for g in opt.param_groups:
            g["lr"] = recipe.lr * lr_factor(recipe.schedule, step, total)
        engine.broadcast_buffers()
        loss_sum += engine.step(shards, depths, dropped, meters)
        opt.step()
        bar.advance(
            1, info=f"epoch {epoch + 1} loss {loss_sum / ((k + 1) * len(engine.ranks)):.3f}"
        )
    return engine.gather(meters, loss_sum)


def _summary(s: _Session, status: str) -> dict[str, Any]:
    cfg, n_blocks, total = s.cfg, len(s.profile.blocks), max(s.total, 1)
    assert s.history is not None
    return {
        "status": status,
        "mode": "torch.distributed" if dist.is_initialized() else "virtual workers",
        "workers": cfg.spb.workers,
        "plan": cfg.plan.name,
        "sync": cfg.spb.sync,
        "depths_at_step0": list(s.plan.depths(cfg.spb.workers, n_blocks, 0, total)),
        "depths_at_last_step": list(s.plan.depths(cfg.spb.workers, n_blocks, total - 1, total)),
        "final": s.history.last(),
        "time_to_target": _time_to_target(s.history.rows, cfg.run.target_accuracy),
        "ranks": [m.to_json() for m in s.meters],
    }


def resume_training(run: Path, overrides: Sequence[str] = ()) -> TrainResult:
    """Continue the run in folder ``run`` from its checkpoint (``train.epochs`` may be raised
    with an override)."""
    rd = RunDir.open(run)
    cfg = load_config(rd.path / RunDir.CONFIG, overrides)
    return train(cfg, rd.path, resume=True)


def device() -> torch.device:
    """This process's device: its local rank's GPU under ``torchrun`` where CUDA exists
    (NCCL), the first GPU for virtual workers, else the CPU (gloo)."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def worker_main(run: Path, resume: bool) -> None:  # pragma: no cover - runs under torchrun
    """The body of each ``torchrun`` process (:mod:`phloem.spb.worker`)."""
    backend = "gloo"
    if torch.cuda.is_available():
        torch.cuda.set_device(device())
        backend = "nccl"
    dist.init_process_group(backend)
    try:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // dist.get_world_size()))
        cfg = load_config(run / RunDir.CONFIG)
        train(cfg, run, resume=resume)
    finally:
        dist.destroy_process_group()


def launch(
    cfg: TrainConfig,
    nproc: int,
    *,
    resume: Path | None = None,
    timeout_s: float | None = None,
) -> TrainResult:
    """Train with ``nproc`` processes under ``torchrun`` (``phloem spb train --nproc``).

    The run folder and its ``config.toml`` are written first (or ``resume``'s are used), the
    config and data are checked here, so that a mistake is one message and not one per rank;
    then ``python -m torch.distributed.run --standalone`` starts the workers
    (:mod:`phloem.spb.worker`) and this waits for them.

    Raises
    ------
    ConfigError
        When ``nproc`` is not ``spb.workers``, or for the config's own errors.
    PhloemError
        When a worker fails (its last lines of standard error are quoted).
    """
    import subprocess
    import sys

    from phloem.core.errors import PhloemError

    if nproc != cfg.spb.workers:
        raise ConfigError(
            "--nproc", f"{nproc} processes for spb.workers = {cfg.spb.workers}", [cfg.spb.workers]
        )
    load_data(cfg)  # missing files, wrong shapes: one message here
    if resume is not None:
        rd = RunDir.open(resume)
        _load_checkpoint(rd)
    else:
        rd = RunDir.create(Path(cfg.run.out_dir), cfg.run.name)
    rd.write_config(to_toml(to_dict(cfg)))  # what every worker reads (a resume's overrides too)
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // nproc))
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        "-m",
        "phloem.spb.worker",
        str(rd.path),
    ] + (["--resume"] if resume is not None else [])
    proc = subprocess.run(cmd, env=env, stderr=subprocess.PIPE, text=True, timeout=timeout_s)
    if proc.returncode:
        lines = [
            ln
            for ln in proc.stderr.splitlines()
            if ln.startswith(("error:", "diverged:")) or "Error" in ln
        ]
        if any(ln.startswith("diverged:") for ln in lines):
            raise DivergenceError(lines[-1].removeprefix("diverged: "))
        tail = "; ".join(dict.fromkeys(lines[-3:])) or proc.stderr.strip()[-500:]
        raise PhloemError(f"the workers failed (exit {proc.returncode}): {tail}")
    rd = RunDir.open(rd.path)
    return TrainResult(rd.path, rd.history(), rd.summary())
