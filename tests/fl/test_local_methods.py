"""Local-training methods (ProxSkip/Scaffnew, GradSkip, FedNova, FedDyn) on the quadratic.

The reference is the closed-form x* of the strongly convex federated quadratic. ProxSkip,
GradSkip and FedDyn provably converge to it exactly and must reach it to 1e-8; FedNova has the
O(lr) drift of local gradient descent, which must shrink with the local step while FedAvg's
objective inconsistency under heterogeneous local steps does not. ProxSkip's rounds are checked
against a per-iteration numpy transcription of Scaffnew (Algorithm 2 of the paper).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from phloem.cli.app import app
from phloem.core.errors import ConfigError
from phloem.core.history import Row
from phloem.core.rundir import RunDir
from phloem.data.synthetic import make_quadratic
from phloem.fl.algorithms.base import Algorithm
from phloem.fl.algorithms.fedavg import FedAvg
from phloem.fl.algorithms.feddyn import FedDyn
from phloem.fl.algorithms.fednova import FedNova
from phloem.fl.algorithms.gradskip import GradSkip
from phloem.fl.algorithms.proxskip import ProxSkip
from phloem.fl.backends import ProcessBackend
from phloem.fl.config import load_config
from phloem.fl.experiment import build_experiment, run_experiment, theory_step
from phloem.fl.local import FullGradient, LocalResult, LocalSolver, MinibatchSGD
from phloem.fl.problem import ClientOracle, GradResult, QuadraticProblem
from phloem.fl.registries import ALGORITHMS
from phloem.fl.sampling import ClientSampler, FullParticipation, UniformCohort
from phloem.fl.server_opt import ServerSGD
from phloem.fl.simulate import TIMING_KEYS, SimulationResult, simulate

TOL = 1e-8
runner = CliRunner()


def run(
    problem: QuadraticProblem,
    algo: Algorithm,  # type: ignore[type-arg]
    rounds: int,
    sampler: ClientSampler | None = None,
    seed: int = 1,
) -> SimulationResult:
    return simulate(
        problem, algo, sampler or FullParticipation(), rounds=rounds, seed=seed, eval_every=rounds
    )


def dist(problem: QuadraticProblem, res: SimulationResult) -> float:
    return float(torch.linalg.vector_norm(res.x - problem.x_star))


def per_round(res: SimulationResult, key: str) -> np.ndarray:
    return np.array(res.history.column(key)[1:], dtype=np.float64)


def scaffnew_reference(
    problem: QuadraticProblem, gamma: float, p: float, local_steps: list[int]
) -> np.ndarray:
    """Scaffnew iteration by iteration in numpy: every client's x_i and h_i, the coin coming
    up on the last iteration of each round (``local_steps[r]`` iterations in round ``r``)."""
    A, b, w = problem.A.numpy(), problem.b.numpy(), problem.weights
    n, d = b.shape
    X, H = np.zeros((n, d)), np.zeros((n, d))
    for k in local_steps:
        for t in range(k):
            grads = np.einsum("ijk,ik->ij", A, X) - b
            X_hat = X - gamma * (grads - H)
            # theta_t = 1 on the round's last iteration: the prox of the consensus constraint
            last = t == k - 1
            X_new = np.tile(w @ (X_hat - (gamma / p) * H), (n, 1)) if last else X_hat
            H = H + (p / gamma) * (X_new - X_hat)
            X = X_new
    return np.asarray(X[0])


# --------------------------------------------------------------------------- ProxSkip


def test_proxskip_converges_to_the_exact_optimum_at_the_theory_step(
    quad: QuadraticProblem,
) -> None:
    s = quad.smoothness()
    gamma = ProxSkip().theory_step(s, quad.dim)
    assert gamma == pytest.approx(1.0 / max(quad.client_L))
    p = math.sqrt(s.mu / s.L)  # the theory's choice (mu, L of f here: a heuristic p)
    res = run(quad, ProxSkip(local=FullGradient(gamma), p=p), 200)
    assert dist(quad, res) < TOL


def test_proxskip_rounds_equal_a_per_iteration_scaffnew_transcription(
    quad: QuadraticProblem,
) -> None:
    gamma, p = 0.3, 0.25
    res = run(quad, ProxSkip(local=FullGradient(gamma), p=p), 12, seed=5)
    # quadratic clients hold one "sample": a round's oracle work is n * K gradients
    steps = per_round(res, "oracle_samples") / quad.num_clients
    ref = scaffnew_reference(quad, gamma, p, [int(k) for k in steps])
    np.testing.assert_allclose(res.x.numpy(), ref, rtol=0, atol=1e-12)


def test_proxskip_local_steps_are_geometric_and_only_communications_cost_bits(
    quad: QuadraticProblem,
) -> None:
    p, n, d = 0.25, quad.num_clients, quad.dim
    res = run(quad, ProxSkip(local=FullGradient(0.3), p=p), 400, seed=2)
    steps = per_round(res, "oracle_samples") / n
    assert steps[0] == 4  # round 1: round(1/p), drawn before the server's generator exists
    k = steps[1:]
    assert k.min() >= 1 and np.all(k == np.round(k)) and len(set(k)) > 5
    # Geometric(p): mean 1/p, variance (1 - p) / p^2
    assert abs(k.mean() - 1 / p) < 4 * math.sqrt((1 - p) / p**2 / len(k))
    # A round is one communication: its uplink is n models, however many local steps it had.
    np.testing.assert_array_equal(per_round(res, "up_bits"), n * 32 * d)
    assert res.history.last()["cum_up_bits"] == 400 * n * 32 * d
    assert per_round(res, "clients").tolist() == [n] * 400


def test_proxskip_takes_every_client_whatever_the_sampler(quad: QuadraticProblem) -> None:
    res = run(quad, ProxSkip(local=FullGradient(0.3), p=0.3), 100, UniformCohort(3))
    assert set(per_round(res, "clients")) == {quad.num_clients}
    assert dist(quad, res) < TOL


def test_gradskip_with_q_one_is_proxskip(quad: QuadraticProblem) -> None:
    a = run(quad, ProxSkip(local=FullGradient(0.3), p=0.3), 20)
    b = run(quad, GradSkip(local=FullGradient(0.3), p=0.3, q=1.0), 20)
    assert torch.equal(a.x, b.x)


def test_gradskip_converges_exactly_with_fewer_gradients(quad: QuadraticProblem) -> None:
    gamma, p, q, n = 0.3, 0.3, 0.5, quad.num_clients
    prox = run(quad, ProxSkip(local=FullGradient(gamma), p=p), 120)
    grad = run(quad, GradSkip(local=FullGradient(gamma), p=p, q=q), 120)
    assert dist(quad, grad) < TOL
    # the same shared coins (the server's stream): the same K per round
    k = per_round(prox, "oracle_samples") / n
    computed = per_round(grad, "oracle_samples")
    assert np.all(computed <= n * k) and computed.sum() < 0.7 * (n * k).sum()
    # a client computes min(K, G) gradients, G ~ Geometric(1 - q): E = (1 - q^K) / (1 - q)
    expected = n * (1 - q**k) / (1 - q)
    assert abs(computed.sum() - expected.sum()) < 0.1 * expected.sum()  # ~5 sigma
    np.testing.assert_array_equal(per_round(grad, "up_bits"), per_round(prox, "up_bits"))


def test_gradskip_client_dependent_q_converges(quad: QuadraticProblem) -> None:
    algo = GradSkip(local=FullGradient(0.3), p=0.3, q=0.9, q_min=0.2)
    res = run(quad, algo, 150)
    assert dist(quad, res) < TOL
    qs = [s.q for s in res.client_states]
    assert all(0.2 <= v <= 0.9 for v in qs) and len(set(qs)) == quad.num_clients


def test_gradskip_needs_full_gradients() -> None:
    with pytest.raises(ValueError, match=r"local\.solver must be 'full'"):
        GradSkip(local=MinibatchSGD(0.1))


def test_proxskip_refuses_a_server_step_that_is_not_the_average() -> None:
    with pytest.raises(ValueError, match=r"server\.lr must be 1"):
        ProxSkip(server_opt=ServerSGD(0.5))


# --------------------------------------------------------------------------- FedNova


def test_fednova_normalised_update_equals_a_hand_computed_round(quad: QuadraticProblem) -> None:
    eta = 0.1
    algo = FedNova(local=FullGradient(eta), local_steps="uniform:1:6")
    res = simulate(quad, algo, UniformCohort(4), rounds=1, seed=3)
    steps = res.client_states
    cohort = UniformCohort(4)
    from phloem.core.rng import SeedStreams, Stage

    ids = cohort.cohort(1, quad.num_clients, SeedStreams(3).numpy(Stage.SAMPLING, 1))
    x = torch.zeros(quad.dim, dtype=torch.float64)
    p = quad.weights[ids] / quad.weights[ids].sum()
    d, tau = torch.zeros_like(x), 0.0
    for pi, i in zip(p, ids, strict=True):
        y = x.clone()
        for _ in range(steps[i]):
            y = y - eta * (quad.A[i] @ y - quad.b[i])
        d += float(pi) * (x - y) / steps[i]
        tau += float(pi) * steps[i]
    np.testing.assert_allclose(res.x.numpy(), (x - tau * d).numpy(), rtol=0, atol=1e-13)
    assert len(set(steps)) > 1 and all(1 <= a <= 6 for a in steps)
    assert res.history.last()["up_bits"] == 4 * (32 * quad.dim + 32)  # d_i and a_i


def test_fednova_with_equal_steps_is_fedavg(quad: QuadraticProblem) -> None:
    nova = run(quad, FedNova(local=FullGradient(0.2), local_steps="uniform:4:4"), 10)
    avg = run(quad, FedAvg(local=FullGradient(0.2, 4)), 10)
    np.testing.assert_allclose(nova.x.numpy(), avg.x.numpy(), rtol=0, atol=1e-12)


def test_fednova_drift_vanishes_with_the_local_step_fedavg_inconsistency_does_not(
    quad: QuadraticProblem,
) -> None:
    """Heterogeneous local steps a_i in 1..10: FedAvg's fixed point tends to the minimiser of
    sum_i w_i a_i f_i (far from x*) as lr -> 0; FedNova's gap to x* is O(lr)."""
    errors: dict[tuple[bool, float], float] = {}
    for normalize in (True, False):
        for lr in (0.04, 0.004):
            algo = FedNova(
                local=FullGradient(lr),
                local_steps="uniform:1:10",
                normalize=normalize,
                server_opt=ServerSGD(0.1 / lr),  # the fixed point does not depend on it
            )
            errors[normalize, lr] = dist(quad, run(quad, algo, 120))
    assert errors[True, 0.004] < 0.15 * errors[True, 0.04]  # O(lr) drift
    assert errors[False, 0.004] > 0.8 * errors[False, 0.04] > 0.5  # objective inconsistency
    assert errors[True, 0.04] < 0.2 * errors[False, 0.04]


