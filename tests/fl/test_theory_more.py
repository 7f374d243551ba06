"""Theory steps of GradSkip and EF21-BC, ProxSkip's theory ``p``, and the methods that have none
(COFIG, FRECON, FedDyn, FedNova): each step against its formula by hand, each method at its
theory step converging on a strongly convex quadratic, ``phloem fl theory`` listing it."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from phloem.cli.app import app
from phloem.core.errors import ConfigError
from phloem.fl import FullParticipation, TopK, simulate
from phloem.fl.algorithms.ef21_bc import EF21BC
from phloem.fl.algorithms.gradskip import GradSkip
from phloem.fl.algorithms.proxskip import FALLBACK_P, ProxSkip
from phloem.fl.config import load_config
from phloem.fl.experiment import build_experiment, theory_report
from phloem.fl.local import FullGradient
from phloem.fl.problem import QuadraticProblem
from phloem.fl.registries import ALGORITHMS
from phloem.fl.theory import Smoothness, proxskip_probability

runner = CliRunner()


def max_client_l(q: QuadraticProblem) -> float:
    """``max_i lambda_max(A_i)``: every client's own smoothness constant, by eigenvalues."""
    return max(float(np.linalg.eigvalsh(a.numpy())[-1]) for a in q.A)


def dist(q: QuadraticProblem, x: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm(x - q.x_star))


# ------------------------------------------------------------------------------ formulas


def test_gradskip_step_is_one_over_the_largest_client_constant(quad: QuadraticProblem) -> None:
    s = quad.smoothness()
    by_hand = 1.0 / max_client_l(quad)
    for q in (1.0, 0.5, 0.1):
        assert GradSkip(q=q, p=0.3).theory_step(s, quad.dim) == pytest.approx(by_hand, rel=1e-12)
    assert GradSkip().theory_step(s, quad.dim) == ProxSkip().theory_step(s, quad.dim)
    assert GradSkip.has_theory_step() and GradSkip.theory_bounds_local_step


def test_proxskip_probability_is_sqrt_mu_over_the_client_constant() -> None:
    s = Smoothness(L=2.0, L_max=4.0, L_tilde=3.0, n=8, mu=0.5, L_client=8.0)
    assert proxskip_probability(s) == pytest.approx(0.25)  # sqrt(0.5 / 8)
    no_client = Smoothness(L=2.0, L_max=4.0, L_tilde=3.0, n=8, mu=1.0)
    assert proxskip_probability(no_client) == pytest.approx(0.5)  # sqrt(1 / L_max)
    assert proxskip_probability(Smoothness(2.0, 4.0, 3.0, 8, mu=None)) is None
    assert proxskip_probability(Smoothness(2.0, 4.0, 3.0, 8, mu=0.0)) is None
    assert proxskip_probability(Smoothness(2.0, 4.0, 3.0, 8, mu=9.0, L_client=4.0)) == 1.0


def test_ef21_bc_step_is_ef21s_for_an_uncompressed_broadcast(quad: QuadraticProblem) -> None:
    s, d = quad.smoothness(), quad.dim
    alpha = 4 / d  # Top-4 of 20
    theta = 1 - math.sqrt(1 - alpha)
    beta = (1 - alpha) / theta
    by_hand = 1 / (s.L + s.L_tilde * math.sqrt(beta / theta))
    assert EF21BC(compressor=TopK(4)).theory_step(s, d) == pytest.approx(by_hand, rel=1e-12)
    assert EF21BC().theory_step(s, d) == pytest.approx(1 / s.L)  # no compression: GD
    with pytest.raises(ConfigError) as e:
        EF21BC(compressor=TopK(4), downlink=TopK(4)).theory_step(s, d)
    assert e.value.field == "downlink.name"


def test_methods_without_a_reliable_theorem_step_have_none() -> None:
    for name in ("cofig", "frecon", "feddyn", "fednova", "fedprox"):
        assert not ALGORITHMS.get(name).has_theory_step(), name


# ------------------------------------------------------------------------ ProxSkip's p


def test_an_empty_p_is_filled_from_the_problem(quad: QuadraticProblem) -> None:
    s = quad.smoothness()
    algo = ProxSkip().with_constants(quad.smoothness)
    assert algo.p == pytest.approx(math.sqrt(s.mu / max_client_l(quad)), rel=1e-12)
    assert GradSkip(q=0.5).with_constants(quad.smoothness).p == algo.p

    def never() -> Smoothness:
        raise AssertionError("a set p needs no constants")

    assert ProxSkip(p=0.4).with_constants(never).p == 0.4
    assert ProxSkip().with_constants(lambda: None).p == FALLBACK_P  # smoothness unknown
    assert ProxSkip().with_constants(lambda: Smoothness(1.0, 1.0, 1.0, 2)).p == FALLBACK_P
    with pytest.raises(ValueError, match=r"algorithm\.p is empty"):
        _ = ProxSkip().prob


def test_simulate_fills_an_empty_p_and_proxskip_reaches_the_optimum(
    quad: QuadraticProblem,
) -> None:
    s = quad.smoothness()
    gamma = ProxSkip().theory_step(s, quad.dim)
    res = simulate(
        quad, ProxSkip(local=FullGradient(gamma)), FullParticipation(), rounds=150, eval_every=150
    )
    assert dist(quad, res.x) < 1e-8
    p = ProxSkip().with_constants(quad.smoothness).p
    same = simulate(quad, ProxSkip(local=FullGradient(gamma), p=p), FullParticipation(), rounds=150)
    assert torch.equal(res.x, same.x)  # the empty p ran as the theory's p, bit for bit


