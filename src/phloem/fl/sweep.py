"""Sweeps: every combination of a grid of config overrides, run one after another.

``phloem fl sweep CONFIG --grid algorithm.name=dcgd,diana --grid server.lr=0.1,0.2`` is
:func:`run_sweep`: every combination is validated before any runs (a typo fails in a second),
each gets its own run folder, a diverging run is recorded as such and the sweep goes on, and
the histories are drawn in one comparison plot.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from phloem.core.config import expand_grid
from phloem.core.errors import DivergenceError
from phloem.core.history import History, Row
from phloem.fl.config import ExperimentConfig, load_config

__all__ = ["PlotSpec", "SweepResult", "SweepRun", "expand_grid", "plan_sweep", "run_sweep"]


@dataclass(frozen=True)
class PlotSpec:
    """The comparison plot's axes (names or aliases of history columns) and scales."""

    x: str = "rounds"
    y: str = "train_loss"
    logx: bool = False
    logy: bool = True


@dataclass(frozen=True)
class SweepRun:
    """One combination: its label, how it ended and its last row (empty when diverged)."""

    label: str
    status: str
    last: Row
    history: History | None = None
    message: str = ""


@dataclass(frozen=True)
class SweepResult:
    """Every run of a sweep, in grid order, and the comparison plot (``None``: no run ended)."""

    axes: tuple[str, ...]
    runs: tuple[SweepRun, ...]
    plot: Path | None


def plan_sweep(
    config: Path, grid: Sequence[str], overrides: Sequence[str]
) -> list[tuple[str, ExperimentConfig]]:
    """``(label, config)`` of every combination, each validated, each with its own run name."""
    combos = expand_grid(grid)
    base = load_config(config, list(overrides))

    def named(combo: list[str]) -> list[str]:
        suffix = "-".join(c.split("=", 1)[1] for c in combo)
        return [*overrides, *combo, f"run.name={base.run.name}-{suffix}"]

    def label(combo: list[str]) -> str:
        return " ".join(f"{k.split('.')[-1]}={v}" for k, v in (c.split("=", 1) for c in combo))

    return [(label(c), load_config(config, named(c))) for c in combos]


def run_sweep(
    config: Path,
    grid: Sequence[str],
    overrides: Sequence[str] = (),
    *,
    plot: PlotSpec | None = None,
    progress: bool = False,
    on_run: Callable[[SweepRun], None] | None = None,
) -> SweepResult:
    """Run every combination of ``grid`` over ``config`` and plot them together.

    ``on_run`` is told of each run as it ends. The plot goes to
    ``<out_dir>/sweep-<name>-<y>-vs-<x>.png``.
    """
    from phloem.core.plotting import plot_histories
    from phloem.fl.experiment import run_experiment

    plan = plan_sweep(config, grid, overrides)
    base = load_config(config, list(overrides))
    root = Path(base.run.out_dir)
    runs: list[SweepRun] = []
    for label, cfg in plan:
        try:
            res = run_experiment(cfg, root=root, progress=progress)
            run = SweepRun(label, res.status, res.history.last(), res.history)
        except DivergenceError as e:
            run = SweepRun(label, "diverged", {}, None, str(e))
        runs.append(run)
        if on_run is not None:
            on_run(run)
    spec = plot or PlotSpec()
    ended = [(r.label, r.history) for r in runs if r.history is not None]
    out = None
    if ended:
        out = root / f"sweep-{base.run.name}-{spec.y}-vs-{spec.x}.png"
        plot_histories(ended, spec.x, spec.y, out, logx=spec.logx, logy=spec.logy)
    axes = tuple(g.split("=")[0] for g in grid)
    return SweepResult(axes, tuple(runs), out)
