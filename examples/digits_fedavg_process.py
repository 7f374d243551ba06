"""FedAvg on digits over 50 non-IID clients, on two worker processes, with a custom callback.

Run:  python examples/digits_fedavg_process.py [--rounds 30]
"""

from __future__ import annotations

import argparse

import numpy as np

from phloem.core import Callback
from phloem.core.history import Row
from phloem.data import dirichlet, load_digits
from phloem.fl import (
    FedAvg,
    MinibatchSGD,
    ModelProblem,
    ProcessBackend,
    UniformCohort,
    linear_model,
    seeded,
    simulate,
)


class PrintEvery(Callback):
    """Print the test accuracy every ``k`` rounds."""

    def __init__(self, k: int) -> None:
        self.k = k

    def on_round_end(self, row: Row) -> bool:
        if int(row["round"] or 0) % self.k == 0:
            print(f"round {row['round']:>3}: test accuracy {row.get('test_acc', float('nan')):.3f}")
        return False


def main(rounds: int) -> float:
    data = load_digits(rng=np.random.default_rng(0))
    part = dirichlet(data.train.y, 50, alpha=0.5, rng=np.random.default_rng(1))
    problem = ModelProblem(seeded(lambda: linear_model(64, 10), 0), data.train, data.test, part)
    algo = FedAvg(local=MinibatchSGD(lr=0.1, batch_size=8, epochs=1))
    res = simulate(
        problem,
        algo,
        UniformCohort(10),
        rounds=rounds,
        seed=0,
        backend=ProcessBackend(workers=2),
        callbacks=[PrintEvery(10)],
    )
    acc = float(res.history.last()["test_acc"] or 0.0)
    print(f"final test accuracy: {acc:.3f}")
    return acc


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=30)
    main(ap.parse_args().rounds)