# --------------------------------------------------------------------------- FedDyn


def feddyn(alpha: float = 1.0, steps: int = 20, lmax: float = 2.7) -> FedDyn:
    """FedDyn with accurately solved local problems (many full-gradient steps)."""
    return FedDyn(local=FullGradient(1.0 / (lmax + alpha), steps), alpha=alpha)


def test_feddyn_converges_to_the_exact_optimum(quad: QuadraticProblem) -> None:
    res = run(quad, feddyn(), 130)
    assert dist(quad, res) < TOL
    # the server's h is the weighted sum of the clients' g_i
    h = sum(float(w) * g for w, g in zip(quad.weights, res.client_states, strict=True))
    assert torch.allclose(res.server.h, h, atol=1e-12)


def test_feddyn_partial_participation_converges(quad: QuadraticProblem) -> None:
    res = run(quad, feddyn(), 200, UniformCohort(5))
    assert dist(quad, res) < TOL
    h = sum(float(w) * g for w, g in zip(quad.weights, res.client_states, strict=True))
    assert torch.allclose(res.server.h, h, atol=1e-12)


def test_feddyn_removes_the_drift_fedavg_has(quad: QuadraticProblem) -> None:
    local = FullGradient(1.0 / 3.7, 20)
    assert dist(quad, run(quad, FedAvg(local=local), 130)) > 1e-2
    assert dist(quad, run(quad, FedDyn(local=local, alpha=1.0), 130)) < TOL


