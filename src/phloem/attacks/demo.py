"""The attack demo of ``make demo``: faces reconstructed from LeNet's first pooling layer.

No data folder and no download: LeNet-5 is trained on scikit-learn's digits (upscaled to 28x28),
the attacker queries it with 2,000 random crops of the photographs bundled with scikit-image and
scikit-learn (other-distribution data), and reconstructs the 100 LFW faces bundled with
scikit-image, which it never queried, from their IRs at ``pool1``. Under a minute on 2 cores.
The same experiment as a file: ``configs/attack_demo.toml``.
"""

from __future__ import annotations

from pathlib import Path

from phloem.attacks.experiment import ExperimentConfig, ExperimentResult, run_experiment

__all__ = ["DEMO", "run_demo"]

#: the demo's configuration (what ``configs/attack_demo.toml`` holds)
DEMO = """
[victim]
name = "lenet"
split = "pool1"
data = "digits"

[attack]
name = "encoder-decoder"
epochs = 8
width = 32
blocks = 2

[threat]
access = "black-box"
query_budget = 2000
aux = "other-distribution"

[private]
name = "lfw-faces"
count = 100

[aux]
name = "sample-patches"
count = 2000

[run]
seeds = [0]
name = "attack-demo"
"""


def run_demo(out: Path = Path("runs")) -> ExperimentResult:
    """Run the demo into a new folder under ``out``."""
    import tomllib

    from phloem.core.config import from_dict

    data = tomllib.loads(DEMO)
    data["run"]["out_dir"] = str(out)
    cfg: ExperimentConfig = from_dict(ExperimentConfig, data)
    return run_experiment(cfg)
