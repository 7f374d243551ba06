"""Theory step sizes of the local methods (FedAvg / local GD, SCAFFOLD) and the smoothness
constants they use, computed once per problem with torch pinned to one thread."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from phloem.core.errors import ConfigError
from phloem.data.dataset import ArrayDataset
from phloem.data.partition import dirichlet
from phloem.fl.algorithms.fedavg import FedAvg
from phloem.fl.algorithms.scaffold import Scaffold
from phloem.fl.compressors import RandK
from phloem.fl.config import load_config
from phloem.fl.experiment import build_experiment, theory_report
from phloem.fl.local import FullGradient, MinibatchSGD
from phloem.fl.models import mlp, seeded
from phloem.fl.problem import ModelProblem, QuadraticProblem
from phloem.fl.server_opt import ServerSGD
from phloem.fl.simulate import simulate
from phloem.fl.theory import (
    local_gd_step,
    pinned_threads,
    scaffold_step,
    smoothness_from_clients,
)


def _max_client_l(q: QuadraticProblem) -> float:
    return max(float(np.linalg.eigvalsh(a.numpy())[-1]) for a in q.A)


def test_local_gd_and_scaffold_steps_are_the_papers_formulas(quad: QuadraticProblem) -> None:
    s = quad.smoothness()
    lc = _max_client_l(quad)
    assert s.L_client == pytest.approx(lc, rel=1e-12)
    assert local_gd_step(s) == pytest.approx(1 / (4 * lc), rel=1e-12)  # Khaled et al.
    assert scaffold_step(s, 3, 0.5) == pytest.approx(1 / (81 * lc * 3 * 0.5), rel=1e-12)
    assert FedAvg(local=FullGradient(0.1, 7)).theory_step(s, quad.dim) == local_gd_step(s)
    scaffold = Scaffold(local=FullGradient(0.1, 3), server_opt=ServerSGD(0.5))
    assert scaffold.theory_step(s, quad.dim) == scaffold_step(s, 3, 0.5)
    assert Scaffold(local=MinibatchSGD(0.1, 8, steps=4)).theory_step(s, 1) == scaffold_step(
        s, 4, 1.0
    )


def test_local_methods_use_the_clients_own_constant_not_the_scaled_one() -> None:
    # f = sum_i w_i f_i; local steps descend on f_i, whose constant is L_i (not n w_i L_i)
    s = smoothness_from_clients(1.0, np.array([2.0, 1.0, 4.0]), np.array([0.5, 0.4, 0.1]))
    assert s.L_max == pytest.approx(3 * 0.5 * 2.0) and s.L_client == 4.0
    assert local_gd_step(s) == 1 / 16
    assert scaffold_step(s, 2, 1.0) == 1 / (81 * 4.0 * 2)
    legacy = type(s)(s.L, s.L_max, s.L_tilde, s.n)  # built without L_client
    assert local_gd_step(legacy) == 1 / (4 * s.L_max)


QUAD: dict[str, Any] = {
    "data": {"dataset": "quadratic", "num_clients": 6, "dim": 5, "mu": 0.5},
    "local": {"solver": "full", "steps": 1},
    "sampling": {"scheme": "full"},
    "server": {"lr_rule": "theory"},
    "run": {"rounds": 300, "eval_every": 300},
}


def _run(algorithm: str, steps: int, *overrides: str) -> tuple[Any, float, float]:
    cfg = load_config(
        None,
        [f"algorithm.name={algorithm}", f"local.steps={steps}", *overrides],
        QUAD,
    )
    exp = build_experiment(cfg)
    res = simulate(
        exp.problem, exp.algorithm, exp.sampler, rounds=cfg.run.rounds, eval_every=cfg.run.rounds
    )
    return exp, res.history.rows[0]["dist_to_opt"], res.history.last()["dist_to_opt"]


def test_lr_rule_theory_sets_the_local_step_of_fedavg_and_gd_converges() -> None:
    exp, first, last = _run("fedavg", 1)
    s = exp.problem.smoothness()
    assert exp.algorithm.local.lr == local_gd_step(s)  # the local lr, not the server's
    assert exp.algorithm.server_opt.lr == 1.0
    assert last < 1e-6 * first  # one full local step: gradient descent, to x* exactly
    # several local steps: FedAvg's fixed point is not x* (client drift), but it gets close
    exp5, first5, last5 = _run("fedavg", 5)
    assert exp5.algorithm.local.lr == local_gd_step(s)
    assert 1e-4 * first5 < last5 < 0.2 * first5


def test_lr_rule_theory_scaffold_converges_to_the_optimum_exactly() -> None:
    # the theorem's 1/81 is conservative: scale it (lr_scale) to converge in a few hundred rounds
    exp, first, last = _run("scaffold", 5, "server.lr_scale=20")
    s = exp.problem.smoothness()
    assert exp.algorithm.local.lr == 20 * scaffold_step(s, 5, 1.0)
    assert last < 1e-6 * first  # control variates remove the drift FedAvg keeps
    _, _, fedavg_last = _run("fedavg", 5, "server.lr_scale=0.1")  # same order of local step
    assert fedavg_last > 1e3 * last


@pytest.mark.slow
def test_scaffold_at_the_unscaled_theory_step_keeps_converging() -> None:
    _, first, last = _run("scaffold", 2, "run.rounds=2000", "run.eval_every=2000")
    assert last < 0.05 * first


@pytest.mark.parametrize(
    ("algorithm", "overrides", "field"),
    [
        ("fedavg", ["server.lr=0.5"], "server.lr"),
        ("fedavg", ["compressor.name=randk", "compressor.k=2"], "compressor.name"),
        ("fedavg", ["server.momentum=0.9"], "server.momentum"),
        ("scaffold", ["local.solver=sgd", "local.batch_size=4"], "local.steps"),
        ("scaffold", ["local.solver=sgd", "local.steps=3", "local.momentum=0.5"], "local.momentum"),
        ("fedavg", ["local.solver=sgd", "local.weight_decay=0.1"], "local.weight_decay"),
        ("fedavg", ["server.optimizer=adam"], "server.lr_rule"),
    ],
)
def test_theory_steps_refuse_what_the_theorems_leave_out(
    algorithm: str, overrides: list[str], field: str
) -> None:
    base = {k: v for k, v in QUAD.items() if k != "local"}
    cfg = load_config(None, [f"algorithm.name={algorithm}", *overrides], base)
    with pytest.raises(ConfigError) as e:
        build_experiment(cfg)
    assert e.value.field == field


def test_theory_report_marks_the_local_steps() -> None:
    cfg = load_config(None, ["local.steps=4"], QUAD)
    steps = {name: step for name, step, _ in theory_report(cfg).steps}
    s = build_experiment(cfg).problem.smoothness()
    assert steps["fedavg (local lr)"] == local_gd_step(s)
    assert steps["scaffold (local lr)"] == scaffold_step(s, 4, 1.0)
    assert "fedprox" not in " ".join(steps)
    comp = RandK(2)
    with pytest.raises(ConfigError, match="compression"):
        FedAvg(compressor=comp).theory_step(s, 5)


# ----------------------------------------------------------------------- pinned threads


@pytest.fixture
def two_threads() -> Any:
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_pinned_threads_pins_and_restores(two_threads: None) -> None:
    with pinned_threads():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2
    with pytest.raises(RuntimeError), pinned_threads(1):
        raise RuntimeError("boom")
    assert torch.get_num_threads() == 2  # restored on the way out of an error too
    with pinned_threads(2):
        assert torch.get_num_threads() == 2
    assert torch.get_num_threads() == 2


def test_smoothness_is_computed_once_with_one_thread(
    two_threads: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    train = ArrayDataset(x[:48], y[:48], 2)
    problem = ModelProblem(
        seeded(lambda: mlp(4, (), 2), 0),
        train,
        ArrayDataset(x[48:], y[48:], 2),
        dirichlet(train.y, 3, 1.0, np.random.default_rng(0)),
    )
    seen: list[int] = []
    inner = ModelProblem._smoothness

    def spy(self: ModelProblem) -> Any:
        seen.append(torch.get_num_threads())
        return inner(self)

    monkeypatch.setattr(ModelProblem, "_smoothness", spy)
    s1, s2 = problem.smoothness(), problem.smoothness()
    assert s1 is s2 and s1 is not None and seen == [1]
    assert torch.get_num_threads() == 2

    eig_threads: list[int] = []
    eigvalsh = torch.linalg.eigvalsh

    def spy_eig(a: torch.Tensor) -> torch.Tensor:
        eig_threads.append(torch.get_num_threads())
        return eigvalsh(a)

    monkeypatch.setattr(torch.linalg, "eigvalsh", spy_eig)
    QuadraticProblem(np.eye(3)[None].repeat(2, 0), np.ones((2, 3)), np.array([0.5, 0.5]))
    assert eig_threads and set(eig_threads) == {1}
    assert torch.get_num_threads() == 2
