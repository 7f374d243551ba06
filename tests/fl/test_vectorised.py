"""The vectorised backend: the same histories as the serial backend, to rounding.

Reference: :class:`SerialBackend`, which runs each client through autograd on one reused model
(obviously the per-client maths). The vectorised backend reorders floating-point sums (batched
kernels), so results agree to a tolerance, not bit for bit: ``2e-4`` in float32 and ``1e-9`` in
float64 over a few rounds, on every recorded number and the final model.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from phloem.cli.app import app
from phloem.core.history import Row, read_history
from phloem.core.rundir import RunDir
from phloem.data.dataset import ArrayDataset
from phloem.data.partition import dirichlet
from phloem.fl.algorithms.diana import Diana
from phloem.fl.algorithms.fedavg import FedAvg
from phloem.fl.algorithms.fedprox import FedProx
from phloem.fl.algorithms.scaffold import Scaffold
from phloem.fl.backends import SerialBackend
from phloem.fl.compressors import QSGD, RandK, TopK
from phloem.fl.local import FullGradient, MinibatchSGD
from phloem.fl.models import linear_model, mlp, seeded
from phloem.fl.problem import ModelProblem, Problem, QuadraticProblem, Task
from phloem.fl.sampling import FullParticipation, Poisson, UniformCohort
from phloem.fl.server_opt import ServerAdam, ServerSGD
from phloem.fl.simulate import TIMING_KEYS, SimulationResult, simulate
from phloem.fl.vectorised import VectorisedBackend, vectorisable

TOL = {torch.float32: 2e-4, torch.float64: 1e-9}


def problem(
    hidden: tuple[int, ...] | None = (16,),
    *,
    dtype: torch.dtype = torch.float32,
    task: Task = Task.CLASSIFICATION,
    l2: float = 0.0,
    bias: bool = True,
    clients: int = 12,
    tanh: bool = False,
) -> ModelProblem:
    """600 rows of 8 features over ``clients`` Dirichlet clients (sizes 1 to ~100)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 8)).astype(np.float32)
    w = rng.normal(size=(8, 3))
    y: np.ndarray = (x @ w).argmax(1).astype(np.int64)
    outputs = 3
    if task is Task.BINARY:
        y, outputs = (y > 0).astype(np.int64), 1
    elif task is Task.REGRESSION:
        y, outputs = (x @ w[:, 0]).astype(np.float32), 1
    classes = None if task is Task.REGRESSION else (2 if task is Task.BINARY else 3)
    train = ArrayDataset(x[:480], y[:480], classes)
    test = ArrayDataset(x[480:], y[480:], classes)
    part = dirichlet(np.asarray(x[:480, 0] > 0, dtype=np.int64), clients, 0.5, rng)

    def build() -> torch.nn.Module:
        if tanh:  # not vectorised: only ReLU between Linear layers is
            return torch.nn.Sequential(
                torch.nn.Linear(8, 4), torch.nn.Tanh(), torch.nn.Linear(4, outputs)
            )
        if hidden is None:
            m = linear_model(8, outputs)
            if not bias:
                m = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(8, outputs, bias=False))
            return m
        return mlp(8, hidden, outputs)

    return ModelProblem(seeded(build, 0), train, test, part, task=task, l2=l2, dtype=dtype)


def run(p: Problem, algo: Any, backend: Any, **kw: Any) -> SimulationResult:
    kw.setdefault("rounds", 4)
    kw.setdefault("seed", 3)
    sampler = kw.pop("sampler", UniformCohort(5))
    return simulate(p, algo, sampler, backend=backend, **kw)


def assert_close(a: SimulationResult, b: SimulationResult, tol: float) -> None:
    """Every recorded number (timings aside) and the final model agree to ``tol``."""
    assert len(a.history.rows) == len(b.history.rows)
    for ra, rb in zip(a.history.rows, b.history.rows, strict=True):
        assert_rows_close(ra, rb, tol)
    torch.testing.assert_close(a.x, b.x, rtol=tol, atol=tol)


def assert_rows_close(ra: Row, rb: Row, tol: float) -> None:
    keys = {k for k in ra if k not in TIMING_KEYS}
    assert keys == {k for k in rb if k not in TIMING_KEYS}
    for k in keys:
        va, vb = ra[k], rb[k]
        if isinstance(va, float) and isinstance(vb, float):
            assert math.isclose(va, vb, rel_tol=tol, abs_tol=tol), (k, va, vb)
        else:
            assert va == vb, (k, va, vb)


