"""Sweeps of attack runs: every combination of a grid of overrides, one table and one plot.

``phloem attack sweep CONFIG --grid victim.split=pool1,pool2,fc1 --grid attack.name=rmle,...``
is :func:`run_sweep`: every combination is validated before any runs (a typo fails at once),
each is a full :func:`~phloem.attacks.experiment.run_experiment` (all its seeds) in the sweep's
folder, and the sweep writes ``sweep.md`` / ``sweep.json`` (one row per combination, mean and
95% interval over seeds of every metric) and ``metric-vs-<axis>.png``: attacker SSIM along the
first grid axis (e.g. the split depth), one line per combination of the others. When the first
axis is a defence's parameter (``--grid defences.0.sigma=0,0.5,1``) it also writes
``defence.png`` in He et al.'s form: the deployed model's accuracy against the attacker's SSIM,
one curve per combination of the other axes.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from phloem.attacks.experiment import (
    OPTIONAL_METRICS,
    ExperimentConfig,
    ExperimentResult,
    load_config,
)
from phloem.core.config import expand_grid, to_dict

__all__ = ["AttackSweep", "SweepRow", "plan_sweep", "run_sweep"]

#: the columns of a sweep table, after the grid's own
COLUMNS = ("ssim", "ssim_he", "psnr", "identification", "victim_accuracy", "defended_accuracy")


@dataclass(frozen=True)
class SweepRow:
    """One combination: its grid values and its run."""

    values: tuple[str, ...]
    result: ExperimentResult


@dataclass(frozen=True)
class AttackSweep:
    """Every combination in grid order, and where the table and plot went."""

    axes: tuple[str, ...]
    rows: tuple[SweepRow, ...]
    folder: Path
    table: Path
    plot: Path | None
    #: accuracy vs attacker SSIM (a defence parameter on the first axis), else ``None``
    defence_plot: Path | None = None
    #: the private images above each combination's reconstructions (first seed), if any
    grid: Path | None = None


def plan_sweep(
    config: Path | None, grid: Sequence[str], overrides: Sequence[str] = ()
) -> list[tuple[tuple[str, ...], ExperimentConfig]]:
    """``(grid values, config)`` of every combination, each validated before any runs."""
    out = []
    for combo in expand_grid(grid):
        values = tuple(c.split("=", 1)[1] for c in combo)
        cfg = load_config(config, [*overrides, *combo])
        suffix = "-".join(values) or "base"
        out.append((values, replace(cfg, run=replace(cfg.run, name=f"{cfg.run.name}-{suffix}"))))
    return out


def _cell(result: ExperimentResult, key: str) -> str:
    mean, half = result.summary[key]
    return f"{mean:.4g}" if math.isnan(half) else f"{mean:.4g} ± {half:.2g}"


def _plot(axes: Sequence[str], rows: Sequence[SweepRow], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = list(dict.fromkeys(r.values[0] for r in rows))
    lines: dict[tuple[str, ...], dict[str, tuple[float, float]]] = {}
    for r in rows:
        lines.setdefault(r.values[1:], {})[r.values[0]] = r.result.summary["ssim"]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for key, points in lines.items():
        got = [x for x in xs if x in points]
        means = [points[x][0] for x in got]
        errs = [0.0 if math.isnan(points[x][1]) else points[x][1] for x in got]
        label = ", ".join(f"{a.split('.')[-1]}={v}" for a, v in zip(axes[1:], key, strict=True))
        ax.errorbar(got, means, yerr=errs, marker="o", capsize=3, label=label or None)
    ax.set_xlabel(axes[0])
    ax.set_ylabel("attacker SSIM (Gaussian 11x11)")
    ax.set_ylim(0, 1)
    if len(lines) > 1:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _defence_plot(axes: Sequence[str], rows: Sequence[SweepRow], path: Path) -> Path:
    """He et al.'s defence plot: accuracy (y) against attacker SSIM (x), along the first axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves: dict[tuple[str, ...], list[SweepRow]] = {}
    for r in rows:
        curves.setdefault(r.values[1:], []).append(r)
    fig, ax = plt.subplots(figsize=(5, 3.8))
    for key, points in curves.items():
        xs = [p.result.summary["ssim"][0] for p in points]
        ys = [p.result.summary["defended_accuracy"][0] for p in points]
        label = ", ".join(f"{a.split('.')[-1]}={v}" for a, v in zip(axes[1:], key, strict=True))
        ax.plot(xs, ys, marker="o", label=label or axes[0])
        for p, x, y in zip(points, xs, ys, strict=True):
            ax.annotate(p.values[0], (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("attacker SSIM (Gaussian 11x11)")
    ax.set_ylabel("accuracy with the defence")
    ax.set_xlim(0, 1)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _grid(axes: Sequence[str], rows: Sequence[SweepRow], path: Path) -> Path | None:
    """One image grid for the sweep: the private images (first seed) above every
    combination's reconstructions, each row labelled with its grid values; ``None`` when the
    combinations did not see the same private images (or saved none)."""
    import numpy as np
    import torch

    from phloem.attacks.experiment import SAMPLES
    from phloem.attacks.report import save_rows

    originals = None
    labelled = []
    for r in rows:
        file = r.result.run_dir / "plots" / SAMPLES
        if not file.is_file():
            return None
        with np.load(file) as z:
            private, recon = z["private"], z["reconstructions"]
        if originals is None:
            originals = private
        elif private.shape != originals.shape or not np.array_equal(private, originals):
            return None
        labelled.append(("\n".join(r.values), torch.from_numpy(recon)))
    if originals is None:
        return None
    title = " / ".join(a.split(".")[-1] for a in axes)
    return save_rows(torch.from_numpy(originals), labelled, path, title=title)


def _prefixed(tell: Callable[[str], None], values: Sequence[str], line: str) -> None:
    tell(f"{' '.join(values)}: {line}")


def _key(cfg: ExperimentConfig) -> str:
    """What identifies a combination's run: its whole config."""
    return json.dumps(to_dict(cfg), sort_keys=True, default=str)


def _earlier_runs(folder: Path) -> dict[str, Path]:
    """The run folders already in a sweep folder, by :func:`_key` of their config (a folder
    whose config no longer loads is left alone: its combination runs again)."""
    from phloem.core.errors import PhloemError
    from phloem.core.rundir import RunDir

    found: dict[str, Path] = {}
    for sub in sorted(p for p in folder.iterdir() if (p / RunDir.CONFIG).is_file()):
        try:
            found[_key(load_config(sub / RunDir.CONFIG))] = sub
        except (PhloemError, OSError, ValueError):
            continue
    return found


def run_sweep(
    config: Path | None,
    grid: Sequence[str],
    overrides: Sequence[str] = (),
    *,
    root: Path | None = None,
    on_run: Callable[[SweepRow], None] | None = None,
    resume: Path | None = None,
    on_progress: Callable[[str], None] | None = None,
) -> AttackSweep:
    """Run every combination of ``grid`` over ``config`` into one sweep folder (``resume``:
    the folder of an earlier, interrupted run of the same sweep, whose runs are reused).

    Raises
    ------
    ConfigError
        Before anything runs, for any combination with a bad key or value.
    RunNotFoundError
        When ``resume`` is not a folder.
    """
    from phloem.attacks.experiment import run_experiment
    from phloem.core.errors import RunNotFoundError
    from phloem.core.rundir import RunDir

    plan = plan_sweep(config, grid, overrides)
    base = load_config(config, list(overrides))
    if resume is not None and not resume.is_dir():
        raise RunNotFoundError(f"{resume} is not a sweep folder of `phloem attack sweep`")
    folder = (
        resume
        if resume is not None
        else RunDir.create(root or Path(base.run.out_dir), f"sweep-{base.run.name}").path
    )
    earlier = _earlier_runs(folder)
    axes = tuple(g.split("=", 1)[0].strip() for g in grid)
    rows = []
    for values, cfg in plan:
        cfg = replace(cfg, run=replace(cfg.run, out_dir=str(folder)))
        say = None if on_progress is None else functools.partial(_prefixed, on_progress, values)
        row = SweepRow(values, run_experiment(cfg, run_dir=earlier.get(_key(cfg)), on_progress=say))
        rows.append(row)
        if on_run is not None:
            on_run(row)
    columns = [*COLUMNS, *(k for k in OPTIONAL_METRICS if all(k in r.result.summary for r in rows))]
    head = [*axes, *columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += [
        "| " + " | ".join([*r.values, *(_cell(r.result, k) for k in columns)]) + " |" for r in rows
    ]
    table = folder / "sweep.md"
    table.write_text("\n".join(lines) + "\n")
    (folder / "sweep.json").write_text(
        json.dumps(
            [
                {
                    "values": dict(zip(axes, r.values, strict=True)),
                    "run": str(r.result.run_dir),
                    "summary": {
                        k: {"mean": m, "ci95": c} for k, (m, c) in r.result.summary.items()
                    },
                }
                for r in rows
            ],
            indent=1,
        )
    )
    plot = _plot(axes, rows, folder / f"metric-vs-{axes[0].split('.')[-1]}.png") if axes else None
    defence = None
    if axes and axes[0].startswith("defences."):
        defence = _defence_plot(axes, rows, folder / "defence.png")
    grid_png = _grid(axes, rows, folder / "grid.png")
    return AttackSweep(axes, tuple(rows), folder, table, plot, defence, grid_png)
