"""FedAdagrad and FedYogi against their recursions; step-size schedules against their formulas
and against hand-written gradient descent; local SGD's momentum and weight decay."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from phloem.cli.app import app
from phloem.core.errors import ConfigError
from phloem.core.rundir import RunDir
from phloem.fl.algorithms.fedavg import FedAvg
from phloem.fl.backends import ProcessBackend
from phloem.fl.config import load_config
from phloem.fl.experiment import build_experiment, check_resumable
from phloem.fl.local import MinibatchSGD, _descend, _minibatches
from phloem.fl.problem import ClientOracle, QuadraticProblem
from phloem.fl.registries import SCHEDULES, SERVER_OPTIMIZERS
from phloem.fl.sampling import FullParticipation, UniformCohort
from phloem.fl.schedules import (
    Cosine,
    Exponential,
    LrSchedules,
    StepDecay,
)
from phloem.fl.server_opt import OptState, ServerAdagrad, ServerSGD, ServerYogi
from phloem.fl.simulate import TIMING_KEYS, simulate

# ----------------------------------------------------------------------- server optimisers

GRADS = ([0.5, -1.0, 0.0], [0.1, 0.3, 2.0], [-0.2, 0.0, 0.01], [1.5, -0.1, -0.3])


def _run_opt(opt: ServerAdagrad | ServerYogi) -> list[np.ndarray]:
    x, state, out = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64), OptState(), []
    for g in GRADS:
        x, state = opt.step(x, torch.tensor(g, dtype=torch.float64), state)
        out.append(x.numpy().copy())
    assert state.step == len(GRADS)
    return out


@pytest.mark.parametrize("v0", [None, 0.5])
def test_fedadagrad_follows_algorithm_2_without_bias_correction(v0: float | None) -> None:
    lr, b1, tau = 0.1, 0.9, 1e-2
    got = _run_opt(ServerAdagrad(lr=lr, beta1=b1, eps=tau, initial_accumulator=v0))
    x, m = np.array([1.0, -2.0, 0.5]), np.zeros(3)
    v = np.full(3, tau**2 if v0 is None else v0)  # Reddi et al.: v_0 >= tau^2
    for g, xg in zip(GRADS, got, strict=True):
        delta = -np.array(g)  # Algorithm 2's Delta_t is minus the direction
        m = b1 * m + (1 - b1) * delta
        v = v + delta**2
        x = x + lr * m / (np.sqrt(v) + tau)
        np.testing.assert_allclose(xg, x, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("v0", [None, 1.0])
def test_fedyogi_follows_algorithm_2_without_bias_correction(v0: float | None) -> None:
    lr, b1, b2, tau = 0.05, 0.8, 0.9, 1e-2
    got = _run_opt(ServerYogi(lr=lr, beta1=b1, beta2=b2, eps=tau, initial_accumulator=v0))
    x, m = np.array([1.0, -2.0, 0.5]), np.zeros(3)
    v = np.full(3, tau**2 if v0 is None else v0)
    signs = set()
    for g, xg in zip(GRADS, got, strict=True):
        delta = -np.array(g)
        m = b1 * m + (1 - b1) * delta
        signs |= set(np.sign(v - delta**2))
        v = v - (1 - b2) * delta**2 * np.sign(v - delta**2)
        x = x + lr * m / (np.sqrt(v) + tau)
        np.testing.assert_allclose(xg, x, rtol=1e-13, atol=1e-15)
    if v0 is not None:
        assert {-1.0, 1.0} <= signs  # both branches of Yogi's update were exercised


@pytest.mark.parametrize(
    "opt", [ServerAdagrad(lr=0.3), ServerYogi(lr=0.1)], ids=["adagrad", "yogi"]
)
def test_fedavg_with_an_adaptive_server_converges_on_the_quadratic(
    quad: QuadraticProblem, opt: ServerAdagrad | ServerYogi
) -> None:
    from phloem.fl.local import FullGradient

    algo = FedAvg(local=FullGradient(0.5, 1), server_opt=opt)
    res = simulate(quad, algo, FullParticipation(), rounds=200, eval_every=200)
    first, last = res.history.rows[0]["dist_to_opt"], res.history.last()["dist_to_opt"]
    assert first > 4 and last < 1e-3 * first


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"beta1": math.nan}, "server.beta1"),
        ({"beta1": 1.0}, "server.beta1"),
        ({"beta1": -0.1}, "server.beta1"),
        ({"beta2": 1.0}, "server.beta2"),
        ({"beta2": math.nan}, "server.beta2"),
        ({"eps": 0.0}, "server.eps"),
        ({"eps": -1e-3}, "server.eps"),
        ({"eps": math.nan}, "server.eps"),
        ({"initial_accumulator": 1e-9}, "server.initial_accumulator"),
        ({"initial_accumulator": math.nan}, "server.initial_accumulator"),
        ({"lr": math.nan}, "server.lr"),
        ({"lr": 0.0}, "server.lr"),
    ],
)
def test_bad_adaptive_parameters_are_refused_naming_the_field(
    kwargs: dict[str, float], field: str
) -> None:
    for cls in (ServerAdagrad, ServerYogi):
        if "beta2" in kwargs and cls is ServerAdagrad:
            continue
        with pytest.raises(ValueError, match=field.replace(".", r"\.")):
            cls(**kwargs)  # type: ignore[arg-type]
    # the same through a config file's section
    opt = "yogi"
    key, value = next(iter(kwargs.items()))
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        load_config(None, [f"server.optimizer={opt}", f"server.{key}={value}"])


def test_the_adaptive_optimisers_are_registered_with_their_citation() -> None:
    for name in ("adagrad", "yogi"):
        part = SERVER_OPTIMIZERS.get(name)
        assert "Reddi et al., ICLR 2021" in part.description
        assert "no bias correction" in part.description


# ----------------------------------------------------------------------------- schedules

R = 20


def _hand(name: str, k: int, w: int, **p: float) -> float:
    """The module docstring's formulas, written out again."""
    if k <= w:
        return k / (w + 1)
    t, horizon = k - 1 - w, R - w
    if name == "constant":
        return 1.0
    if name == "step":
        return p["gamma"] ** math.floor(t / p["step_rounds"])
    if name == "exponential":
        return p["gamma"] ** t
    if name == "cosine":
        lo = p["min_factor"]
        return lo + (1 - lo) * 0.5 * (1 + math.cos(math.pi * t / horizon))
    if name == "inverse":
        return p["offset"] / (t + p["offset"])
    return math.sqrt(p["offset"] / (t + p["offset"]))