def both(p_factory: Any, algo: Any, **kw: Any) -> tuple[SimulationResult, SimulationResult]:
    serial = run(p_factory(), algo, SerialBackend(), **kw)
    vec = run(p_factory(), algo, VectorisedBackend(), **kw)
    return serial, vec


CASES = {
    "fedavg-mlp": (lambda: problem(), FedAvg(local=MinibatchSGD(0.1, 16, 1))),
    "fedavg-logistic-2-epochs": (
        lambda: problem(None),
        FedAvg(local=MinibatchSGD(0.2, 7, 2), server_opt=ServerSGD(0.8)),
    ),
    "fedavg-steps-over-epochs": (lambda: problem(), FedAvg(local=MinibatchSGD(0.1, 8, steps=9))),
    "fedavg-batch-over-every-client": (lambda: problem(), FedAvg(local=MinibatchSGD(0.1, 999))),
    "fedavg-full-gradient": (lambda: problem((8, 8)), FedAvg(local=FullGradient(0.1, 3))),
    "fedavg-randk": (lambda: problem(), FedAvg(compressor=RandK(20), local=MinibatchSGD(0.1, 16))),
    "fedavg-qsgd-adam": (
        lambda: problem(None),
        FedAvg(compressor=QSGD(4), local=MinibatchSGD(0.1, 16), server_opt=ServerAdam(0.05)),
    ),
    "fedprox-l2": (lambda: problem(l2=0.05), FedProx(mu=0.5, local=MinibatchSGD(0.1, 16, 2))),
    "binary-logistic-no-bias": (
        lambda: problem(None, task=Task.BINARY, bias=False, l2=0.01),
        FedAvg(local=MinibatchSGD(0.5, 10)),
    ),
    "regression-mlp": (
        lambda: problem((6,), task=Task.REGRESSION),
        FedProx(mu=0.1, local=MinibatchSGD(0.02, 16)),
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_vectorised_equals_serial_in_float32(name: str) -> None:
    factory, algo = CASES[name]
    serial, vec = both(factory, algo)
    assert_close(serial, vec, TOL[torch.float32])
    assert not torch.equal(serial.x, problem().initial_point(torch.Generator()))


F64 = {
    "fedavg-mlp": (lambda: problem(dtype=torch.float64), CASES["fedavg-mlp"][1]),
    "fedprox-l2-logistic": (
        lambda: problem(None, dtype=torch.float64, l2=0.05),
        CASES["fedprox-l2"][1],
    ),
    "full-gradient-2-hidden": (
        lambda: problem((8, 8), dtype=torch.float64),
        CASES["fedavg-full-gradient"][1],
    ),
}


@pytest.mark.parametrize("name", sorted(F64))
def test_vectorised_equals_serial_in_float64_to_1e9(name: str) -> None:
    serial, vec = both(*F64[name])
    assert_close(serial, vec, TOL[torch.float64])


@pytest.mark.parametrize(
    "sampler", [FullParticipation(), UniformCohort(3), Poisson(0.4)], ids=["full", "3", "poisson"]
)
def test_partial_participation(sampler: Any) -> None:
    serial, vec = both(problem, FedAvg(local=MinibatchSGD(0.1, 16)), sampler=sampler, rounds=5)
    assert_close(serial, vec, TOL[torch.float32])


def test_the_tolerance_is_not_vacuous() -> None:
    """A different shuffle (another seed) is far outside the tolerance."""
    algo = FedAvg(local=MinibatchSGD(0.1, 16))
    a = run(problem(), algo, VectorisedBackend())
    b = run(problem(), algo, VectorisedBackend(), seed=4)
    with pytest.raises(AssertionError):
        assert_close(a, b, TOL[torch.float32])


def test_vectorised_is_deterministic() -> None:
    algo = FedAvg(compressor=RandK(20), local=MinibatchSGD(0.1, 16))
    a = run(problem(), algo, VectorisedBackend())
    b = run(problem(), algo, VectorisedBackend())
    assert torch.equal(a.x, b.x)


def test_resume_continues_the_vectorised_run(tmp_path: Path) -> None:
    algo = FedAvg(compressor=TopK(30), local=MinibatchSGD(0.1, 16))
    full = run(problem(), algo, VectorisedBackend(), rounds=8)
    rd = RunDir.create(tmp_path, "v")
    run(problem(), algo, VectorisedBackend(), rounds=5, run_dir=rd, checkpoint_every=5)
    resumed = run(problem(), algo, VectorisedBackend(), rounds=8, run_dir=rd, resume=True)
    assert torch.equal(resumed.x, full.x)  # same backend: bit for bit
    on_disk = read_history(rd.path / "history.jsonl")
    assert [r["round"] for r in on_disk] == list(range(9))
    serial = run(problem(), algo, SerialBackend(), rounds=8)
    assert_close(serial, resumed, TOL[torch.float32])


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (lambda: (problem(), Scaffold(local=MinibatchSGD(0.1, 16, steps=3))), "scaffold"),
        (
            lambda: (problem(), Diana(compressor=RandK(20), local=MinibatchSGD(0.1, 16))),
            "diana",
        ),
        (lambda: (QuadraticProblem(*_quad()), FedAvg(local=FullGradient(0.1))), "Quadratic"),
        (lambda: (problem(tanh=True), FedAvg(local=MinibatchSGD(0.1, 16))), "Tanh"),
    ],
    ids=["scaffold", "diana", "quadratic", "tanh-model"],
)
def test_unsupported_combinations_fall_back_to_serial_with_a_note(make: Any, why: str) -> None:
    p, algo = make()
    assert why in (vectorisable(p, algo) or "")
    serial = run(p, algo, SerialBackend(), sampler=FullParticipation())
    with pytest.warns(UserWarning, match=r"run.backend = 'vectorised': .*one by one") as rec:
        vec = run(make()[0], algo, VectorisedBackend(), sampler=FullParticipation())
    assert len(rec) == 1 and "fedprox" in str(rec[0].message)  # it names what is supported
    assert torch.equal(serial.x, vec.x)  # the serial path itself: bit for bit


