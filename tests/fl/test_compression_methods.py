"""PAGE, COFIG, FRECON, PP-MARINA, EF21-PP and EF21-BC against the closed-form optimum of the
federated quadratic, and against slow references written out from the papers' updates.

Each reference below replays the simulator's own random streams (sampling, the second cohort's
sub-stream, the server's coins and draws, each client's compression stream) in a plain loop over
clients, so the fast path must agree with it to rounding. Convergence: every method whose
theory gives it (FRECON, COFIG, PP-MARINA, EF21-PP, EF21-BC, PAGE on a strongly convex problem)
must reach ``x*`` itself; DCGD under the same compression and partial participation must stall.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from phloem.cli.app import app
from phloem.core.errors import ConfigError
from phloem.core.rng import SeedStreams, Stage
from phloem.core.rundir import RunDir
from phloem.data.synthetic import make_quadratic
from phloem.fl.aggregation import PlainAggregation
from phloem.fl.algorithms import (
    DCGD,
    EF21,
    EF21BC,
    EF21PP,
    Algorithm,
    Cofig,
    Frecon,
    Page,
    PPMarina,
)
from phloem.fl.backends import ProcessBackend
from phloem.fl.compressors import RandK, TopK
from phloem.fl.config import load_config
from phloem.fl.experiment import build_experiment, theory_report, theory_step
from phloem.fl.problem import QuadraticProblem
from phloem.fl.registries import ALGORITHMS
from phloem.fl.sampling import ClientSampler, FixedSchedule, FullParticipation, UniformCohort
from phloem.fl.secure import SecAgg
from phloem.fl.server_opt import ServerSGD
from phloem.fl.simulate import SimulationResult, simulate
from phloem.secagg import SecAggSettings

runner = CliRunner()


def run(
    problem: QuadraticProblem,
    algo: Algorithm,  # type: ignore[type-arg]
    rounds: int,
    sampler: ClientSampler | None = None,
    seed: int = 1,
    eval_every: int | None = None,
) -> SimulationResult:
    return simulate(
        problem,
        algo,
        sampler or FullParticipation(),
        rounds=rounds,
        seed=seed,
        eval_every=eval_every or rounds,
    )


def dist(problem: QuadraticProblem, res: SimulationResult) -> float:
    return float(torch.linalg.vector_norm(res.x - problem.x_star))


def grads(q: QuadraticProblem, x: torch.Tensor) -> list[torch.Tensor]:
    """``grad f_i(x)`` of every client, written out."""
    return [q.A[i] @ x - q.b[i] for i in range(q.num_clients)]


# --------------------------------------------------------------------------- PAGE


def test_page_converges_with_full_and_partial_participation(quad: QuadraticProblem) -> None:
    assert dist(quad, run(quad, Page(server_opt=ServerSGD(0.5)), 250)) < 1e-10
    res = run(quad, Page(server_opt=ServerSGD(0.5)), 300, UniformCohort(3), eval_every=1)
    assert dist(quad, res) < 1e-8
    sizes = np.array(res.history.column("clients")[1:])
    full = sizes == quad.num_clients
    assert full[0] and set(sizes[~full]) == {3}  # large-batch rounds, else the cohort
    p, n = Page().probability(10), len(sizes) - 1
    assert p == pytest.approx(1 / (1 + math.sqrt(10)))
    assert abs(full[1:].sum() - p * n) < 4 * math.sqrt(n * p * (1 - p))
    # downlink: x on a large-batch round, x^{k+1} and x^k on a difference round
    down = np.array(res.history.column("down_bits")[1:])
    assert np.array_equal(down, np.where(full, 32 * 20 * 10, 2 * 32 * 20 * 3))


def test_page_refuses_a_compressor_and_theory_step_is_the_papers(quad: QuadraticProblem) -> None:
    with pytest.raises(ConfigError, match="marina") as e:
        Page(compressor=RandK(4))
    assert e.value.field == "compressor.name"
    s = quad.smoothness()
    p = 0.2
    step = Page(p=p).theory_step(s, 20)
    assert step == pytest.approx(1 / (s.L + s.L_tilde * math.sqrt((1 - p) / p)))
    assert (
        dist(quad, run(quad, Page(p=p, server_opt=ServerSGD(step)), 600, UniformCohort(2))) < 1e-6
    )


# --------------------------------------------------------------------------- COFIG


def cofig_reference(
    q: QuadraticProblem, algo: Cofig, schedule: np.ndarray, seed: int, lr: float
) -> torch.Tensor:
    """COFIG written out: two cohorts, compressed shifted gradients, shifts of the second."""
    streams, n, w = SeedStreams(seed), q.num_clients, q.weights
    x = torch.zeros(q.dim, dtype=torch.float64)
    h = [torch.zeros_like(x) for _ in range(n)]
    alpha = 1.0 / (1.0 + algo.compressor.omega(q.dim))  # type: ignore[union-attr]
    for r, S in enumerate(schedule, start=1):
        gen = streams.numpy(Stage.SAMPLING, r, 1)
        S2 = set(gen.choice(n, size=len(S), replace=False).tolist())
        gf = grads(q, x)
        c = {}
        for i in sorted(set(S.tolist()) | S2):
            c[i] = algo.compressor.compress(  # type: ignore[union-attr]
                gf[i] - h[i], streams.torch(Stage.COMPRESSION, r, i)
            ).value
        h_mean = sum(w[i] * h[i] for i in range(n))
        g = h_mean + sum(w[i] * c[i] for i in S) / sum(w[i] for i in S)
        x = x - lr * g
        for i in S2:
            h[i] = h[i] + alpha * c[i]
    return x


def test_cofig_matches_its_reference_with_two_independent_cohorts(quad: QuadraticProblem) -> None:
    rng = np.random.default_rng(0)
    schedule = np.array([np.sort(rng.choice(10, 4, replace=False)) for _ in range(25)])
    algo = Cofig(compressor=RandK(5), server_opt=ServerSGD(0.2))
    res = run(quad, algo, 25, FixedSchedule(schedule), seed=7, eval_every=1)
    ref = cofig_reference(quad, algo, schedule, 7, 0.2)
    torch.testing.assert_close(res.x, ref, rtol=0, atol=1e-12)
    sizes = np.array(res.history.column("clients")[1:])
    assert sizes.min() >= 4 and sizes.max() > 4  # S | S~: the second cohort is not S
    # each member gets the model and its two role flags; one compressed vector goes up
    assert res.history.column("down_bits")[1:] == [float(k * (32 * 20 + 2)) for k in sizes]
    assert res.history.column("up_bits")[1:] == [float(k * 5 * (32 + 5)) for k in sizes]
    same_cohort = Cofig(compressor=RandK(5), shift_cohort="same", server_opt=ServerSGD(0.2))
    same = run(quad, same_cohort, 25, FixedSchedule(schedule))
    assert set(same.history.column("clients")[1:]) == {4}


def test_cofig_converges_exactly_where_compressed_pp_sgd_stalls(quad: QuadraticProblem) -> None:
    """The paper's prediction: no client-variance floor under compression and partial
    participation (shifts learn grad f_i(x*)); DCGD with the same cohorts and step stalls."""
    step, pp = ServerSGD(0.3), UniformCohort(5)
    dcgd = run(quad, DCGD(compressor=RandK(5), server_opt=step), 300, pp, eval_every=1)
    assert float(np.mean(dcgd.history.column("dist_to_opt")[-75:])) > 0.3
    assert dist(quad, run(quad, Cofig(compressor=RandK(5), server_opt=step), 450, pp)) < 1e-8


# --------------------------------------------------------------------------- FRECON


def frecon_reference(
    q: QuadraticProblem, algo: Frecon, schedule: np.ndarray, seed: int, lr: float
) -> torch.Tensor:
    """FRECON written out: COFIG's shifts plus the compressed recursive estimator."""
    streams, n, w = SeedStreams(seed), q.num_clients, q.weights
    comp = algo.compressor
    assert comp is not None
    omega = comp.omega(q.dim)
    x = x_prev = torch.zeros(q.dim, dtype=torch.float64)
    g_prev = torch.zeros_like(x)
    h = [torch.zeros_like(x) for _ in range(n)]
    for r, S in enumerate(schedule, start=1):
        S2 = set(streams.numpy(Stage.SAMPLING, r, 1).choice(n, len(S), replace=False).tolist())
        gf, gf_prev = grads(q, x), grads(q, x_prev)
        u, qq = {}, {}
        for i in sorted(set(S.tolist()) | S2):
            gen = streams.torch(Stage.COMPRESSION, r, i)
            u[i] = comp.compress(gf[i] - h[i], gen).value
            if i in S:
                qq[i] = comp.compress(gf[i] - gf_prev[i], gen).value
        share = sum(w[i] for i in S)
        lam = share / (2 * (1 + omega))
        h_mean = sum(w[i] * h[i] for i in range(n))
        mean_q = sum(w[i] * qq[i] for i in S) / share
        mean_u = sum(w[i] * u[i] for i in S) / share
        g = mean_q + (1 - lam) * g_prev + lam * (h_mean + mean_u)
        x_prev, x, g_prev = x, x - lr * g, g
        for i in S2:
            h[i] = h[i] + u[i] / (1 + omega)
    return x