# --------------------------------------------------------------------------- parameters


@pytest.mark.parametrize(
    ("name", "key", "value"),
    [
        ("proxskip", "p", 0.0),
        ("proxskip", "p", 1.5),
        ("proxskip", "p", math.nan),
        ("gradskip", "p", -0.1),
        ("gradskip", "q", 0.0),
        ("gradskip", "q", math.nan),
        ("gradskip", "q_min", 2.0),
        ("feddyn", "alpha", 0.0),
        ("feddyn", "alpha", -1.0),
        ("feddyn", "alpha", math.nan),
        ("fednova", "local_steps", "uniform:0:3"),
        ("fednova", "local_steps", "uniform:5:2"),
        ("fednova", "local_steps", "5"),
    ],
)
def test_params_reject_bad_values_naming_the_field(name: str, key: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"algorithm.{key} must"):
        ALGORITHMS.get(name).Params(**{key: value})


def test_params_accept_the_edges() -> None:
    ALGORITHMS.get("proxskip").Params(p=1.0)
    ALGORITHMS.get("gradskip").Params(p=1.0, q=0.5, q_min=0.5)
    ALGORITHMS.get("fednova").Params(local_steps="uniform:1:1", normalize=False)
    with pytest.raises(ValueError, match=r"algorithm\.q_min must be <= algorithm\.q"):
        ALGORITHMS.get("gradskip").Params(q=0.3, q_min=0.4)


