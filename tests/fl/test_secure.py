"""Plain vs secure aggregation inside the simulator: same trajectory up to quantisation."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from phloem.core.config import from_dict, to_dict
from phloem.core.errors import ConfigError
from phloem.data.synthetic import make_quadratic
from phloem.fl.aggregation import Aggregation, DropoutModel, PlainAggregation
from phloem.fl.algorithms.base import Cohort, Message, Uplink, weighted_sum
from phloem.fl.algorithms.dcgd import DCGD
from phloem.fl.algorithms.diana import Diana
from phloem.fl.algorithms.ef21 import EF21
from phloem.fl.algorithms.fedavg import FedAvg
from phloem.fl.algorithms.marina import Marina
from phloem.fl.algorithms.scaffold import Scaffold
from phloem.fl.compressors import RandK
from phloem.fl.config import ExperimentConfig
from phloem.fl.local import FullGradient
from phloem.fl.problem import QuadraticProblem
from phloem.fl.registries import AGGREGATIONS
from phloem.fl.sampling import UniformCohort
from phloem.fl.secure import SecAgg, SecAggPlus, SecureAggregation
from phloem.fl.server_opt import ServerSGD
from phloem.fl.simulate import TIMING_KEYS, simulate
from phloem.secagg.aggregate import Protocol, SecAggSettings

SECURE: list[type[SecureAggregation]] = [SecAgg, SecAggPlus]


@dataclasses.dataclass(frozen=True)
class TwoFields(Uplink):
    a: torch.Tensor
    b: torch.Tensor


def quadratic(num_clients: int, dim: int, seed: int = 0) -> QuadraticProblem:
    q = make_quadratic(num_clients, dim, 1.0, 0.2, np.random.default_rng(seed), 1.0)
    return QuadraticProblem(q.A, q.b, q.weights)


def messages_and_cohort(n: int, d: int, seed: int) -> tuple[list[Message[TwoFields]], Cohort]:
    rng = np.random.default_rng(seed)
    msgs = [
        Message(
            TwoFields(
                torch.from_numpy(rng.normal(size=d).astype(np.float32)),
                torch.from_numpy(rng.normal(size=(2, 3)).astype(np.float32)),
            ),
            32 * (d + 6),
            0.0,
            1,
        )
        for _ in range(n)
    ]
    w = rng.uniform(0.1, 1.0, n)
    return msgs, Cohort(np.arange(n), w, 3 * n)


def field(key: str):  # type: ignore[no-untyped-def]
    return lambda u: getattr(u, key)


@pytest.mark.parametrize("kind", SECURE)
def test_secure_aggregate_reproduces_both_weightings(kind: type[SecureAggregation]) -> None:
    msgs, cohort = messages_and_cohort(12, 40, 0)
    agg = kind(SecAggSettings(clip=4.0))
    plan = agg.plan(cohort, np.random.default_rng(1))
    outcome = agg.aggregate(plan, msgs, 1, np.random.default_rng(2))
    row = outcome.stats.row() if outcome.stats else {}
    out = outcome.aggregate
    assert out is not None and row["secagg_ok"] == 1
    bound = float(row["secagg_max_error"])  # type: ignore[arg-type]
    assert 0 < bound < 1e-5
    for key in ("a", "b"):
        tensors = [getattr(m.uplink, key) for m in msgs]
        exact_mean = weighted_sum(tensors, cohort.normalised)
        got_mean = out.mean(field(key))
        assert got_mean.shape == exact_mean.shape
        float32 = 1e-6  # both sides are float32 tensors accumulated in float32
        assert float((got_mean - exact_mean).abs().max()) <= bound + float32
        exact_sum = weighted_sum(tensors, cohort.weights)
        got_sum = out.total(field(key))
        # sum = W_hat * mean_hat: relative error of W_hat plus the mean's error, scaled
        tol = (bound + float32) * float(cohort.weights.sum()) * 3
        assert float((got_sum - exact_sum).abs().max()) <= tol


def test_float32_messages_aggregate_like_their_float64_copies() -> None:
    """No float64 copy of the clients' vectors is made, and none is needed: same bits."""
    msgs, cohort = messages_and_cohort(8, 30, 4)
    wide = [
        dataclasses.replace(m, uplink=TwoFields(m.uplink.a.double(), m.uplink.b.double()))
        for m in msgs
    ]
    # clip = 0.3 is not a float32 and clips many entries
    agg = SecAggPlus(SecAggSettings(clip=0.3))
    plan = agg.plan(cohort, np.random.default_rng(1))
    o32 = agg.aggregate(plan, msgs, 1, np.random.default_rng(2))
    o64 = agg.aggregate(plan, wide, 1, np.random.default_rng(2))
    out32, out64 = o32.aggregate, o64.aggregate
    assert out32 is not None and out64 is not None
    assert out32.weight == out64.weight  # type: ignore[attr-defined]
    assert o32.stats and o64.stats and o32.stats.secure and o64.stats.secure
    assert o32.stats.secure.max_error == o64.stats.secure.max_error
    for key in ("a", "b"):
        assert out32.mean(field(key)).dtype == torch.float32
        assert torch.equal(out32.mean(field(key)), out64.mean(field(key)).float())


