"""Run configs/shakespeare_char_lstm.toml and keep its history (CSV) and curves (PNG) here.

    PHLOEM_DATA_DIR=../shared/data .venv/bin/python benchmarks/fl/shakespeare/run.py

Prints the machine, the wall time and the final metrics (copied into README.md by hand).
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import time
from pathlib import Path

import numpy as np

from phloem.core.history import History
from phloem.core.plotting import plot_histories
from phloem.data.shakespeare import VOCAB, load_shakespeare
from phloem.fl.config import ExperimentConfig, load_config
from phloem.fl.experiment import run_experiment

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]


def write_csv(history: History, out: Path) -> None:
    cols = history.columns()
    with out.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        for row in history:
            w.writerow({k: row.get(k, "") for k in cols})


def unigram_baseline(cfg: ExperimentConfig) -> None:
    """The character-frequency model of the same training rows, on the same test rows."""
    d = cfg.data.dataset_params
    data = load_shakespeare(
        d.path,
        seq_len=d.seq_len,
        test_fraction=d.test_fraction,
        min_samples=d.min_samples,
        max_clients=d.max_clients,
        limit=d.limit,
    )
    counts = np.bincount(data.train.y, minlength=len(VOCAB)) + 1.0  # add-one smoothing
    p = counts / counts.sum()
    ce = float(-np.log(p[data.test.y]).mean())
    acc = (data.test.y == p.argmax()).mean()
    top5 = np.isin(data.test.y, np.argsort(-p)[:5]).mean()
    print(
        f"unigram baseline: test CE {ce:.4f}, perplexity {np.exp(ce):.2f}, "
        f"acc {acc:.4f}, top5 {top5:.4f}"
    )


def main(config: str, plots: list[tuple[str, str]], stem: str) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--set", action="append", default=[], help="section.key=value override")
    ap.add_argument("--out", type=Path, default=HERE)
    args = ap.parse_args()
    cfg = load_config(ROOT / config, [*args.set, "run.out_dir=/tmp/phloem-bench-runs"])
    unigram_baseline(cfg)
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


if __name__ == "__main__":
    main(
        "configs/shakespeare_char_lstm.toml",
        [("test_perplexity", "perplexity"), ("test_acc", "accuracy")],
        "shakespeare",
    )
