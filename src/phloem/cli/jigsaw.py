"""``phloem jigsaw ...``: the SPB-aware scheduler's trace-driven simulator.

Thin: each command parses, calls one library function of :mod:`phloem.jigsaw` and prints its
typed result. Nothing here imports the simulator until a command runs.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from phloem.cli.common import guarded

if TYPE_CHECKING:
    from phloem.core.registry import Registry
    from phloem.jigsaw.run import Comparison, SimReport

__all__ = ["app"]

app = typer.Typer(help="Jigsaw: SPB-aware cluster scheduling, simulated.", no_args_is_help=True)
console = Console()
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override, e.g. --set policy.name=gavel (repeatable)."),
]


def _h(seconds: float) -> str:
    return "-" if math.isnan(seconds) else f"{seconds / 3600:.2f} h"


def _table(reports: list[SimReport], title: str) -> None:
    t = Table(title=escape(title))
    cols = ("policy", "finished", "avg JCT", "p99 JCT", "makespan", "GPU-time", "useful/alloc",
            "work/GPU-s", "samples/GPU-s", "util", "net bytes", "restarts", "sim s")  # fmt: skip
    for c in cols:
        t.add_column(c, justify="left" if c == "policy" else "right")
    t.caption = (
        "useful/alloc: useful GPU-seconds over allocated GPU-seconds; work/GPU-s: single-GPU "
        "seconds of work done per allocated GPU-second; sim s: the event loop's wall time"
    )
    for r in reports:
        m = r.metrics
        t.add_row(
            r.config.policy.name, f"{m.finished}/{m.jobs}", _h(m.avg_jct_s), _h(m.p99_jct_s),
            _h(m.makespan_s), f"{m.gpu_time_s / 3600:.0f} h", f"{m.efficiency:.3f}",
            f"{m.work_per_gpu_s:.3f}", f"{m.samples_per_gpu_s:.4g}", f"{m.utilisation:.3f}",
            f"{m.network_bytes:.3g}", str(m.restarts), f"{r.wall_s:.2f}",
        )  # fmt: skip
    (console if console.is_terminal else Console(width=170)).print(t)


def _skipped(report: SimReport) -> None:
    if report.skipped:
        rows = ", ".join(f"{k}: {v}" for k, v in sorted(report.skipped.items()))
        console.print(f"skipped trace rows ({sum(report.skipped.values())}): {escape(rows)}")
    if report.result.refused:
        console.print(f"refused jobs: {report.result.refused}")
    m = report.metrics
    left = m.jobs - m.finished - sum(report.result.refused.values())
    if left > 0:
        console.print(
            f"{left} job(s) unfinished when the simulation stopped at "
            f"{report.result.end_s:.6g} s (sim.max_time_s {report.config.sim.max_time_s:g}, "
            "or a policy that leaves them waiting)"
        )


@app.command("simulate")
def simulate_cmd(
    config: Annotated[Path | None, typer.Argument(help="TOML config (omit: the defaults).")] = None,
    set_: SetOption = None,
) -> None:
    """Simulate one policy on one trace; a run folder with figures, per-job CSV and plots."""

    def go() -> SimReport:
        from phloem.jigsaw.config import load_config
        from phloem.jigsaw.run import run_simulation

        return run_simulation(load_config(config, set_ or []))

    r = guarded(go, interrupted="stopped; nothing was saved (a simulation is rerun, not resumed).")
    _table([r], f"{r.result.trace.source}: {len(r.result.trace)} jobs on "
                f"{r.config.cluster.num_gpus} GPUs")  # fmt: skip
    _skipped(r)
    console.print(f"run folder: {r.run_dir} (summary.json, jobs.csv, timeline.csv, plots/)")


@app.command("compare")
def compare_cmd(
    config: Annotated[Path | None, typer.Argument(help="TOML config (omit: the defaults).")] = None,
    policy: Annotated[
        list[str] | None,
        typer.Option("--policy", help="A policy to compare (repeatable; default: all)."),
    ] = None,
    set_: SetOption = None,
    out: Annotated[
        Path | None, typer.Option(help="Write comparison.json and a JCT CDF here.")
    ] = None,
) -> None:
    """The same trace and cluster under several policies, side by side."""

    def go() -> Comparison:
        from phloem.jigsaw.config import load_config
        from phloem.jigsaw.registries import POLICIES
        from phloem.jigsaw.run import compare_policies

        cfg = load_config(config, set_ or [])
        return compare_policies(cfg, policy or list(POLICIES.names()), out_dir=out)

    c = guarded(go, interrupted="stopped; nothing was saved.")
    first = c.reports[0]
    _table(list(c.reports), f"{first.result.trace.source}: {len(first.result.trace)} jobs on "
                            f"{first.config.cluster.num_gpus} GPUs")  # fmt: skip
    _skipped(first)
    if c.out_dir is not None:
        console.print(f"wrote {c.out_dir / 'comparison.json'} and {c.out_dir / 'jct_cdf.png'}")


@app.command("demo")
def demo_cmd(
    out: Annotated[Path, typer.Option(help="Where comparison.json and the plot go.")] = Path(
        "runs/jigsaw-demo"
    ),
) -> None:
    """Every policy on the bundled 160-job Pollux workload, half the jobs accepting SPB."""

    def go() -> Comparison:
        from phloem.jigsaw.registries import POLICIES
        from phloem.jigsaw.run import compare_policies, demo_config

        return compare_policies(demo_config(out), list(POLICIES.names()), out_dir=out)

    c = guarded(go, interrupted="stopped; nothing was saved.")
    _table(list(c.reports), "the bundled Pollux workload (160 jobs, 1x load) on 16 x 4 GPUs, "
                            "half the jobs accepting SPB, penalty on")  # fmt: skip
    console.print(f"wrote {out / 'comparison.json'} and {out / 'jct_cdf.png'}")


@app.command("list")
def list_cmd() -> None:
    """List scheduling policies and trace readers with their keys."""
    guarded(_print_registries)


def _print_registries() -> None:
    from phloem.cli.fl import _registry_table
    from phloem.jigsaw import registries as r

    tables: dict[str, Registry[Any]] = {
        "policies ([policy] name)": r.POLICIES,
        "traces ([trace] name)": r.TRACES,
    }
    for title, registry in tables.items():
        console.print(_registry_table(title, registry))
