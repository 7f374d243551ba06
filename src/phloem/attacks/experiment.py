"""The experiment of ``phloem attack run``: one config, every seed, one run folder.

A TOML file has one table per section below; every key is optional. ``[victim]``,
``[attack]``, ``[private]``, ``[aux]`` and each ``[[defences]]`` entry pick a registered part
by ``name`` and carry that part's own keys beside it (``phloem attack list`` shows them);
``[victim.train]`` is the victim's training recipe (default: the victim's own),
``[victim.finetune]`` an optional recipe to retrain the cloud part on defended IRs before the
deployed accuracy is measured (the attack is unchanged: the edge is), ``[threat]`` the
attacker's knowledge, ``[metrics]`` optional metrics (LPIPS from the user's weight files).
For every seed in ``[run] seeds`` the victim is trained (or loaded
from the cache), the images are drawn, the attack is fitted and measured
(:func:`phloem.attacks.evaluate.run_attack`), so the summary's confidence intervals are over
seeds (victim, attacker and data drawn anew for each; ``[victim] seed`` pins the victim, so
that an expensive one is trained once and the intervals are over attacker and data draws).

A run folder keeps ``results.json`` up to date after every seed; :func:`resume_experiment`
(``phloem attack run --resume RUN``) runs only the seeds it lacks.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from phloem.attacks.registries import ATTACKS, DEFENCES, IMAGE_SETS, VICTIMS
from phloem.attacks.threat import ThreatModel
from phloem.core.config import (
    Picks,
    Section,
    read_config,
    to_dict,
    to_toml,
)
from phloem.core.errors import ConfigError
from phloem.nets.training import TrainParams

__all__ = [
    "AttackConfig",
    "DefenceConfig",
    "ExperimentConfig",
    "ExperimentResult",
    "ImagesConfig",
    "MetricsConfig",
    "RunConfig",
    "VictimConfig",
    "load_config",
    "load_result",
    "resume_experiment",
    "run_experiment",
]


@dataclass(frozen=True)
class VictimConfig(Section):
    """``[victim]``: the split model, where it is cut (``split``), and the images it is
    trained on (``data``: ``digits`` needs no data folder; ``cifar10``, ``mnist``)."""

    name: Annotated[str, Picks(VICTIMS, "params")] = "lenet"
    params: Any = None
    split: str = "pool1"
    data: str = "digits"  # one of phloem.nets.training.TRAINING_SETS
    #: ``[victim.train]``: the training recipe (``None``: the victim's own)
    train: TrainParams | None = None
    #: the victim's training seed (``None``: each run seed trains its own victim)
    seed: int | None = None
    #: ``[victim.finetune]``: retrain the cloud part on the defended IRs of the training set
    #: (edge frozen) before the deployed accuracy is measured, as a deployment would
    #: (``None``: the cloud part as trained)
    finetune: TrainParams | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.seed is not None and (isinstance(self.seed, bool) or self.seed < 0):
            raise ConfigError("victim.seed", f"{self.seed!r}", ["int >= 0", "unset (the run seed)"])


@dataclass(frozen=True)
class AttackConfig(Section):
    """``[attack]``: the attack and its own keys (training budget, width, steps, ...)."""

    name: Annotated[str, Picks(ATTACKS, "params")] = "encoder-decoder"
    params: Any = None


@dataclass(frozen=True)
class DefenceConfig(Section):
    """One ``[[defences]]`` entry: a defence and its own keys; applied in file order."""

    name: Annotated[str, Picks(DEFENCES, "params")] = "gaussian_noise"
    params: Any = None


@dataclass(frozen=True)
class ImagesConfig(Section):
    """``[private]`` / ``[aux]``: an image set, its own keys, and how many images."""

    name: Annotated[str, Picks(IMAGE_SETS, "params")] = "lfw-faces"
    params: Any = None
    count: int = 200

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.count < 1:
            raise ConfigError("count", f"{self.count} images", ["int >= 1"])


def _aux_default() -> ImagesConfig:
    return ImagesConfig(name="sample-patches", count=2000)


@dataclass(frozen=True)
class RunConfig:
    """``[run]``: ``seeds`` (one victim, attacker and data draw each), ``name`` and ``out_dir``
    of the run folder."""

    seeds: tuple[int, ...] = (0,)
    name: str = "attack"
    out_dir: str = "runs"

    def __post_init__(self) -> None:
        if not self.seeds or any(s < 0 for s in self.seeds):
            raise ConfigError("run.seeds", f"{list(self.seeds)}", ["a non-empty list of ints >= 0"])


#: the backbones ``[metrics] lpips_net`` takes (``phloem.attacks.lpips.LPIPS_NETS``; kept here
#: so that reading a config imports no torch, and a test pins the two equal)
LPIPS_NETS = ("alex", "vgg")


@dataclass(frozen=True)
class MetricsConfig:
    """``[metrics]``: optional metrics beyond SSIM / PSNR / MSE / identification.

    LPIPS (``phloem.attacks.lpips``) runs only from weights the user supplies:
    ``lpips_backbone`` (torchvision-layout ``state_dict`` of ``lpips_net``) and
    ``lpips_linear`` (the lpips package's linear layers); both or neither.
    """

    lpips_net: str = "alex"
    lpips_backbone: str | None = None
    lpips_linear: str | None = None

    def __post_init__(self) -> None:
        if self.lpips_net not in LPIPS_NETS:
            raise ConfigError("metrics.lpips_net", f"unknown {self.lpips_net!r}", LPIPS_NETS)
        if (self.lpips_backbone is None) != (self.lpips_linear is None):
            missing = "lpips_linear" if self.lpips_linear is None else "lpips_backbone"
            raise ConfigError(
                f"metrics.{missing}",
                "LPIPS needs both weight files (the backbone and the linear layers); never "
                "random weights",
            )

    @property
    def lpips(self) -> bool:
        """Whether LPIPS is configured."""
        return self.lpips_backbone is not None


@dataclass(frozen=True)
class ExperimentConfig:
    """A whole ``phloem attack run`` configuration (see the module docstring)."""

    victim: VictimConfig = field(default_factory=VictimConfig)
    attack: AttackConfig = field(default_factory=AttackConfig)
    threat: ThreatModel = field(default_factory=ThreatModel)
    private: ImagesConfig = field(default_factory=ImagesConfig)
    aux: ImagesConfig = field(default_factory=_aux_default)
    defences: tuple[DefenceConfig, ...] = ()
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    run: RunConfig = field(default_factory=RunConfig)


def load_config(path: str | Path | None, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """The config of ``path`` (``None``: the defaults) with ``--set`` ``overrides`` applied.

    Raises
    ------
    ConfigError
        Naming the field, for an unknown key, a bad value or an unreadable file.
    """
    return read_config(ExperimentConfig, path, overrides)


#: eight of the first seed's private images and their reconstructions, beside the grid
#: (a sweep draws its own grid from them)
SAMPLES = "samples.npz"

#: the per-image metrics of a result, in report order
METRICS = ("ssim", "ssim_he", "psnr", "mse", "identification")
#: metrics a row has only when configured (``[metrics]``)
OPTIONAL_METRICS = ("lpips",)


@dataclass
class ExperimentResult:
    """What ``phloem attack run`` measured: one row per seed, and the summary over seeds.

    ``summary`` maps each metric (and ``victim_accuracy``, ``defended_accuracy``) to its mean
    and the half-width of its 95% Student-t interval over seeds (``nan`` with one seed).
    """

    config: ExperimentConfig
    run_dir: Path
    rows: list[dict[str, float]]
    summary: dict[str, tuple[float, float]]
    grid: Path | None = None


def _defended_accuracy(
    victim: Any,
    split: str,
    defences: Sequence[Any],
    data: Any,
    gen: Any,
    finetune: TrainParams | None = None,
) -> float:
    """Test accuracy of the deployed model: the cloud part (a retrained copy, when
    ``finetune`` is given) on the defended IRs."""
    import copy

    from torch import nn

    from phloem.attacks.defences.base import DefendedEdge
    from phloem.attacks.training import finetune_cloud
    from phloem.nets.training import evaluate

    edge = DefendedEdge(victim.edge(split), defences, gen)
    cloud = victim.cloud(split)
    if finetune is not None:
        cloud = copy.deepcopy(cloud)
        finetune_cloud(edge, cloud, data.x_train, data.y_train, finetune, gen)
    return evaluate(nn.Sequential(edge, cloud), data.x_test, data.y_test)


def _fits_in_memory(cfg: ExperimentConfig, shape: tuple[int, int, int]) -> None:
    """Refuse image counts whose float32 tensors alone exceed the memory available now (a
    typo such as ``count = 10000000`` fails at once, naming the field, not by the OOM killer)."""
    import os

    try:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not Linux: no check
        return
    for section in ("private", "aux"):
        count = getattr(cfg, section).count
        need = count * shape[0] * shape[1] * shape[2] * 4
        if need > available:
            raise ConfigError(
                f"{section}.count",
                f"{count} images of {shape} need {need / 2**30:.1f} GiB; "
                f"{available / 2**30:.1f} GiB of memory is available",
                [f"<= {available // (4 * shape[0] * shape[1] * shape[2])}"],
            )


def _seed_row(
    cfg: ExperimentConfig,
    seed: int,
    data: Any,
    grid_to: Path | None,
    say: Callable[[str], None] = lambda _: None,
    lpips: Any = None,
) -> dict[str, float]:
    """Train (or load) the victim, draw the images, attack, measure: one seed (``say`` hears
    what it is doing)."""
    import numpy as np
    import torch

    from phloem.attacks.evaluate import run_attack
    from phloem.attacks.training import trained_victim

    v = cfg.victim
    defences = [DEFENCES.get(d.name)(d.params) for d in cfg.defences]
    shaping = [d for d in defences if d.trains_victim]  # NoPeek: part of the victim's training
    if len(shaping) > 1:
        raise ConfigError(
            "defences",
            f"{len(shaping)} training-time defences ({', '.join(d.name for d in shaping)}); "
            "a victim is trained with at most one",
        )
    say(f"seed {seed}: training (or loading) {v.name} on {v.data}")
    tv = trained_victim(
        v.name,
        data,
        v.params,
        v.train,
        seed=seed if v.seed is None else v.seed,
        defence=shaping[0] if shaping else None,
        split=v.split if shaping else None,
        on_epoch=lambda e, loss: say(f"seed {seed}: {v.name} epoch {e + 1}, loss {loss:.4f}"),
    )
    victim = tv.model
    if v.split not in victim.splits:
        raise ConfigError(
            "victim.split", f"{v.split!r} is not a split point of {v.name}", list(victim.splits)
        )
    private_rng, aux_rng, attack_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence([seed, 11]).spawn(3)
    )
    shape = victim.input_shape
    _fits_in_memory(cfg, shape)
    private = IMAGE_SETS.get(cfg.private.name)(cfg.private.params).load(
        shape, cfg.private.count, private_rng
    )
    aux, aux_labels = IMAGE_SETS.get(cfg.aux.name)(cfg.aux.params).load_labelled(
        shape, cfg.aux.count, aux_rng
    )
    attack = ATTACKS.get(cfg.attack.name)(cfg.attack.params)
    attack.on_progress = lambda line: say(f"seed {seed}: {cfg.attack.name} {line}")
    gen = torch.Generator().manual_seed(int(attack_rng.integers(2**62)))
    say(
        f"seed {seed}: {cfg.attack.name} fits on {cfg.aux.count} {cfg.aux.name} images, then "
        f"reconstructs {cfg.private.count} private IRs at {v.split}"
    )
    res = run_attack(
        victim,
        v.split,
        attack,
        cfg.threat,
        aux,
        private,
        defences=defences,
        gen=gen,
        aux_labels=aux_labels,
        lpips=lpips,
    )
    accuracy_gen = torch.Generator().manual_seed(int(attack_rng.integers(2**62)))
    if v.finetune is not None:
        say(f"seed {seed}: retraining the cloud part on defended IRs ({v.finetune.epochs} epochs)")
    row = {
        "seed": float(seed),
        "victim_accuracy": tv.accuracy,
        "defended_accuracy": _defended_accuracy(
            victim, v.split, defences, data, accuracy_gen, v.finetune
        ),
    }
    row.update(res.summary())
    if grid_to is not None:
        # eight images spread over the draw (draws are in index order; a set stored by
        # class would otherwise show one class)
        shown = torch.linspace(0, private.shape[0] - 1, min(8, private.shape[0])).long()
        from phloem.attacks.report import save_grid

        save_grid(
            private[shown],
            res.reconstructions[shown],
            grid_to,
            title=f"{cfg.attack.name} at {v.split} ({v.name})",
        )
        np.savez_compressed(
            grid_to.with_name(SAMPLES),
            private=private[shown].numpy(),
            reconstructions=res.reconstructions[shown].numpy(),
        )
    return row


#: the file a run folder keeps its per-seed rows and summary in
RESULTS = "results.json"


def _read_results(run: Path) -> dict[str, Any]:
    """``results.json`` of run folder ``run`` (``{}`` when none was written yet).

    Raises
    ------
    RunNotFoundError
        When the file is unreadable or not a record of this tool, naming it.
    """
    from phloem.core.errors import RunNotFoundError

    path = run / RESULTS
    if not path.is_file():
        return {}
    try:
        record = json.loads(path.read_text())
        rows = record["rows"]
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise TypeError("rows is not a list of records")
        record["rows"] = [{str(k): float(v) for k, v in r.items()} for r in rows]
        need = {"seed", "victim_accuracy", "defended_accuracy", *METRICS}
        for r in record["rows"]:
            if not need <= r.keys():
                raise TypeError(f"a row lacks {sorted(need - r.keys())}")
            if not float(r["seed"]).is_integer() or r["seed"] < 0:
                raise TypeError(f"a row's seed is {r['seed']}")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise RunNotFoundError(
            f"{path} cannot be read as an attack run's results ({e}); start a new run"
        ) from None
    return dict(record)


def _lpips(cfg: ExperimentConfig) -> Any:
    """The configured LPIPS metric, loaded (and checked against the victim's input size)
    before any seed runs, or ``None``."""
    m = cfg.metrics
    if m.lpips_backbone is None or m.lpips_linear is None:  # both or neither (MetricsConfig)
        return None
    from phloem.attacks.lpips import LPIPS, MIN_SIDE

    side = min(VICTIMS.get(cfg.victim.name).input_shape[1:])
    if side < MIN_SIDE[m.lpips_net]:
        allowed = [n for n, s in MIN_SIDE.items() if s <= side]
        raise ConfigError(
            "metrics.lpips_net",
            f"{m.lpips_net} needs images of at least {MIN_SIDE[m.lpips_net]} pixels a side; "
            f"{cfg.victim.name} takes {side}",
            allowed,
        )
    return LPIPS.from_files(m.lpips_net, m.lpips_backbone, m.lpips_linear)


def _summary(rows: Sequence[dict[str, float]]) -> dict[str, tuple[float, float]]:
    from phloem.attacks.evaluate import mean_ci

    keys = ["victim_accuracy", "defended_accuracy", *METRICS]
    keys += [k for k in OPTIONAL_METRICS if rows and all(k in r for r in rows)]
    return {k: mean_ci([r[k] for r in rows]) for k in keys} if rows else {}


def run_experiment(
    cfg: ExperimentConfig,
    *,
    root: Path | None = None,
    run_dir: Path | None = None,
    on_progress: Callable[[str], None] | None = None,
) -> ExperimentResult:
    """Run ``cfg`` for every seed in a new run folder (``config.toml``, ``results.json``,
    ``report.md``, ``plots/grid.png``), or in ``run_dir``, skipping the seeds its
    ``results.json`` already holds (see :func:`resume_experiment`). ``on_progress`` hears a
    line for each step (victim, attack, a finished seed with its SSIM and time).

    Raises
    ------
    ConfigError
        For a split the victim does not have, image counts a set cannot serve, an attack
        that does not work under the threat model, or missing data (with where to put it).
    """
    from phloem.core.rundir import RunDir
    from phloem.nets.training import load_images

    rd = RunDir.create(root or Path(cfg.run.out_dir), cfg.run.name) if run_dir is None else None
    path = rd.path if rd is not None else Path(run_dir or ".")
    done = {int(r["seed"]): r for r in _read_results(path).get("rows", [])}
    (path / "plots").mkdir(exist_ok=True)
    (path / RunDir.CONFIG).write_text(to_toml(to_dict(cfg)), encoding="utf-8")
    say = on_progress or (lambda _: None)
    data = load_images(cfg.victim.data)
    lpips = _lpips(cfg)
    grid = path / "plots" / "grid.png"
    rows: list[dict[str, float]] = [done[s] for s in cfg.run.seeds if s in done]
    t0 = time.perf_counter()

    def save(status: str) -> dict[str, tuple[float, float]]:
        """``results.json`` with the seeds done so far: written after every seed, so an
        interrupted or failing run keeps what it measured."""
        summary = _summary(rows)
        record = {
            "status": status,
            "rows": rows,
            "summary": {k: {"mean": m, "ci95": c} for k, (m, c) in summary.items()},
            "wall_s": time.perf_counter() - t0,
        }
        (path / RESULTS).write_text(json.dumps(record, indent=1, default=float))
        return summary

    for seed in cfg.run.seeds:
        if seed in done:
            continue
        started = time.perf_counter()
        try:
            row = _seed_row(cfg, seed, data, None if grid.is_file() else grid, say, lpips)
        except BaseException:  # Ctrl-C, a bad value found late: keep the finished seeds
            save("interrupted")
            raise
        rows.append(row)
        save("running")
        say(f"seed {seed} done: ssim {row['ssim']:.4f} ({time.perf_counter() - started:.0f} s)")
    rows.sort(key=lambda r: cfg.run.seeds.index(int(r["seed"])))
    result = ExperimentResult(cfg, path, rows, save("finished"), grid)
    from phloem.attacks.report import markdown_report

    (path / "report.md").write_text(markdown_report(result))
    return result


#: the keys a resumed run may change (they add or drop seeds, not change what a seed measures)
RESUMABLE = frozenset({"run.seeds"})


def load_result(
    run: Path, overrides: Sequence[str] = ()
) -> tuple[ExperimentConfig, list[dict[str, float]], str]:
    """The config (``--set`` ``overrides`` applied), per-seed rows and status of run folder
    ``run``.

    Raises
    ------
    RunNotFoundError
        When ``run`` is not an attack run folder, or its results are unreadable.
    ConfigError
        Naming the field, for an override that would make a different experiment (only
        ``run.seeds`` may change).
    """
    from phloem.core.rundir import RunDir

    rd = RunDir.open(run)
    saved = load_config(rd.path / RunDir.CONFIG)
    cfg = load_config(rd.path / RunDir.CONFIG, overrides)
    a, b = to_dict(saved), to_dict(cfg)
    for section in a:
        if a[section] != b[section]:
            keys = a[section].keys() | b[section].keys() if isinstance(a[section], dict) else {""}
            for key in sorted(keys, key=lambda k: (k != "name", k)):  # a part switch first
                name = f"{section}.{key}".rstrip(".")
                same = a[section].get(key) == b[section].get(key) if key else False
                if not same and name not in RESUMABLE:
                    raise ConfigError(
                        name,
                        "cannot change when resuming (it would make a different experiment); "
                        "start a new run instead",
                        sorted(RESUMABLE),
                    )
    record = _read_results(rd.path)
    return cfg, list(record.get("rows", [])), str(record.get("status", "not started"))


def resume_experiment(
    run: Path,
    overrides: Sequence[str] = (),
    *,
    on_progress: Callable[[str], None] | None = None,
) -> ExperimentResult:
    """Continue the run in folder ``run``: the seeds its ``results.json`` lacks are run (the
    finished ones are kept as measured), with ``run.seeds`` overrides to add seeds.

    Raises
    ------
    RunNotFoundError, ConfigError
        As :func:`load_result`.
    """
    cfg, _, _ = load_result(run, overrides)
    return run_experiment(cfg, run_dir=run, on_progress=on_progress)