def test_aggregator_takes_its_protocol_from_its_name() -> None:
    default = SecAggSettings(clip=2.0)  # secagg+
    assert SecAgg(default).settings == dataclasses.replace(default, protocol=Protocol.SECAGG)
    assert SecAggPlus(default).settings == default
    as_given = SecAggSettings(protocol=Protocol.SECAGG)
    assert SecureAggregation(as_given).settings is as_given
    from_config = from_dict(ExperimentConfig, {"aggregation": {"name": "secagg"}})
    assert from_config.aggregation.params.protocol is Protocol.SECAGG
    with pytest.raises(ConfigError, match="is set by name = 'secagg'"):
        from_dict(ExperimentConfig, {"aggregation": {"name": "secagg", "protocol": "secagg+"}})
    assert AGGREGATIONS.get("secagg") is SecAgg
    assert AGGREGATIONS.get("secagg+") is SecAggPlus


def test_dropout_model_draws_per_stage_and_validates() -> None:
    ids = np.arange(1000)
    plan = DropoutModel(0.2).draw(ids, np.random.default_rng(0))
    total = sum(len(v) for v in plan.values())
    assert 150 < total < 250
    assert set(plan) == {"setup", "share_keys", "masked_input", "consistency", "unmask"}
    only = DropoutModel(0.5, "unmask").draw(ids, np.random.default_rng(0))
    assert set(only) == {"unmask"}
    assert DropoutModel(0.0).draw(ids, np.random.default_rng(0)) == {}
    with pytest.raises(ConfigError, match=r"aggregation\.dropout_stage"):
        DropoutModel(0.1, "later")
    with pytest.raises(ConfigError, match=r"aggregation\.dropout"):
        DropoutModel(1.5)


def test_clients_dropping_before_upload_leave_the_cohort() -> None:
    cohort = Cohort(np.arange(6), np.ones(6), 6)
    agg = SecAgg(dropout=DropoutModel(1.0, "share_keys"))
    plan = agg.plan(cohort, np.random.default_rng(0))
    assert plan.uploading.ids.size == 0
    late = SecAgg(dropout=DropoutModel(1.0, "unmask"))
    assert late.plan(cohort, np.random.default_rng(0)).uploading.ids.size == 6


QUAD_ALGOS = {
    "fedavg": FedAvg(local=FullGradient(), server_opt=ServerSGD(0.5)),
    "dcgd": DCGD(server_opt=ServerSGD(0.5)),
    "diana": Diana(compressor=RandK(10), server_opt=ServerSGD(0.2)),
    "marina": Marina(compressor=RandK(10), server_opt=ServerSGD(0.2)),
    "ef21": EF21(server_opt=ServerSGD(0.5)),
    "scaffold": Scaffold(local=FullGradient(), server_opt=ServerSGD(0.5)),
}


@pytest.mark.parametrize("algo", sorted(QUAD_ALGOS))
@pytest.mark.parametrize("kind", SECURE)
def test_secure_run_tracks_plain_run(algo: str, kind: type[SecureAggregation]) -> None:
    problem = quadratic(num_clients=12, dim=20)
    kw = {"rounds": 8, "seed": 3}
    sampler = UniformCohort(8)
    plain = simulate(problem, QUAD_ALGOS[algo], sampler, **kw)  # type: ignore[arg-type]
    sec = simulate(
        problem,
        QUAD_ALGOS[algo],
        sampler,
        aggregator=kind(SecAggSettings(clip=16.0)),
        **kw,  # type: ignore[arg-type]
    )
    rows = sec.history.rows[1:]
    assert all(r["secagg_ok"] == 1 and r["secagg_included"] == r["clients"] for r in rows)
    # every round adds at most its quantisation error (times the step's contraction <= 1)
    budget = sum(float(r["secagg_max_error"]) for r in rows) * 4
    assert 0 < float((sec.x - plain.x).abs().max()) <= budget
    # the protocol's real upload replaces the float bits
    assert rows[0]["up_bits"] != plain.history.rows[1]["up_bits"]


