"""``phloem demo``: FedAvg, FedAvg under SecAgg+ with dropouts, and DIANA + Rand-K on digits.

Runs on scikit-learn's bundled digits (no data folder, no internet) in well under a minute:
prints a comparison table and writes a plot of test accuracy and training loss against rounds
and against uplink bits per client.
"""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from phloem.core.config import from_dict
from phloem.core.history import History
from phloem.fl.config import ExperimentConfig

__all__ = ["DEMO_CONFIGS", "run_demo"]

_COMMON: dict[str, dict[str, object]] = {
    "data": {"dataset": "digits", "num_clients": 100, "partition": "dirichlet", "alpha": 0.3},
    "model": {"name": "logistic"},
    "sampling": {"scheme": "uniform", "cohort_size": 20},
    "run": {"seed": 0, "eval_every": 1},
}

#: The methods compared: name -> the config sections that differ from ``_COMMON``.
DEMO_CONFIGS: dict[str, dict[str, dict[str, object]]] = {
    "fedavg": {
        "algorithm": {"name": "fedavg"},
        "local": {"solver": "sgd", "lr": 0.1, "batch_size": 8, "epochs": 2},
        "server": {"lr": 1.0},
    },
    "fedavg-secagg+": {
        "algorithm": {"name": "fedavg"},
        "local": {"solver": "sgd", "lr": 0.1, "batch_size": 8, "epochs": 2},
        "server": {"lr": 1.0},
        # a real SecAgg+ round every round; 10% of the cohort drops out at a random stage
        "aggregation": {"name": "secagg+", "dropout": 0.1, "tolerate_dropout": 0.3},
    },
    "diana-randk": {
        "algorithm": {"name": "diana"},
        "compressor": {"name": "randk", "ratio": 0.1},
        "local": {"solver": "full"},
        "server": {"lr": 0.5},
    },
}


def _config(name: str, rounds: int, out: Path) -> ExperimentConfig:
    data: dict[str, dict[str, object]] = {k: dict(v) for k, v in _COMMON.items()}
    for section, values in DEMO_CONFIGS[name].items():
        data.setdefault(section, {}).update(values)
    data["run"].update({"name": f"demo-{name}", "rounds": rounds, "out_dir": str(out)})
    return from_dict(ExperimentConfig, data)


def run_demo(rounds: int, out: Path) -> Path:
    """Run every method, print the table, write the plots under ``out``; return one plot path."""
    from phloem.cli.fl import run_config
    from phloem.core.plotting import plot_histories

    console = Console()
    results: list[tuple[str, History, float]] = []
    for name in DEMO_CONFIGS:
        t0 = time.perf_counter()
        res = run_config(_config(name, rounds, out), progress=True)
        results.append((name, res.history, time.perf_counter() - t0))
        console.print(f"  {name}: run folder {res.run_dir.path if res.run_dir else '-'}")

    table = Table(
        title=f"digits, 100 non-IID clients (Dirichlet 0.3), 20 per round, {rounds} rounds"
    )
    for c in ("method", "test acc", "train loss", "uplink bits/client", "wall s"):
        table.add_column(c, justify="right")
    for name, h, secs in results:
        last = h.last()
        table.add_row(
            name,
            f"{float(last.get('test_acc') or 0):.3f}",
            f"{float(last.get('train_loss') or 0):.4f}",
            f"{float(last.get('bits_per_client') or 0):.3g}",
            f"{secs:.1f}",
        )
    console.print(table)
    runs = [(n, h) for n, h, _ in results]
    plot = plot_histories(runs, "bits", "accuracy", out / "demo-accuracy-vs-bits.png", logy=False)
    plot_histories(runs, "rounds", "loss", out / "demo-loss-vs-rounds.png")
    console.print(f"plots: {plot} and {out / 'demo-loss-vs-rounds.png'}")
    return plot