def test_frecon_matches_its_reference(quad: QuadraticProblem) -> None:
    rng = np.random.default_rng(1)
    schedule = np.array([np.sort(rng.choice(10, 3, replace=False)) for _ in range(25)])
    algo = Frecon(compressor=RandK(6), server_opt=ServerSGD(0.2))
    res = run(quad, algo, 25, FixedSchedule(schedule), seed=3)
    torch.testing.assert_close(
        res.x, frecon_reference(quad, algo, schedule, 3, 0.2), rtol=0, atol=1e-12
    )


def test_frecon_reaches_the_exact_optimum_under_pp_and_compression(quad: QuadraticProblem) -> None:
    algo = Frecon(compressor=RandK(5), server_opt=ServerSGD(0.3))
    res = run(quad, algo, 600, UniformCohort(5), eval_every=150)
    d = res.history.column("dist_to_opt")
    assert d[-1] < 1e-8 and all(b < a for a, b in itertools.pairwise(d))  # linear


# --------------------------------------------------------------------------- PP-MARINA


def pp_marina_reference(
    q: QuadraticProblem, algo: PPMarina, rounds: int, seed: int, lr: float
) -> tuple[torch.Tensor, list[int]]:
    """PP-MARINA written out (Algorithm 4): r i.i.d. draws, one compression per draw."""
    streams, n, w = SeedStreams(seed), q.num_clients, q.weights
    comp, r = algo.compressor, algo.draws(n)
    assert comp is not None
    x = x_prev = torch.zeros(q.dim, dtype=torch.float64)
    g = torch.zeros_like(x)
    sync, draws, sizes = True, np.array([], dtype=np.int64), []
    for k in range(1, rounds + 1):
        if sync:
            g = sum(w[i] * gi for i, gi in enumerate(grads(q, x)))
            sizes.append(n)
        else:
            new, old = grads(q, x), grads(q, x_prev)
            gens = {i: streams.torch(Stage.COMPRESSION, k, i) for i in set(draws.tolist())}
            total = torch.zeros_like(x)
            for i in sorted(set(draws.tolist())):
                for _ in range(int((draws == i).sum())):
                    total += n * w[i] * comp.compress(new[i] - old[i], gens[i]).value / r
            g = g + total
            sizes.append(len(set(draws.tolist())))
        x_prev, x = x, x - lr * g
        gen = streams.numpy(Stage.SERVER, k)
        sync = bool(gen.random() < algo.sync_probability(q.dim, n))
        draws = gen.integers(0, n, size=r) if not sync else np.array([], dtype=np.int64)
    return x, sizes


