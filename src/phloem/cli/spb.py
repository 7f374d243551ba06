"""``phloem spb ...``: structured partial backpropagation from TOML configs.

Thin: each command parses, calls one library function of :mod:`phloem.spb` and prints its
typed result. Nothing here imports torch until a command runs.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from phloem.cli.common import guarded

if TYPE_CHECKING:
    from phloem.core.registry import Registry
    from phloem.spb.accounting import Profile
    from phloem.spb.demo import DemoResult
    from phloem.spb.report import RunRow
    from phloem.spb.train import TrainResult

__all__ = ["app"]

app = typer.Typer(help="Structured partial backpropagation.", no_args_is_help=True)
console = Console()

KEPT = (
    "stopped; the finished epochs' history and checkpoint are in the run folder; continue "
    "with `phloem spb train --resume RUN_DIR`."
)
#: the time stamp a run folder's name ends with (``-20261206-170000``, ``-2``)
_STAMP = re.compile(r"-\d{8}-\d{6}(-\d+)?$")
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override, e.g. --set plan.name=rotating (repeatable)."),
]


def _num(v: float, unit: str = "") -> str:
    if math.isnan(v):
        return "-"
    for k, s in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= k:
            return f"{v / k:.3g}{s}{unit}"
    return f"{v:.3g}{unit}"


def print_runs(rows: list[RunRow], title: str) -> None:
    """Runs side by side: accuracy, costs per rank, time to the target accuracy."""
    t = Table(title=escape(title))
    cols = (
        "run", "plan", "acc", "bwd FLOP", "bwd FLOP/rank", "saved B/rank", "sent B/rank",
        "wall s", "to target",
    )  # fmt: skip
    for c in cols:
        t.add_column(c, justify="left" if c in ("run", "plan") else "right")
    t.caption = (
        "bwd FLOP: all ranks; /rank: the busiest rank (saved: its peak activation bytes); "
        "sent: mean over ranks; to target: epoch, wall s, bwd FLOP"
    )
    for r in rows:
        tt = r.to_target
        target = (
            f"{tt['epoch'] + 1}, {tt['wall_s']:.1f}, {_num(tt['backward_flops'])}" if tt else "-"
        )
        t.add_row(
            escape(_STAMP.sub("", r.name)), r.plan, f"{r.test_acc:.4f}",
            _num(r.backward_flops), _num(r.backward_flops_max_rank),
            _num(r.saved_bytes_max_rank), _num(r.bytes_sent_mean_rank),
            f"{r.wall_s:.1f}", target,
        )  # fmt: skip
    # a pipe or a log gets the whole table on one line per run, not rich's 80 columns
    (console if console.is_terminal else Console(width=160)).print(t)


def _print_result(result: TrainResult) -> None:
    from phloem.spb.report import compare

    print_runs(compare([result.run_dir]), f"{result.summary.get('status')}")
    console.print(f"run folder: {result.run_dir} (history.jsonl, summary.json, profile.json)")


@app.command("train")
def train_cmd(
    config: Annotated[Path | None, typer.Argument(help="TOML config (omit with --resume).")] = None,
    set_: SetOption = None,
    nproc: Annotated[
        int,
        typer.Option(help="Processes under torchrun (= spb.workers); 0: virtual workers."),
    ] = 0,
    resume: Annotated[
        Path | None, typer.Option(help="Continue the run in this folder from its checkpoint.")
    ] = None,
) -> None:
    """Train with a depth plan; one run folder under run.out_dir."""

    def go() -> TrainResult:
        from phloem.core.errors import ConfigError
        from phloem.core.rundir import RunDir
        from phloem.spb.config import load_config
        from phloem.spb.train import launch, resume_training, train

        if resume is not None:
            if nproc:
                cfg = load_config(RunDir.open(resume).path / RunDir.CONFIG, set_ or [])
                return launch(cfg, nproc, resume=resume)
            return resume_training(resume, set_ or [])
        if config is None:
            raise ConfigError("config", "give a CONFIG file, or --resume RUN_DIR")
        cfg = load_config(config, set_ or [])
        return launch(cfg, nproc) if nproc else train(cfg)

    _print_result(guarded(go, interrupted=KEPT))


@app.command("profile")
def profile_cmd(
    model: Annotated[str, typer.Argument(help="A model name (phloem spb list).")],
    set_: SetOption = None,
    batch_size: Annotated[int, typer.Option(help="Inputs per step (one worker's shard).")] = 32,
    repeats: Annotated[int, typer.Option(help="Timed repeats (the median is kept).")] = 5,
    out: Annotated[
        Path | None, typer.Option(help="Write profile.json and profile.csv here.")
    ] = None,
) -> None:
    """Per-block and per-depth costs: FLOPs, activation bytes, parameter bytes, times."""

    def go() -> Profile:
        from phloem.spb.report import profile_named

        return profile_named(model, set_ or [], batch_size=batch_size, repeats=repeats)

    p = guarded(go)
    t = Table(title=escape(f"{p.model}, batch {p.batch_size}, {p.threads} thread(s)"))
    cols = ("block", "params B", "fwd FLOPs", "bwd FLOPs", "saved B", "fwd ms", "bwd ms")
    for c in cols:
        t.add_column(c, justify="left" if c == "block" else "right")
    for b in p.blocks:
        t.add_row(
            b.name, _num(b.param_bytes), _num(b.forward_flops), _num(b.backward_flops),
            _num(b.saved_bytes), f"{b.forward_ms:.2f}", f"{b.backward_ms:.2f}",
        )  # fmt: skip
    console.print(t)
    full = p.depths[-1]
    d = Table(title="one worker's step by depth (share of full depth)")
    for col in ("depth", "bwd FLOPs", "saved B", "step ms"):
        d.add_column(col, justify="right")
    for cost, ms in zip(p.depths, p.step_ms, strict=True):
        flops, saved = cost.backward_flops, cost.saved_bytes
        d.add_row(
            str(cost.depth),
            f"{_num(flops)} ({flops / max(full.backward_flops, 1):.0%})",
            f"{_num(saved)} ({saved / max(full.saved_bytes, 1):.0%})",
            f"{ms:.1f}",
        )
    console.print(d)
    if out is not None:
        from phloem.spb.accounting import write_profile

        js, cs = guarded(write_profile, p, out)
        console.print(f"wrote {js} and {cs}")


@app.command("compare")
def compare_cmd(
    runs: Annotated[list[Path], typer.Argument(help="Run folders of `phloem spb train`.")],
) -> None:
    """Runs side by side: accuracy, backward FLOPs, bytes, wall time, time to target."""
    from phloem.spb.report import compare

    print_runs(guarded(compare, runs), f"{len(runs)} run(s)")


@app.command("demo")
def demo_cmd(
    out: Annotated[Path, typer.Option(help="Where the run folders go.")] = Path("runs"),
) -> None:
    """Four workers on digits: full backprop vs SPB plans vs FreezeOut; then torchrun."""

    def go() -> DemoResult:
        from phloem.spb.demo import run_demo

        return run_demo(out)

    result = guarded(go, interrupted=KEPT)
    from phloem.spb.report import compare

    paths = [r.run_dir for r in result.virtual.values()] + [result.distributed.run_dir]
    print_runs(compare(paths), "LeNet-5 on digits, 4 workers, 6 epochs (target 90%)")
    v = result.virtual["static"].summary["final"]
    d = result.distributed.summary["final"]
    console.print(
        f"static plan, virtual workers vs 4 torchrun processes: test accuracy {v['test_acc']:.4f}"
        f" vs {d['test_acc']:.4f}, training loss {v['train_loss']:.4f} vs {d['train_loss']:.4f}"
        " (the same arithmetic; sums in another order drift apart slowly over epochs)"
    )


@app.command("list")
def list_cmd() -> None:
    """List models, depth plans and sync methods with their keys."""
    guarded(_print_registries)


def _print_registries() -> None:
    from phloem.cli.fl import _registry_table
    from phloem.spb import registries as r

    tables: dict[str, Registry[Any]] = {
        "models ([model] name)": r.MODELS,
        "depth plans ([plan] name)": r.DEPTH_PLANS,
        "sync methods ([spb] sync)": r.SYNC_METHODS,
    }
    for title, registry in tables.items():
        console.print(_registry_table(title, registry))
