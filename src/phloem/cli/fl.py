"""``phloem fl ...``: run experiments from TOML configs and list what can be configured.

Thin: each command parses, calls one library function of :mod:`phloem.fl` and prints its typed
result. Nothing here imports torch until a command runs.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from phloem.cli.common import err, guarded
from phloem.core.errors import ConfigError

if TYPE_CHECKING:
    from phloem.core.registry import Registry
    from phloem.fl.experiment import OptimumReport, TheoryReport
    from phloem.fl.simulate import SimulationResult
    from phloem.fl.sweep import SweepResult, SweepRun

__all__ = ["app"]

app = typer.Typer(help="Federated-optimisation simulator.", no_args_is_help=True)
console = Console()

#: what an interrupted ``fl run`` / ``fl sweep`` kept, and how to go on
RESUME_HINT = "history and a checkpoint were saved; continue with `phloem fl run --resume RUN_DIR`."

SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override, e.g. --set local.lr=0.05 (repeatable)."),
]


def print_summary(result: SimulationResult) -> None:
    """The last history row of a run, and where its folder is."""
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
    if result.privacy is not None:
        eps, p = last.get("epsilon"), result.privacy
        shown = f"{eps:.4g}" if isinstance(eps, float) else str(eps)
        console.print(
            f"client-level DP: epsilon = {shown} at delta = {p['delta']:g} "
            f"({p['accountant']} accountant; noise multiplier {p['noise_multiplier']:.4g}, "
            f"clip {p['clip']:g}, sample rate {p['sample_rate']:g})"
        )
    if result.run_dir is not None:
        console.print(f"run folder: {result.run_dir.path}")


@app.command("run")
def run_cmd(
    config: Annotated[Path | None, typer.Argument(help="TOML config (omit with --resume).")] = None,
    set_: SetOption = None,
    resume: Annotated[
        Path | None, typer.Option(help="Continue the run in this folder from its checkpoint.")
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Run a federated experiment; results go to runs/<name>-<time>/."""
    overrides = set_ or []

    def go() -> SimulationResult:
        from phloem.fl.config import load_config
        from phloem.fl.experiment import resume_experiment, run_experiment

        if resume is not None:
            return resume_experiment(resume, overrides, progress=progress)
        if config is None:
            raise ConfigError("config", "give a CONFIG file, or --resume RUN_DIR")
        return run_experiment(load_config(config, overrides), progress=progress)

    print_summary(guarded(go, interrupted=RESUME_HINT))


def _default(v: object) -> str:
    """A default as a config file spells it."""
    if isinstance(v, Enum):
        return repr(v.value)
    return repr(list(v)) if isinstance(v, tuple) else repr(v)


def _registry_table(title: str, registry: Registry[Any]) -> Table:
    t = Table(title=escape(title))
    for col in ("name", "what", "keys (default)"):
        t.add_column(col)
    for e in registry.entries():
        keys = ", ".join(f"{k} ({_default(v)})" for k, v in e.params)
        t.add_row(e.name, escape(e.description), escape(keys or "-"))
    return t


@app.command("list")
def list_cmd() -> None:
    """List algorithms, compressors, data sets, models, partitions, samplers and the rest."""
    guarded(_print_registries)


def _print_registries() -> None:
    from phloem.data.registries import DATASETS, PARTITIONS
    from phloem.fl import registries as r
    from phloem.fl.config import ANY_STAGE
    from phloem.secagg import PROTOCOL_STAGES

    tables: dict[str, Registry[Any]] = {
        "algorithms ([algorithm] name)": r.ALGORITHMS,
        "compressors ([compressor] name)": r.COMPRESSORS,
        "data sets ([data] dataset)": DATASETS,
        "partitions ([data] partition)": PARTITIONS,
        "models ([model] name)": r.MODELS,
        "local solvers ([local] solver)": r.LOCAL_SOLVERS,
        "server optimisers ([server] optimizer)": r.SERVER_OPTIMIZERS,
        "step-size schedules ([local] schedule, [server] schedule)": r.SCHEDULES,
        "sampling ([sampling] scheme)": r.SAMPLERS,
        "aggregation ([aggregation] name)": r.AGGREGATIONS,
    }
    for title, registry in tables.items():
        console.print(_registry_table(title, registry))
        console.print(escape(f"{title}: " + ", ".join(registry.names())))
    stages = ", ".join([ANY_STAGE, *PROTOCOL_STAGES])
    console.print(escape(f"dropout stages ([aggregation] dropout_stage): {stages}"))
    console.print(f"{len(r.ALGORITHMS)} algorithms; see docs/fl.md for every config key.")