def test_pp_marina_matches_algorithm_4_and_converges(quad: QuadraticProblem) -> None:
    algo = PPMarina(compressor=RandK(4), clients=4, server_opt=ServerSGD(0.3))
    res = run(quad, algo, 40, seed=5, eval_every=1)
    ref, sizes = pp_marina_reference(quad, algo, 40, 5, 0.3)
    torch.testing.assert_close(res.x, ref, rtol=0, atol=1e-12)
    assert res.history.column("clients")[1:] == sizes
    assert min(sizes) < 4 or len(set(sizes)) > 2  # with replacement: repeats shrink the cohort
    # the paper's p = zeta r / (d n) (RandK: zeta = bits / 32 d)
    assert algo.sync_probability(20, 10) == pytest.approx(4 * (32 + 5) / (32 * 20) * 4 / 10)
    long = run(quad, PPMarina(compressor=RandK(4), clients=5, server_opt=ServerSGD(0.3)), 400)
    assert dist(quad, long) < 1e-8


def test_pp_marina_theory_step_is_theorem_4_1(quad: QuadraticProblem) -> None:
    s = quad.smoothness()
    algo = PPMarina(compressor=RandK(4), clients=5, p=0.3)
    omega = RandK(4).omega(20)
    want = 1 / (s.L + s.L_tilde * math.sqrt(0.7 * (1 + omega) / (0.3 * 5)))
    assert algo.theory_step(s, 20) == pytest.approx(want)
    assert (
        dist(quad, run(quad, PPMarina(**{**algo.__dict__, "server_opt": ServerSGD(want)}), 800))
        < 1e-6
    )