# --------------------------------------------------------------------------- CLI and resume

QUAD = """
[data]
dataset = "quadratic"
num_clients = 5
dim = 4

[local]
solver = "full"
lr = 0.2

[sampling]
scheme = "full"

[run]
name = "q"
rounds = 30
checkpoint_every = 0
"""

CLI_ALGOS = {
    "proxskip": ["algorithm.p=0.4"],
    "gradskip": ["algorithm.p=0.4", "algorithm.q=0.9", "algorithm.q_min=0.3"],
    "fednova": ["algorithm.local_steps=uniform:1:5"],
    "feddyn": ["algorithm.alpha=0.5", "local.steps=10"],
}


@pytest.mark.parametrize("name", sorted(CLI_ALGOS))
def test_a_config_runs_through_the_cli(name: str, tmp_path: Path) -> None:
    path = tmp_path / "q.toml"
    path.write_text(QUAD)
    sets = [f"algorithm.name={name}", *CLI_ALGOS[name], f"run.out_dir={tmp_path / 'runs'}"]
    res = runner.invoke(app, ["fl", "run", str(path), *[a for s in sets for a in ("--set", s)]])
    assert res.exit_code == 0, res.output
    (run_path,) = (tmp_path / "runs").iterdir()
    rows = RunDir.open(run_path).history().rows
    assert rows[-1]["round"] == 30
    assert float(rows[-1]["dist_to_opt"]) < 0.5 * float(rows[0]["dist_to_opt"])


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("algorithm.p=1.5", "algorithm"),
        ("algorithm.p=nan", "algorithm.p"),
        ("server.lr=0.5", "algorithm"),
    ],
)
def test_careless_proxskip_values_are_one_line_errors(
    override: str, field: str, tmp_path: Path
) -> None:
    path = tmp_path / "q.toml"
    path.write_text(QUAD)
    res = runner.invoke(
        app,
        ["fl", "run", str(path), "--set", "algorithm.name=proxskip", "--set", override,
         "--set", f"run.out_dir={tmp_path}"],
    )  # fmt: skip
    assert res.exit_code == 2, res.output
    assert f"config field '{field}" in " ".join(res.output.split())
    assert "Traceback" not in res.output