# ------------------------------------------------------- lr_rule = "theory" through configs

QUAD: dict[str, Any] = {
    "data": {"dataset": "quadratic", "num_clients": 6, "dim": 5, "mu": 0.5},
    "local": {"solver": "full"},
    "sampling": {"scheme": "full"},
    "server": {"lr_rule": "theory"},
    "run": {"rounds": 200, "eval_every": 200},
}


def run_config(*overrides: str) -> tuple[Any, float, float]:
    cfg = load_config(None, list(overrides), QUAD)
    exp = build_experiment(cfg)
    res = simulate(
        exp.problem, exp.algorithm, exp.sampler, rounds=cfg.run.rounds, eval_every=cfg.run.rounds
    )
    return exp, res.history.rows[0]["dist_to_opt"], res.history.last()["dist_to_opt"]


def test_gradskip_at_its_theory_step_and_p_reaches_the_optimum() -> None:
    exp, first, last = run_config("algorithm.name=gradskip", "algorithm.q=0.5")
    s = exp.problem.smoothness()
    assert s is not None and s.mu is not None and s.L_client is not None
    assert exp.algorithm.local.lr == pytest.approx(1 / s.L_client, rel=1e-12)
    assert exp.algorithm.p == pytest.approx(math.sqrt(s.mu / s.L_client), rel=1e-12)
    assert last < 1e-9 * first  # linear convergence to x* itself


def test_proxskip_config_with_empty_p_uses_the_theory_p() -> None:
    exp, first, last = run_config("algorithm.name=proxskip")
    s = exp.problem.smoothness()
    assert s is not None and s.mu is not None and s.L_client is not None
    assert exp.algorithm.p == pytest.approx(math.sqrt(s.mu / s.L_client), rel=1e-12)
    assert last < 1e-9 * first
    exp, _, _ = run_config("algorithm.name=proxskip", "algorithm.p=0.7", "run.rounds=1")
    assert exp.algorithm.p == 0.7  # a set p is kept


def test_ef21_bc_at_its_theory_step_reaches_the_optimum() -> None:
    exp, first, last = run_config(
        "algorithm.name=ef21_bc", "compressor.name=topk", "compressor.k=2", "run.rounds=400"
    )
    s = exp.problem.smoothness()
    assert s is not None
    alpha = 2 / 5
    theta = 1 - math.sqrt(1 - alpha)
    by_hand = 1 / (s.L + s.L_tilde * math.sqrt((1 - alpha) / theta / theta))
    assert exp.algorithm.server_opt.lr == pytest.approx(by_hand, rel=1e-12)
    assert last < 1e-9 * first  # linear, to x* itself


@pytest.mark.parametrize("name", ["cofig", "frecon", "feddyn", "fednova"])
def test_lr_rule_theory_refuses_the_methods_without_one(name: str) -> None:
    cfg = load_config(None, [f"algorithm.name={name}"], QUAD)
    with pytest.raises(ConfigError, match=f"no theory step size for {name}") as e:
        build_experiment(cfg)
    assert e.value.field == "server.lr_rule"
    assert "gradskip" in (e.value.allowed or []) and "ef21_bc" in (e.value.allowed or [])


def test_a_compressed_broadcast_is_refused_naming_the_downlink() -> None:
    sets = ["algorithm.name=ef21_bc", "compressor.name=topk", "compressor.k=2"]
    cfg = load_config(None, [*sets, "downlink.name=topk", "downlink.k=2"], QUAD)
    with pytest.raises(ConfigError) as e:
        build_experiment(cfg)
    assert e.value.field == "downlink.name"


# ------------------------------------------------------------------------ phloem fl theory

TOML = """
[data]
dataset = "quadratic"
num_clients = 5
dim = 4

[local]
solver = "full"

[compressor]
name = "topk"
k = 2

[sampling]
scheme = "full"
"""


def test_fl_theory_lists_the_new_steps(tmp_path: Path) -> None:
    path = tmp_path / "q.toml"
    path.write_text(TOML)
    cfg = load_config(path, [])
    s = build_experiment(cfg).problem.smoothness()
    assert s is not None and s.L_client is not None
    res = runner.invoke(app, ["fl", "theory", str(path)])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    grad = next(ln for ln in lines if "step size, gradskip" in ln)
    assert f"{1 / s.L_client:.6g}" in grad
    bc = next(ln for ln in lines if "step size, ef21_bc" in ln)
    ef21 = next(ln for ln in lines if "step size, ef21 " in ln)
    assert bc.split()[-2] == ef21.split()[-2]  # the same number in the value column
    for name in ("cofig", "frecon", "feddyn", "fednova"):
        assert f"step size, {name}" not in res.output
    # with a compressed broadcast the row says why there is no step
    down = load_config(path, ["downlink.name=topk", "downlink.k=2"])
    steps = {n: (v, why) for n, v, why in theory_report(down).steps}
    assert steps["ef21_bc"][0] is None and "downlink.name" in steps["ef21_bc"][1]