# --------------------------------------------------------------------------- EF21-PP


def test_ef21_pp_is_ef21_under_partial_participation_and_keeps_absent_shifts(
    quad: QuadraticProblem,
) -> None:
    schedule = np.array([[0, 1, 2, 3, 4]] * 30 + [[0, 2, 4, 6, 8]] * 30)  # 5, 7, 9 join late
    a = run(quad, EF21PP(compressor=TopK(5)), 40, FixedSchedule(schedule[:40]), eval_every=1)
    b = run(quad, EF21(compressor=TopK(5)), 40, FixedSchedule(schedule[:40]), eval_every=1)
    assert torch.equal(a.x, b.x)
    init = EF21PP(compressor=TopK(5))
    for i in (5, 7, 9):  # never sampled: g_i is still C(grad f_i(x^0))
        g0 = init.init_client(
            torch.zeros(20, dtype=torch.float64), quad.client(i), torch.Generator()
        )
        assert torch.equal(a.client_states[i], g0)
    pp = EF21PP(compressor=TopK(5), server_opt=ServerSGD(0.2))
    assert dist(quad, run(quad, pp, 700, UniformCohort(5))) < 1e-8


def test_ef21_pp_theory_step(quad: QuadraticProblem) -> None:
    s = quad.smoothness()
    full = EF21PP(compressor=TopK(5), participation=1.0).theory_step(s, 20)
    assert full == EF21(compressor=TopK(5)).theory_step(s, 20)
    step = EF21PP(compressor=TopK(5), participation=0.5).theory_step(s, 20)
    alpha = 5 / 20
    theta, beta = 1 - math.sqrt(1 - alpha), (1 - alpha) / (1 - math.sqrt(1 - alpha))
    rho = 0.5 * theta / (2 * 0.5)
    bq = 0.5 * beta + 0.5 * (1 + 1 / rho)
    assert step == pytest.approx(1 / (s.L + s.L_tilde * math.sqrt(bq / (0.5 * theta / 2))))
    assert step < full
    algo = EF21PP(compressor=TopK(5), server_opt=ServerSGD(step))
    d = run(quad, algo, 400, UniformCohort(5), eval_every=100).history.column("dist_to_opt")
    assert all(b < 0.7 * a for a, b in itertools.pairwise(d))  # a steady linear decrease
    with pytest.raises(ConfigError) as e:
        EF21PP(compressor=TopK(5)).theory_step(s, 20)
    assert e.value.field == "algorithm.participation"


# --------------------------------------------------------------------------- EF21-BC