def test_fl_theory_prints_the_proxskip_step_and_lr_rule_sets_the_local_step(
    tmp_path: Path,
) -> None:
    path = tmp_path / "q.toml"
    path.write_text(QUAD)
    cfg = load_config(path, ["algorithm.name=proxskip", "server.lr_rule=theory"])
    exp = build_experiment(cfg)
    s = exp.problem.smoothness()
    assert s is not None and s.L_client is not None
    assert isinstance(exp.algorithm, ProxSkip)
    assert exp.algorithm.gamma == pytest.approx(1.0 / s.L_client)
    assert exp.algorithm.server_opt == ServerSGD(1.0)
    res = runner.invoke(app, ["fl", "theory", str(path)])
    assert res.exit_code == 0, res.output
    line = next(ln for ln in res.output.splitlines() if "step size, proxskip" in ln)
    assert f"{1.0 / s.L_client:.6g}" in line
    grad = next(ln for ln in res.output.splitlines() if "step size, gradskip" in ln)
    assert f"{1.0 / s.L_client:.6g}" in grad  # GradSkip's theorem: ProxSkip's step


def stripped(rows: list[Row]) -> list[Row]:
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in rows]


RESUMED = {
    "proxskip": ProxSkip(local=FullGradient(0.3), p=0.3),
    "gradskip": GradSkip(local=FullGradient(0.3), p=0.3, q=0.8, q_min=0.3),
    "fednova": FedNova(local=FullGradient(0.1), local_steps="uniform:1:5"),
    "feddyn": FedDyn(local=FullGradient(0.25, 5), alpha=0.5),
}


@pytest.mark.parametrize("name", sorted(RESUMED))
def test_resume_continues_exactly(name: str, quad: QuadraticProblem, tmp_path: Path) -> None:
    algo, sampler = RESUMED[name], UniformCohort(4)
    full = simulate(quad, algo, sampler, rounds=8, seed=4)
    rd = RunDir.create(tmp_path, "r")
    simulate(quad, algo, sampler, rounds=5, seed=4, run_dir=rd, checkpoint_every=5)
    resumed = simulate(quad, algo, sampler, rounds=8, seed=4, run_dir=rd, resume=True)
    assert stripped(resumed.history.rows) == stripped(full.history.rows)
    assert torch.equal(resumed.x, full.x)
    for a, b in zip(resumed.client_states, full.client_states, strict=True):
        assert repr(a) == repr(b)


@pytest.mark.parametrize("name", sorted(CLI_ALGOS))
def test_secure_aggregation_gives_the_plain_run_up_to_quantisation(
    name: str, tmp_path: Path
) -> None:
    """The server sees only weighted sums of the uplinks, so a securely aggregated run follows
    the plain one up to the protocol's quantisation error."""
    path = tmp_path / "q.toml"
    path.write_text(QUAD)
    finals = {}
    for agg in ("plain", "secagg"):
        sets = [f"algorithm.name={name}", *CLI_ALGOS[name], "run.rounds=10"]
        sets += [f"aggregation.name={agg}", f"run.out_dir={tmp_path / agg}"]
        res = run_experiment(load_config(path, sets), progress=False)
        finals[agg] = res.x
        if agg == "secagg":
            assert all(r.get("secagg_ok", 1) for r in res.history.rows[1:])
    assert torch.allclose(finals["plain"], finals["secagg"], rtol=0, atol=1e-5)
    assert not torch.equal(finals["plain"], finals["secagg"])  # it did go through the protocol


