"""Plots of simulations: JCT CDF, utilisation over time, a Gantt strip of one window
(matplotlib, imported here only, Agg backend)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from phloem.jigsaw.simulator import SimResult

__all__ = ["plot_gantt", "plot_jct_cdf", "plot_run", "plot_utilisation"]


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_jct_cdf(results: Sequence[SimResult], path: Path) -> Path:
    """The CDF of job completion times, one line per result."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    for r in results:
        arrival = np.array([j.arrival_s for j in r.trace.jobs])
        jct = np.sort((r.finish_s - arrival)[~np.isnan(r.finish_s)]) / 3600.0
        if jct.size:
            ax.plot(jct, np.arange(1, jct.size + 1) / jct.size, label=r.policy)
    ax.set_xscale("log")
    ax.set_xlabel("job completion time [h]")
    ax.set_ylabel("fraction of jobs")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_utilisation(r: SimResult, path: Path) -> Path:
    """Busy GPUs and waiting jobs over time."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3.5))
    if r.timeline:
        t = np.array([row[0] for row in r.timeline]) / 3600.0
        busy = np.array([row[1] for row in r.timeline]) / r.cluster.num_gpus
        wait = np.array([row[3] for row in r.timeline])
        ax.step(t, busy, where="post", label="busy GPUs (fraction)")
        ax2 = ax.twinx()
        ax2.step(t, wait, where="post", color="tab:red", alpha=0.6, label="waiting jobs")
        ax2.set_ylabel("waiting jobs")
    ax.set_xlabel("time [h]")
    ax.set_ylabel("busy GPUs")
    ax.set_ylim(0, 1.05)
    ax.set_title(f"{r.policy}: utilisation")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_gantt(r: SimResult, path: Path, *, window_s: float = 4 * 3600.0) -> Path:
    """Which job held each GPU over the first ``window_s`` seconds (hatched: a shallow
    worker lending its slack)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 5))
    cmap = plt.get_cmap("tab20")
    for s in r.segments:
        if s.start_s >= window_s:
            continue
        end = min(s.end_s, window_s)
        for g in s.gpus:
            ax.broken_barh([(s.start_s / 3600.0, (end - s.start_s) / 3600.0)], (g - 0.4, 0.8),
                           color=cmap(s.job % 20), alpha=0.5 if g in s.shallow else 0.9,
                           hatch="//" if g in s.shallow else None)  # fmt: skip
    ax.set_xlabel("time [h]")
    ax.set_ylabel("GPU")
    ax.set_ylim(-1, r.cluster.num_gpus)
    ax.set_title(f"{r.policy}: GPUs over the first {window_s / 3600:g} h")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_run(r: SimResult, folder: Path) -> list[Path]:
    """All three plots of one run into ``folder``."""
    return [
        plot_jct_cdf([r], folder / "jct_cdf.png"),
        plot_utilisation(r, folder / "utilisation.png"),
        plot_gantt(r, folder / "gantt.png"),
    ]