def ef21_bc_reference(
    q: QuadraticProblem, up: TopK, down: TopK, rounds: int, lr: float
) -> torch.Tensor:
    """EF21-BC written out: EF21 up, error feedback on the broadcast estimate down."""
    n, w = q.num_clients, q.weights
    x = torch.zeros(q.dim, dtype=torch.float64)
    gi = [up.compress(gr, torch.Generator()).value for gr in grads(q, x)]
    tracked = sum(w[i] * gi[i] for i in range(n))
    g = tracked.clone()
    x = x - lr * g
    for _ in range(rounds):
        for i, gr in enumerate(grads(q, x)):
            c = up.compress(gr - gi[i], torch.Generator()).value
            gi[i] = gi[i] + c
            tracked = tracked + w[i] * c
        g = g + down.compress(tracked - g, torch.Generator()).value
        x = x - lr * g
    return x


def test_ef21_bc_converges_with_top_k_both_ways_and_counts_the_broadcast(
    quad: QuadraticProblem,
) -> None:
    up, down = TopK(4), TopK(3)
    algo = EF21BC(compressor=up, downlink=down, server_opt=ServerSGD(0.2))
    res = run(quad, algo, 30, eval_every=1)
    torch.testing.assert_close(
        res.x, ef21_bc_reference(quad, up, down, 30, 0.2), rtol=0, atol=1e-12
    )
    rows = res.history.rows[1:]
    n, d = 10, 20
    assert rows[0]["down_bits"] == n * 32 * d  # g^0 in full
    for row in rows[1:]:
        assert row["down_bits"] == n * 3 * (32 + 5)  # 3 values + 3 indices of 5 bits, each client
        assert row["up_bits"] == n * 4 * (32 + 5)
    assert res.history.last()["cum_down_bits"] == n * 32 * d + 29 * n * 3 * 37
    fast = EF21BC(compressor=up, downlink=down, server_opt=ServerSGD(0.3))
    assert dist(quad, run(quad, fast, 400)) < 1e-8
    # uncompressed broadcast: the same method sends 32 d a client every round
    plain = run(quad, EF21BC(compressor=up, server_opt=ServerSGD(0.2)), 5)
    assert all(r["down_bits"] == n * 32 * d for r in plain.history.rows[1:])


def test_ef21_bc_always_runs_every_client(quad: QuadraticProblem) -> None:
    res = run(quad, EF21BC(compressor=TopK(4), downlink=TopK(4)), 3, UniformCohort(3))
    assert res.history.column("clients")[1:] == [10, 10, 10]


# --------------------------------------------------------------------------- configs

QUAD = {
    "data": {"dataset": "quadratic", "num_clients": 6, "dim": 5},
    "local": {"solver": "full"},
    "sampling": {"scheme": "full"},
    "run": {"rounds": 3},
}