def weighted_quadratic() -> QuadraticProblem:
    """Clients of unequal weights: the methods' w-weighted forms must still find x*."""
    w = np.array([5.0, 1, 1, 2, 8, 1, 3, 1])
    q = make_quadratic(8, 6, 1.0, 0.2, np.random.default_rng(3), 1.0, w)
    return QuadraticProblem(q.A, q.b, q.weights)


def test_unequal_client_weights_still_give_the_exact_optimum() -> None:
    q = weighted_quadratic()
    s = q.smoothness()
    assert s.L_client is not None and s.L_client != pytest.approx(s.L_max)
    gamma = ProxSkip().theory_step(s, q.dim)
    assert dist(q, run(q, ProxSkip(local=FullGradient(gamma), p=0.3), 200)) < TOL
    assert dist(q, run(q, GradSkip(local=FullGradient(gamma), p=0.3, q=0.6), 200)) < TOL
    dyn = FedDyn(local=FullGradient(1 / (s.L_client + 1), 30), alpha=1.0)
    assert dist(q, run(q, dyn, 300, UniformCohort(3))) < TOL


@pytest.mark.parametrize("name", ["gradskip", "fednova"])
def test_serial_and_process_backends_are_bit_identical(name: str, quad: QuadraticProblem) -> None:
    algo = RESUMED[name]
    serial = simulate(quad, algo, FullParticipation(), rounds=6, seed=1)
    procs = simulate(
        quad, algo, FullParticipation(), rounds=6, seed=1, backend=ProcessBackend(workers=2)
    )
    assert stripped(serial.history.rows) == stripped(procs.history.rows)
    assert torch.equal(serial.x, procs.x)


class _Rows(ClientOracle):
    """An oracle that only says how many rows its client holds."""

    def __init__(self, n: int) -> None:
        self.num_samples = n

    def workspace(self, x: torch.Tensor) -> torch.Tensor:
        return x.clone()

    def batch_grad(
        self, w: torch.Tensor, idx: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.zeros_like(w), torch.zeros(())


def test_fednova_steps_default_to_the_solvers_count_for_the_clients_data() -> None:
    algo = FedNova(local=MinibatchSGD(0.1, batch_size=10, epochs=2))
    x0, gen = torch.zeros(3), torch.Generator()
    assert [algo.init_client(x0, _Rows(n), gen) for n in (5, 10, 35, 100)] == [2, 2, 8, 20]
    with pytest.raises(ValueError, match=r"algorithm\.local_steps needs a local solver"):
        FedNova(local=_NoSteps(), local_steps="uniform:1:3")


class _NoSteps(LocalSolver):
    """A local solver without a ``steps`` key."""

    name, description, Params, lr = "nosteps", "", dict, 0.1

    def run(self, oracle: ClientOracle, x: torch.Tensor, gen: torch.Generator) -> LocalResult:
        return LocalResult(x, 1, 0.0, 0)

    def gradient(self, oracle: ClientOracle, x: torch.Tensor, gen: torch.Generator) -> GradResult:
        return oracle.grad(x)

    def num_steps(self, num_samples: int) -> int:
        return 1


def test_the_theory_rule_still_needs_the_sgd_server_for_server_step_methods(
    tmp_path: Path,
) -> None:
    path = tmp_path / "q.toml"
    path.write_text(QUAD)
    sets = ["algorithm.name=diana", "server.optimizer=adam", "server.lr_rule=theory"]
    with pytest.raises(ConfigError, match="'theory' applies to the sgd server optimiser"):
        build_experiment(load_config(path, sets))
    diana = build_experiment(load_config(path, ["algorithm.name=diana", "server.lr_rule=theory"]))
    assert diana.algorithm.server_opt.lr == pytest.approx(
        theory_step(diana.algorithm, diana.problem)
    )
