"""The ``phloem`` command line (typer + rich)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from phloem.cli import attack, data, fl, iot, jigsaw, secagg, spb
from phloem.cli.common import err, guarded
from phloem.core.history import History
from phloem.core.rundir import RunDir, list_runs

__all__ = ["app", "main"]

app = typer.Typer(
    help="phloem: private, efficient distributed machine learning.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(fl.app, name="fl")
app.add_typer(data.app, name="data")
app.add_typer(secagg.app, name="secagg")
app.add_typer(iot.app, name="iot")
app.add_typer(attack.app, name="attack")
app.add_typer(spb.app, name="spb")
app.add_typer(jigsaw.app, name="jigsaw")
runs_app = typer.Typer(help="Inspect run folders.", no_args_is_help=True)
app.add_typer(runs_app, name="runs")
console = Console()


@runs_app.command("list")
def runs_list(
    root: Annotated[Path, typer.Option(help="Folder holding runs.")] = Path("runs"),
) -> None:
    """List runs with status, rounds and final metrics."""
    infos = list_runs(root)
    if not infos:
        console.print(f"no runs under {root}")
        return
    t = Table(title=f"runs in {root}")
    for c in ("run", "status", "rounds", "train_loss", "test_acc", "bits/client"):
        t.add_column(c)
    for info in infos:
        last = info.summary.get("final", {}) or {}

        def f(key: str, last: dict[str, object] = last) -> str:
            v = last.get(key)
            return f"{v:.4g}" if isinstance(v, (int, float)) else "-"

        t.add_row(
            info.name,
            info.status,
            str(max(info.rounds - 1, 0)),
            f("train_loss"),
            f("test_acc"),
            f("bits_per_client"),
        )
    console.print(t)


@runs_app.command("show")
def runs_show(
    run: Annotated[Path, typer.Argument(help="A run folder.")],
    every: Annotated[int, typer.Option(help="Show every N-th round.")] = 1,
) -> None:
    """Show a run's config, status and history."""
    rd = guarded(RunDir.open, run)
    console.print(f"[bold]{rd.name}[/bold]  status: {rd.info().status}")
    if (rd.path / RunDir.CONFIG).is_file():
        console.print(rd.read_config(), markup=False, highlight=False)
    h = rd.history()
    cols = [
        k
        for k in (
            "round",
            "clients",
            "train_loss",
            "test_loss",
            "test_acc",
            "objective",
            "grad_norm",
            "dist_to_opt",
            "bits_per_client",
            "wall_s",
        )
        if k in h.columns()
    ]
    t = Table()
    for c in cols:
        t.add_column(c, justify="right")
    for i, row in enumerate(h.rows):
        if i % max(every, 1) and i != len(h) - 1:
            continue
        t.add_row(
            *[
                (f"{v:.5g}" if isinstance(v, float) else str(v if v is not None else "-"))
                for v in (row.get(c) for c in cols)
            ]
        )
    console.print(t)


@app.command("plot")
def plot_cmd(
    runs: Annotated[list[Path], typer.Argument(help="Run folders to compare.")],
    x: Annotated[
        str, typer.Option(help="x axis: rounds, bits, total_bits, time, samples or a column.")
    ] = "rounds",
    y: Annotated[
        str, typer.Option(help="y axis: loss, accuracy, grad_norm, dist, gap or a column.")
    ] = "train_loss",
    logx: Annotated[bool, typer.Option(help="Log-scale x.")] = False,
    logy: Annotated[bool, typer.Option(help="Log-scale y.")] = True,
    out: Annotated[Path, typer.Option(help="Output file (.png, .pdf, .svg).")] = Path("plot.png"),
    title: Annotated[str | None, typer.Option(help="Figure title.")] = None,
) -> None:
    """Plot several runs in one figure (paper-style comparisons)."""
    from phloem.core.plotting import plot_histories

    pairs: list[tuple[str, History]] = []
    for r in runs:
        rd = guarded(RunDir.open, r)
        pairs.append((rd.name, rd.history()))
    try:
        path = plot_histories(pairs, x, y, out, logx=logx, logy=logy, title=title)
    except ValueError as e:
        console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(2) from None
    console.print(f"wrote {path}")


@app.command("demo")
def demo_cmd(
    rounds: Annotated[int, typer.Option(help="Rounds per method.")] = 40,
    out: Annotated[Path, typer.Option(help="Where run folders go.")] = Path("runs"),
) -> None:
    """FedAvg vs DIANA + Rand-K on digits over 100 non-IID clients: table and plot."""
    from phloem.fl.demo import run_demo

    result = guarded(run_demo, rounds, out)
    for run in result.runs:
        console.print(f"  {run.name}: run folder {run.run_dir or '-'}")
    table = Table(
        title=f"digits, 100 non-IID clients (Dirichlet 0.3), 20 per round, {rounds} rounds"
    )
    for c in ("method", "test acc", "train loss", "uplink bits/client", "wall s"):
        table.add_column(c, justify="right")
    for run in result.runs:
        last = run.history.last()
        table.add_row(
            run.name,
            f"{float(last.get('test_acc') or 0):.3f}",
            f"{float(last.get('train_loss') or 0):.4f}",
            f"{float(last.get('bits_per_client') or 0):.3g}",
            f"{run.seconds:.1f}",
        )
    console.print(table)
    console.print(f"plots: {result.plots[0]} and {result.plots[1]}")


def main() -> None:
    """Console-script entry point."""
    from phloem.core.registry import plugin_errors

    for problem in plugin_errors():  # phloem still works without them; say so once
        err.print(f"[yellow]warning:[/yellow] {escape(problem)}")
    app()


if __name__ == "__main__":
    main()