@pytest.mark.parametrize(
    ("algorithm", "field"),
    [
        ({"name": "page", "p": float("nan")}, "algorithm.p"),
        ({"name": "page", "p": 1.5}, "algorithm.p"),
        ({"name": "pp_marina", "clients": 0}, "algorithm.clients"),
        ({"name": "pp_marina", "p": 0.0}, "algorithm.p"),
        ({"name": "cofig", "alpha": float("nan")}, "algorithm.alpha"),
        ({"name": "cofig", "shift_cohort": "both"}, "algorithm.shift_cohort"),
        ({"name": "frecon", "lam": 2.0}, "algorithm.lam"),
        ({"name": "frecon", "alpha": -1.0}, "algorithm.alpha"),
        ({"name": "ef21_pp", "participation": float("nan")}, "algorithm.participation"),
    ],
)
def test_bad_parameters_name_their_field(algorithm: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(None, [], {**QUAD, "algorithm": algorithm})
    assert field in str(e.value)


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        (
            {"algorithm": {"name": "page"}, "compressor": {"name": "randk", "k": 2}},
            "compressor.name",
        ),
        (
            {"algorithm": {"name": "ef21_bc"}, "sampling": {"scheme": "uniform", "cohort_size": 2}},
            "sampling.scheme",
        ),
        (
            {"algorithm": {"name": "pp_marina"}, "sampling": {"scheme": "poisson"}},
            "sampling.scheme",
        ),
        ({"algorithm": {"name": "dcgd"}, "downlink": {"name": "topk", "k": 2}}, "downlink.name"),
        ({"algorithm": {"name": "ef21_bc"}, "downlink": {"name": "topk"}}, "downlink.k"),
        ({"algorithm": {"name": "ef21_bc"}, "downlink": {"name": "topk", "k": -1}}, "downlink"),
        (
            {
                "algorithm": {"name": "ef21_bc"},
                "downlink": {"name": "topk", "k": 2, "scaled": True},
            },
            "downlink.scaled",
        ),
    ],
)
def test_wrong_combinations_name_the_field(extra: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as e:
        build_experiment(load_config(None, [], {**QUAD, **extra}))
    assert e.value.field == field


def test_a_downlink_error_speaks_of_the_downlink_keys() -> None:
    with pytest.raises(ConfigError) as e:
        build_experiment(load_config(None, [], {**QUAD, "algorithm": {"name": "ef21_bc"},
                                                "downlink": {"name": "topk"}}))  # fmt: skip
    assert e.value.field == "downlink.k"
    assert "downlink.k or downlink.ratio" in str(e.value) and "compressor." not in str(e.value)


def test_every_new_method_is_listed_under_its_own_name() -> None:
    res = runner.invoke(app, ["fl", "list"])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    for name in ("page", "cofig", "frecon", "pp_marina", "ef21_pp", "ef21_bc"):
        assert name in ALGORITHMS.names() and name in text
    assert ALGORITHMS.get("pp_marina").description != ALGORITHMS.get("marina").description


def test_theory_report_and_theory_rule_for_the_new_methods() -> None:
    cfg = load_config(None, [], {**QUAD, "compressor": {"name": "topk", "k": 2}})
    steps = {name: (step, why) for name, step, why in theory_report(cfg).steps}
    assert steps["page"][0] is None and "uncompressed" in steps["page"][1]
    assert steps["ef21_pp"][0] is None and "taking part" in steps["ef21_pp"][1]
    assert steps["ef21_bc"][0] == steps["ef21"][0]  # uncompressed broadcast: EF21's step
    cfg = load_config(
        None, [], {**QUAD, "algorithm": {"name": "ef21_pp", "participation": 0.5},
                   "compressor": {"name": "topk", "k": 2}, "server": {"lr_rule": "theory"}},
    )  # fmt: skip
    exp = build_experiment(cfg)
    assert exp.algorithm.server_opt.lr == pytest.approx(theory_step(exp.algorithm, exp.problem))


CONFIG = """
[data]
dataset = "quadratic"
num_clients = 5
dim = 6

[algorithm]
name = "ef21_bc"

[compressor]
name = "topk"
k = 2

[downlink]
name = "topk"
k = 3

[local]
solver = "full"

[server]
lr = 0.2

[sampling]
scheme = "full"

[run]
name = "bc"
rounds = 4
"""


def test_phloem_fl_run_ef21_bc_with_a_downlink_section(tmp_path: Path) -> None:
    path = tmp_path / "bc.toml"
    path.write_text(CONFIG)
    res = runner.invoke(
        app, ["fl", "run", str(path), "--no-progress", "--set", f"run.out_dir={tmp_path}"]
    )
    assert res.exit_code == 0, res.output
    (folder,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    rows = RunDir.open(folder).history().rows
    assert [r["down_bits"] for r in rows[1:]] == [5 * 32 * 6] + [5 * 3 * (32 + 3)] * 3
    assert "[downlink]" in (folder / RunDir.CONFIG).read_text()
    bad = runner.invoke(
        app,
        ["fl", "run", str(path), "--set", "downlink.k=0", "--set", f"run.out_dir={tmp_path}"],
    )
    assert bad.exit_code == 2 and "config field 'downlink" in " ".join(bad.output.split())
    assert "Traceback" not in bad.output


# --------------------------------------------------------------- secure aggregation, resume


@pytest.mark.parametrize("name", ["cofig", "frecon", "pp_marina", "ef21_bc"])
def test_under_secure_aggregation_the_server_computes_the_same(name: str) -> None:
    """The server reads only weighted means and totals, so a securely aggregated run follows
    the plain one up to the protocol's quantisation."""
    q = make_quadratic(8, 6, 1.0, 0.2, np.random.default_rng(0), 1.0)
    problem = QuadraticProblem(q.A, q.b, q.weights)
    algos: dict[str, Algorithm] = {  # type: ignore[type-arg]
        "cofig": Cofig(compressor=RandK(3), server_opt=ServerSGD(0.2)),
        "frecon": Frecon(compressor=RandK(3), server_opt=ServerSGD(0.2)),
        "pp_marina": PPMarina(compressor=RandK(3), clients=4, p=0.3, server_opt=ServerSGD(0.2)),
        "ef21_bc": EF21BC(compressor=TopK(2), downlink=TopK(2), server_opt=ServerSGD(0.2)),
    }
    sampler = FullParticipation() if name == "ef21_bc" else UniformCohort(4)
    kw = {"rounds": 4, "seed": 2}
    plain = simulate(problem, algos[name], sampler, aggregator=PlainAggregation(), **kw)  # type: ignore[arg-type]
    sec = simulate(
        problem, algos[name], sampler, aggregator=SecAgg(SecAggSettings(clip=64.0)), **kw
    )  # type: ignore[arg-type]
    assert [r["clients"] for r in plain.history.rows] == [r["clients"] for r in sec.history.rows]
    assert all(r.get("secagg_ok") == 1 for r in sec.history.rows[1:])
    assert float((sec.x - plain.x).abs().max()) < 1e-4


@pytest.mark.parametrize("name", ["cofig", "pp_marina", "ef21_bc"])
def test_a_resumed_run_continues_exactly(name: str, tmp_path: Path, quad: QuadraticProblem) -> None:
    algos: dict[str, Algorithm] = {  # type: ignore[type-arg]
        "cofig": Cofig(compressor=RandK(4), server_opt=ServerSGD(0.2)),
        "pp_marina": PPMarina(compressor=RandK(4), clients=3, p=0.2, server_opt=ServerSGD(0.2)),
        "ef21_bc": EF21BC(compressor=TopK(3), downlink=TopK(3), server_opt=ServerSGD(0.2)),
    }
    algo, sampler = algos[name], UniformCohort(4)
    full = simulate(quad, algo, sampler, rounds=12, seed=4)
    rd = RunDir.create(tmp_path, "r")
    simulate(quad, algo, sampler, rounds=7, seed=4, run_dir=rd, checkpoint_every=7)
    resumed = simulate(quad, algo, sampler, rounds=12, seed=4, run_dir=rd, resume=True)
    assert torch.equal(resumed.x, full.x)
    keys = ("clients", "up_bits", "down_bits", "dist_to_opt")
    assert [[r[k] for k in keys] for r in resumed.history.rows] == [
        [r[k] for k in keys] for r in full.history.rows
    ]


def test_worker_processes_give_the_serial_history(quad: QuadraticProblem) -> None:
    """Roles (COFIG's two cohorts) and multiplicities (PP-MARINA) reach clients in worker
    processes through the broadcast state and the client's id, as in the serial backend."""
    for algo, sampler in [
        (Cofig(compressor=RandK(4), server_opt=ServerSGD(0.2)), UniformCohort(4)),
        (PPMarina(compressor=RandK(4), clients=6, p=0.2, server_opt=ServerSGD(0.2)), None),
    ]:
        serial = run(quad, algo, 6, sampler, eval_every=1)
        workers = simulate(
            quad,
            algo,
            sampler or FullParticipation(),
            rounds=6,
            seed=1,
            backend=ProcessBackend(workers=2),
        )
        assert torch.equal(serial.x, workers.x)