def test_same_dropouts_under_plain_and_secure() -> None:
    problem = quadratic(num_clients=20, dim=10)
    algo = FedAvg(local=FullGradient(), server_opt=ServerSGD(0.5))
    drop = DropoutModel(0.15)
    kw = {"rounds": 6, "seed": 1}
    plain = simulate(
        problem,
        algo,
        UniformCohort(12),
        aggregator=PlainAggregation(dropout=drop),
        **kw,  # type: ignore[arg-type]
    )
    sec = simulate(
        problem,
        algo,
        UniformCohort(12),
        aggregator=SecAgg(SecAggSettings(clip=16.0), drop),
        **kw,  # type: ignore[arg-type]
    )
    p_rows, s_rows = plain.history.rows[1:], sec.history.rows[1:]
    assert [r["dropped"] for r in p_rows] == [r["dropped"] for r in s_rows]
    assert any(r["dropped"] for r in p_rows)
    assert [r["clients"] for r in p_rows] == [r["clients"] for r in s_rows]
    assert float((sec.x - plain.x).abs().max()) < 1e-4


def test_aborted_round_changes_nothing() -> None:
    problem = quadratic(num_clients=8, dim=10)
    algo = Scaffold(local=FullGradient(), server_opt=ServerSGD(0.5))
    # every client leaves at the unmask stage: never enough shares, every round aborts
    agg = SecAgg(SecAggSettings(clip=16.0), DropoutModel(1.0, "unmask"))
    res = simulate(problem, algo, UniformCohort(6), rounds=3, seed=0, aggregator=agg)
    start = simulate(problem, algo, UniformCohort(6), rounds=0, seed=0)
    rows = res.history.rows[1:]
    assert all(r["secagg_ok"] == 0 and "threshold" in str(r["secagg_abort"]) for r in rows)
    assert torch.equal(res.x, start.x)
    for a, b in zip(res.client_states, start.client_states, strict=True):
        assert torch.equal(a, b)


def test_secure_history_is_deterministic() -> None:
    problem = quadratic(num_clients=10, dim=10)
    algo = FedAvg(local=FullGradient(), server_opt=ServerSGD(0.5))
    agg: Aggregation = SecAggPlus(SecAggSettings(clip=16.0), DropoutModel(0.1))

    def rows() -> list[dict[str, object]]:
        res = simulate(problem, algo, UniformCohort(8), rounds=4, seed=5, aggregator=agg)
        return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in res.history.rows]

    assert rows() == rows()


def test_aggregation_config_validation() -> None:
    with pytest.raises(ConfigError, match=r"aggregation\.name.*secagg\+"):
        from_dict(ExperimentConfig, {"aggregation": {"name": "homomorphic"}})
    with pytest.raises(ConfigError, match=r"aggregation\.dropout_stage"):
        from_dict(ExperimentConfig, {"aggregation": {"dropout_stage": "later"}})
    with pytest.raises(ConfigError, match="aggregation"):
        from_dict(ExperimentConfig, {"aggregation": {"dropout": 2.0}})
    cfg = from_dict(ExperimentConfig, {"aggregation": {"name": "secagg+", "num_shares": 5}})
    assert to_dict(cfg)["aggregation"]["num_shares"] == 5


def test_given_parameters_the_clients_would_refuse_are_a_config_error_before_any_round() -> None:
    """k = 5, t = 3 over a cohort of 20 with 10% corrupt tolerated: every client's policy
    refuses every round, so the run stops at once, naming the field and what to do."""
    weak = SecAggPlus(SecAggSettings(num_shares=5, threshold=3))
    with pytest.raises(ConfigError, match="misses the security target") as err:
        weak.check_cohort(20)
    assert err.value.field == "aggregation.threshold"
    SecAggPlus(SecAggSettings(num_shares=5, threshold=3, tolerate_corrupt=0.0)).check_cohort(20)
    SecAggPlus(SecAggSettings()).check_cohort(20)  # chosen parameters always pass
    # n = 11 and k = 6: one client of the Harary graph has 7 holders; t = 4 fails there only
    assert SecAggSettings(num_shares=6, threshold=4).refusal(11) is not None
    assert SecAggSettings(num_shares=6, threshold=5).refusal(11) is None
