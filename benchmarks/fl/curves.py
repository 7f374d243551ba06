"""Run one config and keep its history (CSV) and curves (PNG) beside the calling script.

Shared by ``shakespeare/run.py`` and ``cifar10_resnet20/run.py``: each names its config, the
columns to plot and a file stem; this parses ``--set`` / ``--out``, runs the experiment and
prints the machine, the wall time and the final metrics (copied into the READMEs by hand).
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

from phloem.core.history import History
from phloem.core.plotting import plot_histories
from phloem.fl.config import ExperimentConfig, load_config
from phloem.fl.experiment import run_experiment

ROOT = Path(__file__).resolve().parents[2]


def write_csv(history: History, out: Path) -> None:
    """Every column of ``history``, one row per round (blank where a round lacks it)."""
    cols = history.columns()
    with out.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        for row in history:
            w.writerow({k: row.get(k, "") for k in cols})


def run_curve(
    config: str,
    plots: list[tuple[str, str]],
    stem: str,
    here: Path,
    before: Callable[[ExperimentConfig], None] | None = None,
) -> None:
    """Run ``config`` (relative to the repository) and write ``<stem>_history.csv`` and one
    ``<stem>_<name>.png`` per ``(column, name)`` of ``plots`` into ``here`` (or ``--out``);
    ``before`` (e.g. a baseline) sees the resolved config first."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--set", action="append", default=[], help="section.key=value override")
    ap.add_argument("--out", type=Path, default=here)
    args = ap.parse_args()
    cfg = load_config(ROOT / config, [*args.set, "run.out_dir=/tmp/phloem-bench-runs"])
    if before is not None:
        before(cfg)
    t0 = time.perf_counter()
    result = run_experiment(cfg, progress=False)
    wall = time.perf_counter() - t0
    h = result.history
    write_csv(h, args.out / f"{stem}_history.csv")
    for y, name in plots:
        plot_histories([(stem, h)], "rounds", y, args.out / f"{stem}_{name}.png", logy=False)
    last = h.last()
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, load {os.getloadavg()}")
    print(f"wall time: {wall:.0f} s for {cfg.run.rounds} rounds")
    for k in ("train_loss", "test_loss", "test_acc", "test_top5", "test_perplexity"):
        if k in last:
            print(f"final {k}: {last[k]:.4f}")
