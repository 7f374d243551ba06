"""``phloem attack ...``: privacy attacks on split models from TOML configs.

Thin: each command parses, calls one library function of :mod:`phloem.attacks` and prints its
typed result. Nothing here imports torch until a command runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from phloem.cli.common import guarded

if TYPE_CHECKING:
    from phloem.attacks.experiment import ExperimentResult
    from phloem.attacks.sweep import AttackSweep
    from phloem.core.registry import Registry

__all__ = ["app"]

app = typer.Typer(help="Privacy attacks on split models.", no_args_is_help=True)

#: what an interrupted run or sweep kept
KEPT = (
    "stopped; the seeds that finished are in the run folder's results.json (status "
    "interrupted); finish with `phloem attack run --resume RUN_DIR` (a sweep: the same "
    "command with --resume SWEEP_DIR)."
)
console = Console()

SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override, e.g. --set victim.split=conv2 (repeatable)."),
]


ProgressOption = Annotated[
    bool, typer.Option(help="Show what each seed is doing, and each finished seed's SSIM.")
]


@contextmanager
def _progress(enabled: bool) -> Iterator[Callable[[str], None] | None]:
    """A spinner showing the current step; finished seeds stay printed."""
    if not enabled:
        yield None
        return
    with console.status("starting") as status:

        def say(line: str) -> None:
            if " done: " in line:
                console.print(escape(f"  {line}"))
            status.update(escape(line))

        yield say


def print_result(result: ExperimentResult) -> None:
    """The run's metrics (mean ± 95% CI over seeds) with their definitions."""
    from phloem.attacks.report import DEFINITIONS

    cfg = result.config
    table = Table(
        title=escape(
            f"{cfg.attack.name} vs {cfg.victim.name} at {cfg.victim.split}, "
            f"{len(cfg.run.seeds)} seed(s)"
        )
    )
    for c in ("metric", "value", "definition"):
        table.add_column(c, justify="right" if c == "value" else "left")
    for key, (mean, half) in result.summary.items():
        value = f"{mean:.4g}" if math.isnan(half) else f"{mean:.4g} ± {half:.2g}"
        table.add_row(key, value, DEFINITIONS.get(key, ""))
    console.print(table)
    console.print(f"run folder: {result.run_dir} (report.md, results.json, plots/grid.png)")


@app.command("run")
def run_cmd(
    config: Annotated[Path | None, typer.Argument(help="TOML config (omit with --resume).")] = None,
    set_: SetOption = None,
    resume: Annotated[
        Path | None,
        typer.Option(help="Finish the run in this folder: only the seeds it lacks are run."),
    ] = None,
    progress: ProgressOption = True,
) -> None:
    """Train (or load) the victim, attack its split, measure; one run folder."""

    def go() -> ExperimentResult:
        from phloem.attacks.experiment import load_config, resume_experiment, run_experiment
        from phloem.core.errors import ConfigError

        with _progress(progress) as say:
            if resume is not None:
                return resume_experiment(resume, set_ or [], on_progress=say)
            if config is None:
                raise ConfigError("config", "give a CONFIG file, or --resume RUN_DIR")
            return run_experiment(load_config(config, set_ or []), on_progress=say)

    print_result(guarded(go, interrupted=KEPT))


@app.command("sweep")
def sweep_cmd(
    config: Annotated[Path, typer.Argument(help="TOML config.")],
    grid: Annotated[
        list[str],
        typer.Option("--grid", help="An axis, e.g. --grid victim.split=pool1,pool2 (repeatable)."),
    ],
    set_: SetOption = None,
    resume: Annotated[
        Path | None,
        typer.Option(help="Finish the sweep in this folder (same CONFIG and --grid)."),
    ] = None,
    progress: ProgressOption = True,
) -> None:
    """Every combination of the grid (all validated first); a table and a plot along the
    first axis."""

    def go() -> AttackSweep:
        from phloem.attacks.sweep import run_sweep

        def done(row: Any) -> None:
            ssim, _ = row.result.summary["ssim"]
            console.print(escape(f"  {' '.join(row.values)}: ssim {ssim:.4g}"))

        with _progress(progress) as say:
            return run_sweep(config, grid, set_ or [], on_run=done, resume=resume, on_progress=say)

    sweep = guarded(go, interrupted=KEPT)
    console.print(sweep.table.read_text())
    files = ["sweep.md", "sweep.json"]
    files += [p.name for p in (sweep.plot, sweep.defence_plot, sweep.grid) if p is not None]
    console.print(f"sweep folder: {sweep.folder} ({', '.join(files)})")


@app.command("report")
def report_cmd(run: Annotated[Path, typer.Argument(help="A run folder of `attack run`.")]) -> None:
    """Print a run's report (metrics with their definitions) again."""

    def go() -> str:
        from phloem.core.errors import RunNotFoundError

        path = run / "report.md"
        if not path.is_file():
            raise RunNotFoundError(
                f"{run} is not a run folder of `phloem attack run` (no report.md)"
            )
        return path.read_text()

    console.print(guarded(go))


@app.command("demo")
def demo_cmd(
    out: Annotated[Path, typer.Option(help="Where the run folder goes.")] = Path("runs"),
) -> None:
    """Faces rebuilt from LeNet's pool1 IRs by an attacker who queried only photographs."""
    from phloem.attacks.demo import run_demo

    print_result(guarded(run_demo, out))


@app.command("list")
def list_cmd() -> None:
    """List victims, attacks, defences and image sets with their keys."""
    guarded(_print_registries)


def _print_registries() -> None:
    from phloem.attacks import registries as r
    from phloem.cli.fl import _registry_table

    tables: dict[str, Registry[Any]] = {
        "victims ([victim] name)": r.VICTIMS,
        "attacks ([attack] name)": r.ATTACKS,
        "defences ([[defences]] name)": r.DEFENCES,
        "image sets ([private] / [aux] name)": r.IMAGE_SETS,
    }
    for title, registry in tables.items():
        console.print(_registry_table(title, registry))
