"""The demo: FedAvg, FedAvg under SecAgg+ with dropouts, and DIANA + Rand-K on digits.

Runs on scikit-learn's bundled digits (no data folder, no internet) in seconds: 100
label-skewed clients (Dirichlet 0.3), 20 a round; writes each run's folder and two comparison
plots (test accuracy against uplink bits per client, training loss against rounds).
``phloem demo`` prints the table.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from phloem.core.history import History
from phloem.fl.config import ExperimentConfig, load_config

__all__ = ["DEMO_CONFIGS", "DemoResult", "DemoRun", "demo_config", "run_demo"]

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


def demo_config(name: str, rounds: int, out: Path) -> ExperimentConfig:
    """The config of demo method ``name``, ``rounds`` long, writing under ``out``."""
    data: dict[str, dict[str, object]] = {k: dict(v) for k, v in _COMMON.items()}
    for section, values in DEMO_CONFIGS[name].items():
        data.setdefault(section, {}).update(values)
    data["run"].update({"name": f"demo-{name}", "rounds": rounds, "out_dir": str(out)})
    return load_config(None, [], data)


@dataclass(frozen=True)
class DemoRun:
    """One method: its history, run folder and wall time."""

    name: str
    history: History
    run_dir: Path | None
    seconds: float


@dataclass(frozen=True)
class DemoResult:
    """Every method's run, and the two plots."""

    runs: tuple[DemoRun, ...]
    plots: tuple[Path, Path]


def run_demo(rounds: int, out: Path, *, progress: bool = True) -> DemoResult:
    """Run every method for ``rounds`` rounds and write the plots under ``out``."""
    from phloem.core.plotting import plot_histories
    from phloem.fl.experiment import run_experiment

    runs: list[DemoRun] = []
    for name in DEMO_CONFIGS:
        t0 = time.perf_counter()
        res = run_experiment(demo_config(name, rounds, out), progress=progress)
        path = res.run_dir.path if res.run_dir else None
        runs.append(DemoRun(name, res.history, path, time.perf_counter() - t0))
    pairs = [(r.name, r.history) for r in runs]
    acc = plot_histories(pairs, "bits", "accuracy", out / "demo-accuracy-vs-bits.png", logy=False)
    loss = plot_histories(pairs, "rounds", "loss", out / "demo-loss-vs-rounds.png")
    return DemoResult(tuple(runs), (acc, loss))
