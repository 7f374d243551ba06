"""``phloem fl ...``: run experiments from TOML configs and list what can be configured."""

from __future__ import annotations

import itertools
import math
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from phloem.cli.common import err, guarded
from phloem.core.config import apply_overrides, from_dict, load_toml, to_dict, to_toml
from phloem.core.errors import ConfigError, DivergenceError
from phloem.core.rundir import RunDir
from phloem.fl.config import (
    AggregationName,
    AlgorithmName,
    DropoutStage,
    ExperimentConfig,
    ModelName,
    PartitionScheme,
    SamplingScheme,
)
from phloem.fl.simulate import SimulationResult, simulate

__all__ = ["app", "load_config", "run_config"]

app = typer.Typer(help="Federated-optimisation simulator.", no_args_is_help=True)
console = Console()


def load_config(
    path: Path | None, overrides: list[str], base: dict[str, Any] | None = None
) -> ExperimentConfig:
    """Read ``path`` (or start from ``base``), apply ``section.key=value`` overrides, validate."""
    data = dict(base or {})
    if path is not None:
        data = load_toml(path)
    return from_dict(ExperimentConfig, apply_overrides(data, overrides))


def run_config(
    cfg: ExperimentConfig,
    *,
    run_dir: RunDir | None = None,
    resume: bool = False,
    progress: bool = True,
    root: Path | None = None,
) -> SimulationResult:
    """Build and run ``cfg`` in a (new or resumed) run directory."""
    from phloem.cli.registry import build_experiment

    exp = build_experiment(cfg)
    if run_dir is None:
        run_dir = RunDir.create(root or Path(cfg.run.out_dir), cfg.run.name)
    run_dir.write_config(to_toml(to_dict(cfg)))
    r = cfg.run
    return simulate(
        exp.problem,
        exp.algorithm,
        exp.sampler,
        rounds=r.rounds,
        seed=exp.streams,
        backend=exp.backend,
        eval_every=r.eval_every,
        full_eval=r.full_eval,
        run_dir=run_dir,
        checkpoint_every=r.checkpoint_every,
        resume=resume,
        progress=progress,
        aggregator=exp.aggregator,
    )


#: Settings a resumed run may change: they do not alter the arithmetic of the rounds.
RESUMABLE = frozenset({"rounds", "eval_every", "checkpoint_every", "backend", "workers"})


def check_resumable(saved: ExperimentConfig, new: ExperimentConfig) -> None:
    """Refuse overrides that would make a resumed run a different experiment."""
    a, b = to_dict(saved), to_dict(new)
    for section, values in a.items():
        for key, value in values.items():
            if b[section][key] != value and not (section == "run" and key in RESUMABLE):
                raise ConfigError(
                    f"{section}.{key}",
                    "cannot change when resuming (it would make a different experiment); "
                    "start a new run instead",
                    sorted(f"run.{k}" for k in RESUMABLE),
                )


#: what an interrupted ``fl run`` / ``fl sweep`` kept, and how to go on
RESUME_HINT = "history and a checkpoint were saved; continue with `phloem fl run --resume RUN_DIR`."


