"""The round loop: determinism across backends, exact resume, and nothing lost on failure."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from phloem.core.callbacks import Callback, EarlyStop
from phloem.core.errors import ConfigError, DivergenceError
from phloem.core.history import Row, read_history
from phloem.core.rundir import RunDir
from phloem.data.dataset import ArrayDataset
from phloem.data.partition import dirichlet
from phloem.fl.algorithms.diana import Diana
from phloem.fl.algorithms.ef21 import EF21
from phloem.fl.algorithms.fedavg import FedAvg
from phloem.fl.algorithms.scaffold import Scaffold
from phloem.fl.backends import ProcessBackend, SerialBackend, balance
from phloem.fl.compressors import RandK, TopK
from phloem.fl.local import FullGradient, MinibatchSGD
from phloem.fl.models import mlp, seeded
from phloem.fl.problem import ModelProblem, Problem
from phloem.fl.sampling import FullParticipation, Poisson, UniformCohort
from phloem.fl.server_opt import ServerSGD
from phloem.fl.simulate import TIMING_KEYS, Checkpoint, simulate


def small_model_problem(seed: int = 0, clients: int = 12) -> ModelProblem:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(600, 8)).astype(np.float32)
    w = rng.normal(size=(8, 3))
    y = (x @ w).argmax(1).astype(np.int64)
    train, test = ArrayDataset(x[:480], y[:480], 3), ArrayDataset(x[480:], y[480:], 3)
    part = dirichlet(train.y, clients, 0.5, np.random.default_rng(seed))
    module = seeded(lambda: mlp(8, (16,), 3), seed)
    return ModelProblem(module, train, test, part)


def stripped(rows: list[Row]) -> list[Row]:
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in rows]


def run(problem: Problem, algo, **kw):  # type: ignore[no-untyped-def]
    kw.setdefault("rounds", 6)
    kw.setdefault("seed", 7)
    return simulate(problem, algo, kw.pop("sampler", UniformCohort(5)), **kw)


ALGOS = {
    "fedavg": FedAvg(local=MinibatchSGD(0.1, 16, 1)),
    "scaffold": Scaffold(local=MinibatchSGD(0.1, 16, steps=3)),
    "diana": Diana(compressor=RandK(20), local=MinibatchSGD(0.1, 16), server_opt=ServerSGD(0.5)),
    "ef21": EF21(compressor=TopK(20), local=MinibatchSGD(0.1, 16), server_opt=ServerSGD(0.5)),
}


@pytest.mark.parametrize("name", sorted(ALGOS))
def test_same_seed_gives_identical_history(name: str) -> None:
    a = run(small_model_problem(), ALGOS[name])
    b = run(small_model_problem(), ALGOS[name])
    assert stripped(a.history.rows) == stripped(b.history.rows)
    assert torch.equal(a.x, b.x)
    c = run(small_model_problem(), ALGOS[name], seed=8)
    assert not torch.equal(a.x, c.x)


@pytest.mark.parametrize("name", ["fedavg", "diana"])
def test_serial_and_process_backends_are_bit_identical(name: str) -> None:
    serial = run(small_model_problem(), ALGOS[name], backend=SerialBackend())
    procs = run(small_model_problem(), ALGOS[name], backend=ProcessBackend(workers=2))
    assert stripped(serial.history.rows) == stripped(procs.history.rows)
    assert torch.equal(serial.x, procs.x)
    for s, p in zip(serial.client_states, procs.client_states, strict=True):
        assert (s is None and p is None) or torch.equal(s, p)


def test_process_backend_reports_worker_errors() -> None:
    class Boom(FedAvg):
        def client_update(self, server, state, oracle, rng):  # type: ignore[no-untyped-def]
            raise RuntimeError("client exploded")

    with pytest.raises(Exception, match="client exploded"):
        run(small_model_problem(), Boom(), backend=ProcessBackend(workers=2))


def test_balance_spreads_cost_and_keeps_every_item() -> None:
    costs = np.array([10.0, 1, 1, 1, 9, 1, 1])
    groups = balance(costs, 2)
    assert sorted(i for g in groups for i in g) == list(range(7))
    loads = [costs[g].sum() for g in groups]
    assert max(loads) - min(loads) <= 2


def test_resume_continues_exactly(tmp_path: Path) -> None:
    algo = ALGOS["diana"]
    full = run(small_model_problem(), algo, rounds=8)

    rd = RunDir.create(tmp_path, "r")
    run(small_model_problem(), algo, rounds=5, run_dir=rd, checkpoint_every=5)
    resumed = run(small_model_problem(), algo, rounds=8, run_dir=rd, resume=True)
    assert stripped(resumed.history.rows) == stripped(full.history.rows)
    assert torch.equal(resumed.x, full.x)
    assert stripped(read_history(rd.history_path).rows) == stripped(full.history.rows)


def test_resuming_with_fewer_rounds_than_done_names_run_rounds(tmp_path: Path) -> None:
    """A careless --set run.rounds below the checkpoint's round is an error, not a silent
    'finished' with a negative progress bar; the run folder is left as it was."""
    algo = ALGOS["diana"]
    rd = RunDir.create(tmp_path, "r")
    run(small_model_problem(), algo, rounds=6, run_dir=rd, checkpoint_every=3)
    before = rd.history_path.read_bytes()
    with pytest.raises(ConfigError, match="checkpoint is at round 6") as e:
        run(small_model_problem(), algo, rounds=4, run_dir=rd, resume=True)
    assert e.value.field == "run.rounds"
    assert rd.history_path.read_bytes() == before
    same = run(small_model_problem(), algo, rounds=6, run_dir=rd, resume=True)  # nothing to do
    assert same.history.last()["round"] == 6


def test_divergence_saves_history_and_last_good_checkpoint(tmp_path: Path) -> None:
    problem = small_model_problem()
    rd = RunDir.create(tmp_path, "div")
    algo = FedAvg(local=FullGradient(1e3, 5), server_opt=ServerSGD(1e3))
    with pytest.raises(DivergenceError, match="diverged at round"):
        run(problem, algo, rounds=50, run_dir=rd, sampler=FullParticipation())
    rows = read_history(rd.history_path).rows
    assert rows[-1].get("diverged") == 1
    ck = Checkpoint.load(rd.checkpoint_path)
    assert ck.round == rows[-1]["round"] - 1  # type: ignore[operator]
    assert bool(torch.isfinite(ck.server.x).all())
    assert rd.summary()["status"] == "diverged"


def test_interrupt_saves_history_and_checkpoint(tmp_path: Path) -> None:
    class CtrlC(Callback):
        def on_round_end(self, row: Row) -> bool:
            if row["round"] == 3:
                raise KeyboardInterrupt
            return False

    rd = RunDir.create(tmp_path, "int")
    algo = ALGOS["fedavg"]
    with pytest.raises(KeyboardInterrupt):
        run(small_model_problem(), algo, rounds=10, run_dir=rd, callbacks=[CtrlC()])
    assert rd.summary()["status"] == "interrupted"
    assert [r["round"] for r in read_history(rd.history_path).rows] == [0, 1, 2, 3]
    assert Checkpoint.load(rd.checkpoint_path).round == 3
    # ...and the interrupted run resumes to the same end as an uninterrupted one.
    resumed = run(small_model_problem(), algo, rounds=10, run_dir=rd, resume=True)
    assert stripped(resumed.history.rows) == stripped(
        run(small_model_problem(), algo, rounds=10).history.rows
    )


def test_early_stop_callback_and_status() -> None:
    res = run(
        small_model_problem(), ALGOS["fedavg"], rounds=50, callbacks=[EarlyStop("round", 4, "max")]
    )
    assert res.status == "stopped"
    assert res.history.last()["round"] == 4


def test_poisson_sampling_may_skip_a_round_without_moving() -> None:
    problem = small_model_problem()
    res = run(problem, ALGOS["fedavg"], rounds=30, sampler=Poisson(0.05))
    sizes = res.history.column("clients")[1:]
    assert 0 in sizes  # with 12 clients at rate 0.05 some rounds are empty
    for row in res.history.rows[1:]:
        if row["clients"] == 0:
            assert row["up_bits"] == 0


def test_every_algorithm_sees_the_same_cohorts() -> None:
    a = run(small_model_problem(), ALGOS["fedavg"], rounds=5)
    b = run(small_model_problem(), ALGOS["scaffold"], rounds=5)
    assert a.history.column("clients") == b.history.column("clients")
    from phloem.core.rng import SeedStreams, Stage

    s = SeedStreams(7)
    c1 = UniformCohort(5).cohort(3, 12, s.numpy(Stage.SAMPLING, 3))
    c2 = UniformCohort(5).cohort(3, 12, s.numpy(Stage.SAMPLING, 3))
    assert np.array_equal(c1, c2)


def test_history_records_the_paper_metrics(tmp_path: Path) -> None:
    rd = RunDir.create(tmp_path, "m")
    res = run(
        small_model_problem(), ALGOS["diana"], rounds=4, run_dir=rd, full_eval=True, eval_every=2
    )
    last = res.history.last()
    keys = "train_loss test_loss test_acc objective grad_norm up_bits down_bits cum_bits"
    for key in [*keys.split(), "bits_per_client", "oracle_samples", "wall_s"]:
        assert key in last, key
    assert "test_acc" not in res.history.rows[1]  # eval_every=2: round 1 not evaluated
    assert rd.summary()["status"] == "finished"


def test_full_eval_gradient_matches_autograd_on_all_rows() -> None:
    problem = small_model_problem()
    x = problem.initial_point(torch.Generator())
    ev = problem.evaluate(x, full=True)
    # Reference: the weighted sum of every client's full gradient.
    g = sum(float(w) * problem.client(i).grad(x).grad for i, w in enumerate(problem.weights))
    assert ev["grad_norm"] == pytest.approx(float(torch.linalg.vector_norm(g)), rel=1e-5)


def test_empty_client_is_a_clear_error() -> None:
    from phloem.data.dataset import Partition

    x = np.zeros((4, 2), np.float32)
    data = ArrayDataset(x, np.array([0, 1, 0, 1]), 2)
    part = Partition((np.array([0, 1, 2, 3]), np.array([], dtype=np.int64)))
    with pytest.raises(ValueError, match="client 1 has no training rows"):
        ModelProblem(mlp(2, (), 2), data, data, part)


def test_an_exploding_loss_is_divergence_before_any_nan(tmp_path: Path) -> None:
    problem = small_model_problem()
    rd = RunDir.create(tmp_path, "boom")
    algo = FedAvg(local=FullGradient(30.0, 5), server_opt=ServerSGD(30.0))
    with pytest.raises(DivergenceError, match="exploded past 10 x"):
        run(problem, algo, rounds=50, run_dir=rd, sampler=FullParticipation(),
            divergence_factor=10.0)  # fmt: skip
    rows = read_history(rd.history_path).rows
    assert rows[-1].get("diverged") == 1
    losses = [r["train_loss"] for r in rows[:-1] if "train_loss" in r]
    assert losses and all(isinstance(v, float) and np.isfinite(v) for v in losses)
    ck = Checkpoint.load(rd.checkpoint_path)
    assert ck.round == rows[-1]["round"] - 1  # type: ignore[operator]
    # the same run with the watch off goes on (until the model itself is not finite)
    with pytest.raises(DivergenceError, match=r"NaN/inf|loss is nan"):
        run(small_model_problem(), algo, rounds=500, sampler=FullParticipation(),
            divergence_factor=0.0)  # fmt: skip
    with pytest.raises(ValueError, match="divergence_factor"):
        run(small_model_problem(), algo, divergence_factor=float("nan"))
