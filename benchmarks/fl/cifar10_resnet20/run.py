"""Run configs/cifar10_resnet20.toml and keep its history (CSV) and curves (PNG) here.

    PHLOEM_DATA_DIR=../shared/data .venv/bin/python benchmarks/fl/cifar10_resnet20/run.py

Prints the machine, the wall time and the final metrics (copied into README.md by hand).
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from curves import run_curve  # noqa: E402

if __name__ == "__main__":
    run_curve(
        "configs/cifar10_resnet20.toml",
        [("test_acc", "accuracy"), ("test_loss", "loss")],
        "cifar10_resnet20",
        HERE,
    )