def print_summary(result: SimulationResult) -> None:
    last = result.history.last()
    table = Table(title=f"{result.run_dir.name if result.run_dir else 'run'} ({result.status})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in last.items():
        if isinstance(v, float):
            table.add_row(k, f"{v:.6g}")
        elif v is not None:
            table.add_row(k, str(v))
    console.print(table)
    if result.run_dir is not None:
        console.print(f"run folder: {result.run_dir.path}")


@app.command("run")
def run_cmd(
    config: Annotated[Path | None, typer.Argument(help="TOML config (omit with --resume).")] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override, e.g. --set local.lr=0.05 (repeatable)."),
    ] = None,
    resume: Annotated[
        Path | None, typer.Option(help="Continue the run in this folder from its checkpoint.")
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Run a federated experiment; results go to runs/<name>-<time>/."""
    overrides = set_ or []

    def go() -> SimulationResult:
        if resume is not None:
            rd = RunDir.open(resume)
            saved = load_config(None, [], load_toml(rd.path / RunDir.CONFIG))
            cfg = load_config(None, overrides, load_toml(rd.path / RunDir.CONFIG))
            check_resumable(saved, cfg)
            return run_config(cfg, run_dir=rd, resume=True, progress=progress)
        if config is None:
            raise ConfigError("config", "give a CONFIG file, or --resume RUN_DIR")
        return run_config(load_config(config, overrides), progress=progress)

    print_summary(guarded(go, interrupted=RESUME_HINT))


@app.command("list")
def list_cmd() -> None:
    """List algorithms, compressors, data sets, models, partitions and samplers."""
    from phloem.cli.registry import ALGORITHMS, COMPRESSORS, DATASETS

    # section names like "[data]" are text, not rich markup: escape them
    t = Table(title=escape("algorithms ([algorithm] name)"))
    t.add_column("name")
    t.add_column("paper / summary")
    for name, cls in ALGORITHMS.items():
        doc = sys.modules[cls.__module__].__doc__ or ""
        t.add_row(name.value, escape(doc.strip().splitlines()[0]))
    console.print(t)
    for title, rows in (
        ("compressors ([compressor] name)", COMPRESSORS),
        ("data sets ([data] dataset)", DATASETS),
    ):
        t = Table(title=escape(title))
        t.add_column("name")
        t.add_column("what")
        for k, v in rows.items():
            t.add_row(k.value, escape(v))
        console.print(t)
    lines = {
        "models ([model] name)": ModelName,
        "partitions ([data] partition)": PartitionScheme,
        "sampling ([sampling] scheme)": SamplingScheme,
        "aggregation ([aggregation] name)": AggregationName,
        "dropout stages ([aggregation] dropout_stage)": DropoutStage,
    }
    for what, enum in lines.items():
        console.print(escape(f"{what}: " + ", ".join(m.value for m in enum)))
    console.print(f"{len(AlgorithmName)} algorithms; see docs/fl.md for every config key.")


@app.command("theory")
def theory_cmd(
    config: Annotated[Path, typer.Argument(help="TOML config.")],
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override (repeatable).")] = None,
) -> None:
    """Show the problem's smoothness constants and every method's theoretical step size."""

    def go() -> None:
        from phloem.cli.registry import build_compressor, build_problem, theory_step
        from phloem.core.rng import SeedStreams
        from phloem.fl.algorithms import DCGD, EF21, Diana, Marina

        cfg = load_config(config, set_ or [])
        problem = build_problem(cfg, SeedStreams(cfg.run.seed))
        s = problem.smoothness()
        if s is None:
            raise ConfigError(
                "model.name",
                "smoothness is known only for the quadratic and for linear/logistic models",
                ["linear", "logistic"],
            )
        comp = build_compressor(cfg, problem.dim)
        t = Table(title=f"{cfg.data.dataset.value}: n = {s.n} clients, d = {problem.dim}")
        t.add_column("quantity")
        t.add_column("value", justify="right")
        rows: list[tuple[str, str]] = []
        values = [
            ("L", s.L),
            ("L_max (of n w_i f_i)", s.L_max),
            ("L_tilde", s.L_tilde),
            ("mu", s.mu if s.mu is not None else math.nan),
            ("L / mu", s.condition_number),
        ]
        if comp is not None:
            values += [
                (f"omega of {comp.name}", comp.omega(problem.dim)),
                (f"alpha of {comp.name}", comp.alpha(problem.dim)),
            ]
        for algo in (
            DCGD(compressor=comp),
            Diana(compressor=comp),
            Marina(compressor=comp),
            EF21(compressor=comp),
        ):
            try:
                rows.append((f"step size, {algo.name}", f"{theory_step(algo, problem):.6g}"))
            except ConfigError as e:
                rows.append((f"step size, {algo.name}", f"n/a ({e.problem})"))
        for k, v in values:
            t.add_row(k, f"{v:.6g}")
        for k, text in rows:
            t.add_row(k, text)
        console.print(t)

    guarded(go)


def expand_grid(grid: list[str]) -> list[list[str]]:
    """``["a.b=1,2", "c.d=x,y"]`` -> every combination as a list of ``key=value`` overrides."""
    axes: list[list[str]] = []
    for item in grid:
        if "=" not in item:
            raise ConfigError(item, "a grid axis must look like section.key=v1,v2,...")
        key, values = item.split("=", 1)
        choices = [v.strip() for v in values.split(",") if v.strip()]
        if not choices:
            raise ConfigError(key, "a grid axis needs at least one value")
        axes.append([f"{key.strip()}={v}" for v in choices])
    return [list(combo) for combo in itertools.product(*axes)] if axes else [[]]


@app.command("sweep")
def sweep_cmd(
    config: Annotated[Path, typer.Argument(help="TOML config shared by every run.")],
    grid: Annotated[
        list[str], typer.Option(help="Axis, e.g. --grid local.lr=0.01,0.1 (repeatable).")
    ],
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override for all runs.")] = None,
    x: Annotated[str, typer.Option(help="x axis of the comparison plot.")] = "rounds",
    y: Annotated[str, typer.Option(help="y axis of the comparison plot.")] = "train_loss",
    logx: Annotated[bool, typer.Option(help="Log-scale x.")] = False,
    logy: Annotated[bool, typer.Option(help="Log-scale y.")] = True,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Run every combination of the grid axes, then tabulate and plot them together."""
    from phloem.core.plotting import plot_histories

    def go() -> None:
        combos = expand_grid(grid)
        base = load_config(config, set_ or [])

        # Validate every combination before running any, so a typo fails in a second.
        def named(combo: list[str]) -> list[str]:
            suffix = "-".join(c.split("=", 1)[1] for c in combo)
            return [*(set_ or []), *combo, f"run.name={base.run.name}-{suffix}"]

        cfgs = [load_config(config, named(c)) for c in combos]
        root = Path(base.run.out_dir)
        table = Table(
            title=f"sweep of {len(cfgs)} runs over {', '.join(g.split('=')[0] for g in grid)}"
        )
        table.add_column("run", no_wrap=True)
        for col in (
            "status",
            "train_loss",
            "test_acc",
            "grad_norm",
            "dist_to_opt",
            "bits/client",
        ):
            table.add_column(col)
        runs = []
        for combo, cfg in zip(combos, cfgs, strict=True):
            label = " ".join(f"{k.split('.')[-1]}={v}" for k, v in (c.split("=", 1) for c in combo))
            try:
                res = run_config(cfg, root=root, progress=progress)
                status, last = res.status, res.history.last()
                runs.append((label, res.history))
            except DivergenceError as e:
                err.print(f"[yellow]{label}: diverged[/yellow] ({e})")
                status, last = "diverged", {}

            keys = ("train_loss", "test_acc", "grad_norm", "dist_to_opt", "bits_per_client")
            cells = [last.get(k) for k in keys]
            fmt = [f"{v:.4g}" if isinstance(v, (int, float)) else "-" for v in cells]
            table.add_row(label, status, *fmt)
        console.print(table)
        if runs:
            out = root / f"sweep-{base.run.name}-{y}-vs-{x}.png"
            plot_histories(runs, x, y, out, logx=logx, logy=logy)
            console.print(f"plot: {out}")

    guarded(go, interrupted=RESUME_HINT)