def test_supported_combinations_give_no_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run(problem(), FedProx(mu=0.1, local=MinibatchSGD(0.1, 16)), VectorisedBackend())


def _quad() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    m = rng.normal(size=(4, 5, 5))
    return m @ m.transpose(0, 2, 1) + np.eye(5), rng.normal(size=(4, 5)), np.full(4, 0.25)


# ----------------------------------------------------------------------------- config / CLI

DIGITS = """
[data]
dataset = "digits"
num_clients = 30
partition = "dirichlet"
alpha = 0.5
[model]
name = "{model}"
[algorithm]
name = "fedprox"
mu = 0.05
[local]
solver = "sgd"
lr = 0.05
batch_size = 8
[sampling]
scheme = "uniform"
cohort_size = 6
[run]
rounds = 3
"""

runner = CliRunner()


@pytest.mark.parametrize("model", ["logistic", "mlp"])
def test_cli_run_with_the_vectorised_backend_matches_serial(model: str, tmp_path: Path) -> None:
    cfg = tmp_path / "d.toml"
    cfg.write_text(DIGITS.format(model=model))
    rows = []
    for backend in ("serial", "vectorised"):
        res = runner.invoke(
            app,
            ["fl", "run", str(cfg), "--set", f"run.backend={backend}", "--set",
             f"run.out_dir={tmp_path}", "--set", f"run.name={backend}"],
        )  # fmt: skip
        assert res.exit_code == 0, res.output
        (run_dir,) = (tmp_path / backend).parent.glob(f"{backend}*")
        rows.append(read_history(run_dir / "history.jsonl"))
    for a, b in zip(*rows, strict=True):
        assert_rows_close(a, b, TOL[torch.float32])


def test_a_misspelt_backend_is_a_one_line_error(tmp_path: Path) -> None:
    cfg = tmp_path / "d.toml"
    cfg.write_text(DIGITS.format(model="logistic"))
    res = runner.invoke(app, ["fl", "run", str(cfg), "--set", "run.backend=vectorized"])
    assert res.exit_code == 2, res.output
    assert "run.backend" in res.output and "vectorised" in res.output
    assert "Traceback" not in res.output


def test_inputs_gathered_step_by_step_when_a_round_is_large(monkeypatch: Any) -> None:
    """Past ``_GATHER_BYTES`` a round's inputs are gathered per step: the same numbers."""
    import phloem.fl.vectorised as vectorised

    algo = FedProx(mu=0.2, local=MinibatchSGD(0.1, 16, 2))
    at_once = run(problem(), algo, VectorisedBackend())
    monkeypatch.setattr(vectorised, "_GATHER_BYTES", 0)
    per_step = run(problem(), algo, VectorisedBackend())
    assert torch.equal(at_once.x, per_step.x)
