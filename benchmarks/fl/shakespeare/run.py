"""Run configs/shakespeare_char_lstm.toml and keep its history (CSV) and curves (PNG) here.

    PHLOEM_DATA_DIR=../shared/data .venv/bin/python benchmarks/fl/shakespeare/run.py

Prints the machine, the wall time and the final metrics (copied into README.md by hand).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from phloem.data.shakespeare import VOCAB, load_shakespeare
from phloem.fl.config import ExperimentConfig

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from curves import run_curve  # noqa: E402


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


if __name__ == "__main__":
    run_curve(
        "configs/shakespeare_char_lstm.toml",
        [("test_perplexity", "perplexity"), ("test_acc", "accuracy")],
        "shakespeare",
        HERE,
        before=unigram_baseline,
    )
