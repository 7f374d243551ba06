"""Real data: federated logistic regression on LIBSVM a9a against centralised scikit-learn."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression

from phloem.data import loaders, partition
from phloem.fl.algorithms.fedavg import FedAvg
from phloem.fl.local import MinibatchSGD
from phloem.fl.models import linear_model, seeded
from phloem.fl.problem import ModelProblem
from phloem.fl.sampling import FullParticipation
from phloem.fl.server_opt import ServerSGD
from phloem.fl.simulate import simulate


def test_fedavg_matches_centralised_logistic_regression(data_file: Callable[[str], Path]) -> None:
    data_file("libsvm/a9a.gz")
    data_file("libsvm/a9a.t.gz")
    d = loaders.load_libsvm_pair("a9a")
    reference = (
        LogisticRegression(max_iter=1000).fit(d.train.x, d.train.y).score(d.test.x, d.test.y)
    )

    # 100 label-skewed clients (Dirichlet 0.5); FedAvg with server momentum 0.9 (FedAvgM),
    # one local epoch of minibatch SGD per round.
    part = partition.dirichlet(d.train.y, 100, 0.5, np.random.default_rng(0))
    problem = ModelProblem(seeded(lambda: linear_model(123, 2), 0), d.train, d.test, part)
    algo = FedAvg(local=MinibatchSGD(0.02, 32, 1), server_opt=ServerSGD(1.0, momentum=0.9))
    res = simulate(problem, algo, FullParticipation(), rounds=40, seed=0, eval_every=40)
    acc = res.history.last()["test_acc"]
    assert isinstance(acc, float)
    assert reference > 0.84  # the published ~85% of a9a
    assert acc >= reference - 0.01, f"FedAvg {acc:.4f} vs centralised {reference:.4f}"
