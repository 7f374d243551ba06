"""The SPB demo of ``make demo``: four workers, LeNet-5 on scikit-learn's digits (no data
folder), full backprop against SPB's static and rotating plans and the FreezeOut baseline, all
as virtual workers; then the static plan again as four real ``torchrun`` processes over gloo,
which must end where the virtual workers did. About half a minute on 2 cores.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from phloem.spb.config import TrainConfig, load_config
from phloem.spb.train import TrainResult, launch, train

__all__ = ["DEMO_PLANS", "DemoResult", "run_demo"]

#: the plans the demo compares, each with its ``--set`` overrides
DEMO_PLANS: dict[str, list[str]] = {
    "full": ["plan.name=full"],
    "static": ["plan.name=static"],
    "rotating": ["plan.name=rotating", "plan.period=10"],
    "freezeout": ["plan.name=freezeout"],
}


def demo_config(out: Path, overrides: list[str]) -> TrainConfig:
    base = [
        "model.name=lenet",
        "data.name=digits",
        "train.epochs=6",
        "train.batch_size=64",
        "train.lr=0.05",
        "spb.workers=4",
        "run.progress=false",
        "run.target_accuracy=0.9",
        f"run.out_dir={out}",
    ]
    return load_config(None, base + overrides)


@dataclass
class DemoResult:
    """The virtual runs by plan, and the static plan's run on real processes."""

    virtual: dict[str, TrainResult]
    distributed: TrainResult


def run_demo(out: Path = Path("runs"), nproc: int = 4) -> DemoResult:
    """Run the demo's five runs into new folders under ``out``."""
    runs = {}
    for plan, sets in DEMO_PLANS.items():
        runs[plan] = train(demo_config(out, [*sets, f"run.name=virtual-{plan}"]))
    cfg = demo_config(out, [*DEMO_PLANS["static"], "run.name=torchrun-static"])
    return DemoResult(runs, launch(cfg, nproc))