def _theory_table(report: TheoryReport) -> Table:
    t = Table(title=f"{report.dataset}: n = {report.num_clients} clients, d = {report.dim}")
    t.add_column("quantity")
    t.add_column("value", justify="right")
    for k, v in report.constants:
        t.add_row(k, f"{v:.6g}")
    for name, step, why in report.steps:
        t.add_row(f"step size, {name}", f"{step:.6g}" if step is not None else f"n/a ({why})")
    return t


@app.command("theory")
def theory_cmd(
    config: Annotated[Path, typer.Argument(help="TOML config.")],
    set_: SetOption = None,
) -> None:
    """Show the problem's smoothness constants and every method's theoretical step size."""

    def go() -> TheoryReport:
        from phloem.fl.config import load_config
        from phloem.fl.experiment import theory_report

        return theory_report(load_config(config, set_ or []))

    console.print(_theory_table(guarded(go)))


@app.command("optimum")
def optimum_cmd(
    config: Annotated[Path, typer.Argument(help="TOML config (a binary_logistic model).")],
    set_: SetOption = None,
    out: Annotated[
        Path | None, typer.Option(help="Also write x*, f* and the constants here (JSON).")
    ] = None,
) -> None:
    """Solve the config's L2-regularised binary logistic problem exactly (Newton, float64):
    x*, f*, ||grad f(x*)||, and L and mu of the model actually used."""

    def go() -> OptimumReport:
        from phloem.fl.config import load_config
        from phloem.fl.experiment import optimum_report

        return optimum_report(load_config(config, set_ or []))

    r = guarded(go)
    t = Table(title=f"{r.dataset}: d = {r.dim}, N = {r.num_samples}")
    t.add_column("quantity")
    t.add_column("value", justify="right")
    norm = sum(v * v for v in r.x_star) ** 0.5
    rows = [
        ("f*", f"{r.f_star:.15g}"),
        ("||grad f(x*)||", f"{r.grad_norm:.3g}"),
        ("Newton steps", str(r.iterations)),
        ("seconds", f"{r.seconds:.2f}" + ("" if r.cached is None else " (when solved)")),
        ("L (global bound)", f"{r.L:.6g}"),
        ("L at x*", f"{r.L_at_opt:.6g}"),
        ("mu", f"{r.mu:.6g}"),
        ("||x*||", f"{norm:.6g}"),
    ]
    for k, v in rows:
        t.add_row(k, v)
    console.print(t)
    if r.cached is not None:
        console.print(f"read from the cache (gradient checked there): {r.cached}")
    if out is not None:
        import dataclasses
        import json

        out.write_text(json.dumps(dataclasses.asdict(r), indent=1))


def _sweep_table(result: SweepResult) -> Table:
    table = Table(title=f"sweep of {len(result.runs)} runs over {', '.join(result.axes)}")
    table.add_column("run", no_wrap=True)
    for col in ("status", "train_loss", "test_acc", "grad_norm", "dist_to_opt", "bits/client"):
        table.add_column(col)
    keys = ("train_loss", "test_acc", "grad_norm", "dist_to_opt", "bits_per_client")
    for run in result.runs:
        cells = [run.last.get(k) for k in keys]
        fmt = [f"{v:.4g}" if isinstance(v, (int, float)) else "-" for v in cells]
        table.add_row(run.label, run.status, *fmt)
    return table


def _report_divergence(run: SweepRun) -> None:
    if run.status == "diverged":
        err.print(f"[yellow]{escape(run.label)}: diverged[/yellow] ({escape(run.message)})")


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

    def go() -> SweepResult:
        from phloem.fl.sweep import PlotSpec, run_sweep

        plot = PlotSpec(x, y, logx, logy)
        return run_sweep(
            config, grid, set_ or [], plot=plot, progress=progress, on_run=_report_divergence
        )

    result = guarded(go, interrupted=RESUME_HINT)
    console.print(_sweep_table(result))
    if result.plot is not None:
        console.print(f"plot: {result.plot}")
