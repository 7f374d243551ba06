"""Every algorithm against the closed-form optimum of a strongly convex federated quadratic.

The reference is exact: x* = (sum_i w_i A_i)^{-1} sum_i w_i b_i. Methods that provably converge
linearly must reach it to 1e-8; methods with a known bias (FedAvg/FedProx with many local steps,
DCGD under unbiased compression) must be seen to stall, and their corrected counterparts
(SCAFFOLD, DIANA, EF21, MARINA) to converge from the same start with the same step.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from phloem.fl.algorithms.base import Algorithm
from phloem.fl.algorithms.dcgd import DCGD
from phloem.fl.algorithms.diana import Diana
from phloem.fl.algorithms.ef21 import EF21
from phloem.fl.algorithms.fedavg import FedAvg
from phloem.fl.algorithms.fedprox import FedProx
from phloem.fl.algorithms.marina import Marina
from phloem.fl.algorithms.scaffold import Scaffold
from phloem.fl.compressors import Natural, RandK, TopK
from phloem.fl.local import FullGradient
from phloem.fl.problem import QuadraticProblem
from phloem.fl.sampling import ClientSampler, FullParticipation, UniformCohort
from phloem.fl.server_opt import ServerAdam, ServerSGD
from phloem.fl.simulate import simulate

TOL = 1e-8


def final_dist(
    problem: QuadraticProblem,
    algo: Algorithm,  # type: ignore[type-arg]
    rounds: int,
    sampler: ClientSampler | None = None,
    seed: int = 1,
) -> float:
    res = simulate(
        problem, algo, sampler or FullParticipation(), rounds=rounds, seed=seed, eval_every=rounds
    )
    return float(torch.linalg.vector_norm(res.x - problem.x_star))


def tail_dist(problem: QuadraticProblem, algo: Algorithm, rounds: int) -> float:  # type: ignore[type-arg]
    """Mean distance to x* over the last quarter of the run (a noise floor, not one draw)."""
    res = simulate(problem, algo, FullParticipation(), rounds=rounds, seed=3, eval_every=1)
    d = res.history.column("dist_to_opt")
    return float(np.mean(d[-rounds // 4 :]))


def test_quadratic_reference_is_the_minimiser(quad: QuadraticProblem) -> None:
    A = sum(w * quad.A[i] for i, w in enumerate(quad.weights))
    b = sum(w * quad.b[i] for i, w in enumerate(quad.weights))
    assert torch.allclose(A @ quad.x_star, b, atol=1e-10)
    assert quad.evaluate(quad.x_star, full=True)["grad_norm"] < 1e-10


def test_fedavg_one_local_step_is_gradient_descent(quad: QuadraticProblem) -> None:
    lr = 1.0 / quad.L_max
    assert final_dist(quad, FedAvg(local=FullGradient(lr, 1)), 400) < TOL


def test_fedavg_with_server_momentum_converges(quad: QuadraticProblem) -> None:
    algo = FedAvg(local=FullGradient(1.0 / quad.L_max, 1), server_opt=ServerSGD(1.0, momentum=0.5))
    assert final_dist(quad, algo, 300) < TOL


def test_fedprox_one_local_step_converges(quad: QuadraticProblem) -> None:
    assert final_dist(quad, FedProx(local=FullGradient(1.0 / quad.L_max, 1), mu=0.5), 400) < TOL


def test_client_drift_fedavg_stalls_fedprox_reduces_scaffold_removes(
    quad: QuadraticProblem,
) -> None:
    local = FullGradient(0.5 / quad.L_max, 10)
    fedavg = final_dist(quad, FedAvg(local=local), 300)
    fedprox = final_dist(quad, FedProx(local=local, mu=1.0), 300)
    scaffold = final_dist(quad, Scaffold(local=local), 300)
    assert fedavg > 1e-2  # heterogeneous clients + many local steps: a biased fixed point
    assert fedprox < 0.8 * fedavg  # the proximal term pulls the fixed point towards x*
    assert scaffold < TOL  # control variates remove the drift entirely


def test_scaffold_partial_participation_converges(quad: QuadraticProblem) -> None:
    algo = Scaffold(local=FullGradient(0.5 / quad.L_max, 5))
    assert final_dist(quad, algo, 1500, UniformCohort(5)) < 1e-6


def test_dcgd_stalls_where_diana_converges(quad: QuadraticProblem) -> None:
    comp = RandK(4)  # omega = 4
    step = ServerSGD(0.1)
    dcgd = tail_dist(quad, DCGD(compressor=comp, server_opt=step), 800)
    diana = final_dist(quad, Diana(compressor=comp, server_opt=step), 800)
    assert dcgd > 1e-2  # noise floor ~ omega * sum ||grad f_i(x*)||^2
    assert diana < 1e-6


def test_diana_natural_compression_and_partial_participation(quad: QuadraticProblem) -> None:
    algo = Diana(compressor=Natural(), server_opt=ServerSGD(0.3))
    assert final_dist(quad, algo, 600) < TOL
    pp = Diana(compressor=RandK(5), server_opt=ServerSGD(0.1))
    assert final_dist(quad, pp, 3000, UniformCohort(5)) < 1e-6


def test_diana_default_shift_step_is_one_over_omega_plus_one() -> None:
    assert Diana(compressor=RandK(4)).shift_step(20) == pytest.approx(1 / 5)
    assert Diana().shift_step(20) == 1.0


def test_ef21_topk_converges_where_dcgd_topk_stalls(quad: QuadraticProblem) -> None:
    step = ServerSGD(0.2)
    assert final_dist(quad, EF21(compressor=TopK(4), server_opt=step), 800) < TOL
    # Top-K without error feedback is biased: plain compressed GD stops short of x*.
    assert final_dist(quad, DCGD(compressor=TopK(4), server_opt=step), 800) > 1e-3


def test_ef21_partial_participation_converges(quad: QuadraticProblem) -> None:
    algo = EF21(compressor=TopK(5), server_opt=ServerSGD(0.1))
    assert final_dist(quad, algo, 3000, UniformCohort(5)) < 1e-6


def test_marina_converges_and_synchronises_at_rate_p(quad: QuadraticProblem) -> None:
    algo = Marina(compressor=RandK(4), server_opt=ServerSGD(0.3))
    assert algo.sync_probability(20) == pytest.approx(4 * (32 + 5) / (32 * 20))
    res = simulate(quad, algo, UniformCohort(5), rounds=1500, seed=2, eval_every=1500)
    assert float(torch.linalg.vector_norm(res.x - quad.x_star)) < 1e-6
    sizes = np.array(res.history.column("clients")[1:])
    full = sizes == quad.num_clients
    assert full[0]  # the run starts with a synchronisation round
    # Synchronisation rounds (all clients) occur with probability p, a Binomial count.
    p, n = algo.sync_probability(20), len(sizes) - 1
    assert abs(full[1:].sum() - p * n) < 4 * np.sqrt(n * p * (1 - p))


def test_fedadam_steps_follow_the_adam_recursion() -> None:
    opt = ServerAdam(lr=0.1, beta1=0.9, beta2=0.99, eps=1e-3)
    x = torch.tensor([1.0, -2.0], dtype=torch.float64)
    from phloem.fl.server_opt import OptState

    state = OptState()
    m = v = np.zeros(2)
    xr = x.numpy().copy()
    for t, g in enumerate(([0.5, -1.0], [0.1, 0.3], [-0.2, 0.0]), start=1):
        gt = np.array(g)
        x, state = opt.step(x, torch.tensor(gt), state)
        m = 0.9 * m + 0.1 * gt
        v = 0.99 * v + 0.01 * gt * gt
        xr = xr - 0.1 * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.99**t)) + 1e-3)
        np.testing.assert_allclose(x.numpy(), xr, rtol=1e-12)


def test_bits_are_accounted_per_message(quad: QuadraticProblem) -> None:
    res = simulate(
        quad, Diana(compressor=RandK(4), server_opt=ServerSGD(0.1)), UniformCohort(3), rounds=5
    )
    per_msg = 4 * (32 + 5)  # k values + k indices of ceil(log2 20) = 5 bits
    for row in res.history.rows[1:]:
        assert row["up_bits"] == 3 * per_msg
        assert row["down_bits"] == 3 * 32 * 20
    assert res.history.last()["cum_up_bits"] == 5 * 3 * per_msg
    scaffold = simulate(quad, Scaffold(local=FullGradient(0.1, 2)), UniformCohort(3), rounds=1)
    assert scaffold.history.last()["up_bits"] == 3 * 2 * 32 * 20  # model delta + control delta