CASES = [
    ("constant", {}),
    ("step", {"gamma": 0.5, "step_rounds": 3}),
    ("exponential", {"gamma": 0.9}),
    ("cosine", {"min_factor": 0.1}),
    ("inverse", {"offset": 4.0}),
    ("inverse_sqrt", {"offset": 2.0}),
]


@pytest.mark.parametrize(("name", "params"), CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("warmup", [0, 3])
def test_each_schedule_matches_its_formula(
    name: str, params: dict[str, float], warmup: int
) -> None:
    sched = SCHEDULES.get(name)(warmup_rounds=warmup, **params)  # type: ignore[arg-type]
    got = [sched.factor(k, R) for k in range(1, R + 1)]
    want = [_hand(name, k, warmup, **params) for k in range(1, R + 1)]
    np.testing.assert_allclose(got, want, rtol=1e-14)
    assert got[warmup] == 1.0  # the first round after the warm-up takes the configured step
    assert all(f > 0 for f in got)


def test_a_schedule_that_underflows_to_a_zero_step_is_refused_up_front() -> None:
    with pytest.raises(ConfigError) as e:
        LrSchedules(Cosine(), Exponential(gamma=0.5), 2000)
    assert e.value.field == "server.schedule"
    LrSchedules(Cosine(), Exponential(gamma=0.5), 1000)  # 0.5 ** 999 is still > 0


def test_cosine_with_its_own_horizon_stays_at_its_floor() -> None:
    c = Cosine(min_factor=0.2, decay_rounds=4)
    assert [c.factor(k, 100) for k in (1, 3, 5, 6, 50)] == pytest.approx([1.0, 0.6, 0.2, 0.2, 0.2])
    assert c.uses_run_length is False and Cosine().uses_run_length is True


@pytest.mark.parametrize(
    ("name", "key", "value"),
    [
        ("step", "gamma", math.nan),
        ("step", "gamma", 0.0),
        ("step", "gamma", 1.5),
        ("step", "step_rounds", 0),
        ("exponential", "gamma", -0.5),
        ("cosine", "min_factor", math.nan),
        ("cosine", "min_factor", 1.5),
        ("cosine", "decay_rounds", 0),
        ("inverse", "offset", -1.0),
        ("inverse_sqrt", "offset", math.nan),
        ("constant", "warmup_rounds", -1),
    ],
)
@pytest.mark.parametrize("section", ["local", "server"])
def test_bad_schedule_parameters_are_refused_naming_the_field(
    name: str, key: str, value: float, section: str
) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(None, [f"{section}.schedule={name}", f"{section}.{key}={value}"])
    assert e.value.field == f"{section}.{key}"


def test_a_bad_schedule_is_one_line_from_the_cli(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[data]\ndataset = "quadratic"\n[local]\nschedule = "step"\ngamma = -1\n')
    res = CliRunner().invoke(app, ["fl", "run", str(cfg), "--no-progress"])
    assert res.exit_code == 2
    assert "local.gamma" in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(app, ["fl", "run", str(cfg), "--set", "local.schedule=nope"])
    assert res.exit_code == 2 and "cosine" in res.output  # lists the schedules


def test_fl_list_shows_the_schedules() -> None:
    res = CliRunner().invoke(app, ["fl", "list"])
    assert res.exit_code == 0, res.output
    for name in ("constant", "step", "exponential", "cosine", "inverse", "inverse_sqrt"):
        assert name in res.output
    assert "[server] schedule" in res.output


def test_scheduled_fedavg_with_one_full_step_is_gradient_descent_with_those_steps(
    quad: QuadraticProblem,
) -> None:
    """FedAvg, one full-gradient local step, every client, server SGD: GD on f, whose step in
    round k is ``lr_local(k) * lr_server(k)``. Written out with the simulator's own arithmetic
    (each client's delta, the weighted sum in client order), so the match is exact."""
    from phloem.fl.local import FullGradient

    rounds = 9
    sched = LrSchedules(StepDecay(gamma=0.5, step_rounds=3), Exponential(gamma=0.5), rounds)
    algo = FedAvg(local=FullGradient(0.5, 1), server_opt=ServerSGD(1.0), lr_schedules=sched)
    res = simulate(quad, algo, FullParticipation(), rounds=rounds)

    x = torch.zeros(quad.dim, dtype=torch.float64)
    w = quad.weights / quad.weights.sum()
    for k in range(1, rounds + 1):
        lr_local = 0.5 * 0.5 ** ((k - 1) // 3)
        lr_server = 1.0 * 0.5 ** (k - 1)
        acc = torch.zeros_like(x)
        for i in range(quad.num_clients):
            y = x.clone()
            y.add_(quad.A[i] @ y - quad.b[i], alpha=-lr_local)
            acc.add_(y - x, alpha=float(w[i]))
        x = x - lr_server * -acc
        dist = float(torch.linalg.vector_norm(x - quad.x_star))
        assert res.history.rows[k]["dist_to_opt"] == dist
    assert torch.equal(res.x, x)
    # and without the schedules the run is another one
    plain = simulate(
        quad, dataclasses.replace(algo, lr_schedules=None), FullParticipation(), rounds=rounds
    )
    assert not torch.equal(plain.x, x)


def _small_quadratic() -> QuadraticProblem:
    from phloem.data.synthetic import make_quadratic

    q = make_quadratic(6, 5, 1.0, 0.2, np.random.default_rng(3), 1.0)
    return QuadraticProblem(q.A, q.b, q.weights)


SCHEDULED = FedAvg(
    local=MinibatchSGD(0.3, 1, steps=2),
    server_opt=ServerSGD(0.8, momentum=0.5),
    lr_schedules=LrSchedules(
        StepDecay(gamma=0.5, step_rounds=3, warmup_rounds=1), Cosine(min_factor=0.1), 8
    ),
)


def test_resume_across_a_schedule_boundary_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    def stripped(rows: list[dict[str, object]]) -> list[dict[str, object]]:
        return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in rows]

    full = simulate(_small_quadratic(), SCHEDULED, UniformCohort(3), rounds=8, seed=5)
    rd = RunDir.create(tmp_path, "r")
    # stop after round 4, between the step schedule's drops (after rounds 4 and 7)
    simulate(_small_quadratic(), SCHEDULED, UniformCohort(3), rounds=4, seed=5, run_dir=rd,
             checkpoint_every=4)  # fmt: skip
    resumed = simulate(
        _small_quadratic(), SCHEDULED, UniformCohort(3), rounds=8, seed=5, run_dir=rd, resume=True
    )
    assert stripped(resumed.history.rows) == stripped(full.history.rows)
    assert torch.equal(resumed.x, full.x)


def test_workers_take_the_scheduled_steps_too() -> None:
    serial = simulate(_small_quadratic(), SCHEDULED, UniformCohort(3), rounds=6, seed=5)
    procs = simulate(
        _small_quadratic(),
        SCHEDULED,
        UniformCohort(3),
        rounds=6,
        seed=5,
        backend=ProcessBackend(workers=2),
    )
    assert torch.equal(serial.x, procs.x)


def test_a_config_schedule_reaches_the_algorithm_and_refuses_a_longer_resume() -> None:
    base = {
        "data": {"dataset": "quadratic", "num_clients": 4, "dim": 3},
        "local": {"solver": "full", "lr": 0.2, "schedule": "cosine", "min_factor": 0.5},
        "server": {"schedule": "exponential", "gamma": 0.9},
        "sampling": {"scheme": "full"},
        "run": {"rounds": 10},
    }
    algo = build_experiment(load_config(None, [], base)).algorithm
    assert algo.lr_schedules is not None and algo.lr_schedules.rounds == 10
    at3 = algo.at_round(3)
    assert at3.local.lr == pytest.approx(0.2 * (0.5 + 0.25 * (1 + math.cos(math.pi * 2 / 10))))
    assert at3.server_opt.lr == pytest.approx(0.81)
    assert algo.local.lr == 0.2 and at3.lr_schedules is None  # the configured step is kept
    plain = build_experiment(load_config(None, [], {**base, "local": {"solver": "full"},
                                                    "server": {}})).algorithm  # fmt: skip
    assert plain.lr_schedules is None and plain.at_round(3) is plain
    saved = load_config(None, [], base)
    with pytest.raises(ConfigError, match="decay_rounds") as e:
        check_resumable(saved, load_config(None, ["run.rounds=20"], base))
    assert e.value.field == "run.rounds"
    base["local"]["decay_rounds"] = 10  # type: ignore[index]
    check_resumable(load_config(None, [], base), load_config(None, ["run.rounds=20"], base))


# ------------------------------------------------------------- local momentum, weight decay


class _LeastSquares(ClientOracle):
    """``(1 / 2m) ||X_B w - y_B||^2`` on a minibatch ``B`` of 13 rows."""

    def __init__(self) -> None:
        rng = np.random.default_rng(0)
        self.X = torch.tensor(rng.normal(size=(13, 4)))
        self.y = torch.tensor(rng.normal(size=13))
        self.num_samples = 13

    def workspace(self, x: torch.Tensor) -> torch.Tensor:
        return x.clone()

    def batch_grad(
        self, w: torch.Tensor, idx: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        X, y = (self.X, self.y) if idx is None else (self.X[idx], self.y[idx])
        r = X @ w - y
        return X.T @ r / len(y), 0.5 * (r @ r) / len(y)


def test_minibatch_sgd_defaults_are_the_old_plain_sgd_bit_for_bit() -> None:
    oracle, x0 = _LeastSquares(), torch.tensor([0.1, -0.2, 0.3, 0.0], dtype=torch.float64)
    got = MinibatchSGD(0.1, 4, epochs=3).run(oracle, x0, torch.Generator().manual_seed(1))
    # the solver's loop as it was before momentum and weight decay existed
    gen = torch.Generator().manual_seed(1)
    w = x0.clone()
    for idx in _minibatches(13, 4, 12, gen):
        g, _ = oracle.batch_grad(w, idx)
        w.add_(g, alpha=-0.1)
    assert torch.equal(got.x, w)
    old = _descend(oracle, x0, _minibatches(13, 4, 12, torch.Generator().manual_seed(1)), 0.1)
    assert torch.equal(got.x, old.x) and got.loss == old.loss and got.samples == old.samples


@pytest.mark.parametrize(("momentum", "wd"), [(0.9, 0.0), (0.0, 0.01), (0.5, 0.1)])
def test_minibatch_sgd_momentum_and_weight_decay_are_torch_sgd(momentum: float, wd: float) -> None:
    oracle, x0 = _LeastSquares(), torch.tensor([0.1, -0.2, 0.3, 0.0], dtype=torch.float64)
    solver = MinibatchSGD(0.05, 4, epochs=2, momentum=momentum, weight_decay=wd)
    got = solver.run(oracle, x0, torch.Generator().manual_seed(2))
    p = torch.nn.Parameter(x0.clone())
    opt = torch.optim.SGD([p], lr=0.05, momentum=momentum, weight_decay=wd)
    for idx in _minibatches(13, 4, 8, torch.Generator().manual_seed(2)):
        g, _ = oracle.batch_grad(p.detach(), idx)
        p.grad = g.clone()
        opt.step()
    torch.testing.assert_close(got.x, p.detach(), rtol=1e-14, atol=1e-15)
    assert got.steps == 8
    g = solver.gradient(oracle, x0, torch.Generator().manual_seed(0))
    big = MinibatchSGD(0.05, 100, weight_decay=wd).gradient(oracle, x0, torch.Generator())
    torch.testing.assert_close(big.grad, oracle.grad(x0).grad + wd * x0)
    assert g.samples == 4


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("momentum", 1.0),
        ("momentum", math.nan),
        ("weight_decay", -0.1),
        ("weight_decay", math.nan),
    ],
)
def test_bad_local_sgd_options_are_refused_naming_the_field(key: str, value: float) -> None:
    with pytest.raises(ConfigError, match=rf"local\.{key}"):
        load_config(None, [f"local.{key}={value}"])
