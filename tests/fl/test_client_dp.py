"""Client-level DP (DP-FedAvg's Gaussian mechanism, ``[privacy]``) against obviously-correct
references: the clipping formula, the noise variance by Monte Carlo, epsilon from Opacus's
accountant asked directly, secure vs plain sums, and an uninterrupted run vs a resumed one."""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch
from opacus.accountants import PRVAccountant, RDPAccountant
from typer.testing import CliRunner

from phloem.cli.app import app
from phloem.core.errors import ConfigError, PhloemError
from phloem.fl.aggregation import (
    Aggregation,
    DropoutModel,
    PlainAggregation,
    RoundOutcome,
    RoundPlan,
)
from phloem.fl.algorithms.base import Cohort, Message, U, WeightedAggregate
from phloem.fl.algorithms.fedavg import ModelDelta
from phloem.fl.config import load_config
from phloem.fl.experiment import build_experiment, resume_experiment, run_experiment
from phloem.fl.privacy import (
    NOISE_COLUMN,
    GaussianMechanism,
    NoisyMean,
    PrivateAggregation,
    clip_update,
)
from phloem.fl.secure import SecAgg
from phloem.secagg import SecAggSettings

runner = CliRunner()

QUAD = """
[data]
dataset = "quadratic"
num_clients = 40
dim = 5

[algorithm]
name = "fedavg"

[local]
solver = "full"
steps = 2
lr = 0.2

[sampling]
scheme = "poisson"
rate = 0.25

[privacy]
mechanism = "gaussian"
clip = 0.5
noise_multiplier = 1.1
delta = 1e-5

[run]
name = "dpq"
rounds = 8
checkpoint_every = 0
"""


def _cfg(tmp_path: Path, *sets: str, calibrate: bool = False) -> Any:
    """``QUAD`` with ``sets``; ``calibrate``: without its ``noise_multiplier`` line."""
    path = tmp_path / "q.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(QUAD.replace("noise_multiplier = 1.1\n", "") if calibrate else QUAD)
    return load_config(path, [f"run.out_dir={tmp_path / 'runs'}", *sets])


def _run(tmp_path: Path, *sets: str, calibrate: bool = False) -> Any:
    return run_experiment(_cfg(tmp_path, *sets, calibrate=calibrate), progress=False)


def _deltas(n: int, d: int, scale: float, seed: int) -> list[Message[ModelDelta]]:
    rng = np.random.default_rng(seed)
    return [
        Message(ModelDelta(torch.from_numpy(rng.normal(0, scale, d))), 64 * d, 0.0, 1)
        for _ in range(n)
    ]


def _plan(n: int) -> RoundPlan:
    return RoundPlan(Cohort(np.arange(n), np.ones(n), 100), {})


# --- clipping -------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_clipping_bounds_the_norm_and_leaves_small_updates_alone(dtype: torch.dtype) -> None:
    rng = np.random.default_rng(0)
    for scale in (1e-3, 0.1, 1.0, 30.0):
        v = torch.from_numpy(rng.normal(0, scale, 50)).to(dtype)
        c = 0.7
        out, cut = clip_update(v, c)
        norm = float(torch.linalg.vector_norm(v.double()))
        if norm <= c:
            assert out is v and not cut  # unchanged, bit for bit
        else:
            assert cut
            assert float(torch.linalg.vector_norm(out.double())) <= c * (1 + 1e-6)
            # the reference: v * C / ||v|| (same direction, norm C)
            ref = v.double() * (c / norm)
            torch.testing.assert_close(out.double(), ref, rtol=1e-6, atol=1e-7)
    exact = torch.tensor([3.0, 4.0], dtype=torch.float64)  # norm 5 exactly
    assert clip_update(exact, 5.0)[0] is exact
    torch.testing.assert_close(clip_update(exact, 1.0)[0], torch.tensor([0.6, 0.8]).double())


def test_updates_reach_the_sum_clipped() -> None:
    msgs = _deltas(6, 8, 3.0, 1)  # norms ~8.5 >> C
    mech = GaussianMechanism(clip=0.5, noise_multiplier=0.0, sample_rate=0.1, num_clients=60)
    out = PrivateAggregation(PlainAggregation(), mech).aggregate(
        _plan(6), msgs, 1, np.random.default_rng(0)
    )
    assert isinstance(out.aggregate, NoisyMean)
    ref = sum(clip_update(m.uplink.delta, 0.5)[0] for m in msgs)
    # the fixed denominator q N = 6, whatever the cohort's size
    torch.testing.assert_close(out.aggregate.mean(lambda u: u.delta), ref / 6.0)
    assert out.stats is not None and out.stats.row()["dp_clipped"] == 6


# --- noise ----------------------------------------------------------------------------------


class _ExactSum(Aggregation):
    """A stand-in for a secure aggregation that sums exactly (so shares are tested alone)."""

    name: ClassVar[str] = "exact"
    description: ClassVar[str] = "test"

    def __init__(self, dropout: DropoutModel | None = None) -> None:
        self.dropout = dropout

    @classmethod
    def from_params(cls, params: Any, *, dropout: DropoutModel | None) -> _ExactSum:
        return cls(dropout)

    def aggregate(
        self,
        plan: RoundPlan,
        messages: Sequence[Message[U]],
        round_: int,
        gen: np.random.Generator,
    ) -> RoundOutcome[U]:
        return RoundOutcome(WeightedAggregate([m.uplink for m in messages], plan.uploading), 0.0)


def _noise_samples(agg: Aggregation, plan: RoundPlan, msgs: Any, draws: int) -> np.ndarray:
    clipped = sum(clip_update(m.uplink.delta, 0.5)[0] for m in msgs)
    gen = np.random.default_rng(7)
    out = []
    for r in range(draws):
        res = agg.aggregate(plan, msgs, r, gen)
        assert res.aggregate is not None
        out.append((res.aggregate.total(lambda u: u.delta) * 100 - clipped).numpy())
    return np.concatenate(out)


@pytest.mark.parametrize("inner", ["central", "distributed"])
def test_noise_on_the_sum_has_variance_z_c_squared(inner: str) -> None:
    z, c, n, d, draws = 1.3, 0.5, 8, 40, 1500
    mech = GaussianMechanism(clip=c, noise_multiplier=z, sample_rate=0.1, num_clients=100)
    agg = PrivateAggregation(PlainAggregation() if inner == "central" else _ExactSum(), mech)
    noise = _noise_samples(agg, _plan(n), _deltas(n, d, 1.0, 2), draws)
    # 60k samples: the sample variance is within ~3 standard errors (sqrt(2/60k) = 0.6%)
    assert noise.size == draws * d
    assert abs(noise.var() / (z * c) ** 2 - 1) < 0.02
    assert abs(noise.mean()) < 4 * z * c / math.sqrt(noise.size)


def test_dropouts_shrink_the_distributed_noise_as_the_ledger_records() -> None:
    z, c = 1.0, 0.5
    mech = GaussianMechanism(clip=c, noise_multiplier=z, sample_rate=0.1, num_clients=100)
    agg = PrivateAggregation(_ExactSum(), mech)
    n, m = 10, 4
    cohort = Cohort(np.arange(n), np.ones(n), 100)
    plan = RoundPlan(cohort, {DropoutModel(1.0, "masked_input").stage: list(range(m, n))})  # type: ignore[dict-item]
    assert len(plan.uploading.ids) == m
    msgs = _deltas(m, 30, 1.0, 3)
    noise = _noise_samples(agg, plan, msgs, 1500)
    assert abs(noise.var() / ((m / n) * (z * c) ** 2) - 1) < 0.03
    out = agg.aggregate(plan, msgs, 1, np.random.default_rng(0))
    assert out.stats is not None
    assert out.stats.row()[NOISE_COLUMN] == pytest.approx(z * math.sqrt(m / n))


def test_secure_sum_equals_the_plain_dp_sum_within_quantisation() -> None:
    z, c, n, d = 1.0, 0.5, 6, 20
    mech = GaussianMechanism(clip=c, noise_multiplier=z, sample_rate=0.1, num_clients=60)
    msgs = _deltas(n, d, 1.0, 4)
    secure = PrivateAggregation(SecAgg(SecAggSettings(clip=c * (1 + 6 * z))), mech)
    out = secure.aggregate(_plan(n), msgs, 1, np.random.default_rng(11))
    assert out.aggregate is not None and out.stats is not None
    assert out.stats.row()["secagg_ok"] == 1
    # the reference: the same shares (the first n draws of the same stream), summed in floats
    gen = np.random.default_rng(11)
    ref = sum(
        clip_update(m.uplink.delta, c)[0] + torch.from_numpy(gen.normal(0, z * c / math.sqrt(n), d))
        for m in msgs
    )
    got = out.aggregate.total(lambda u: u.delta) * 60
    bound = float(out.stats.row()["secagg_max_error"]) * n  # type: ignore[arg-type]
    assert 0 < bound < 1e-4
    assert float((got - ref).abs().max()) <= bound


# --- epsilon --------------------------------------------------------------------------------


def _direct_epsilon(kind: str, z: float, q: float, steps: int, delta: float) -> float:
    acc = RDPAccountant() if kind == "rdp" else PRVAccountant()
    for _ in range(steps):
        acc.step(noise_multiplier=z, sample_rate=q)
    return float(acc.get_epsilon(delta))


@pytest.mark.parametrize("kind", ["rdp", "prv"])
def test_epsilon_in_the_history_is_the_accountants(tmp_path: Path, kind: str) -> None:
    rounds = 8 if kind == "rdp" else 3
    res = _run(tmp_path, f"privacy.accountant={kind}", f"run.rounds={rounds}")
    rows = res.history.rows
    assert "epsilon" not in rows[0]  # round 0: nothing released yet
    eps = [float(r["epsilon"]) for r in rows[1:]]
    assert len(eps) == rounds
    for r, e in enumerate(eps, 1):
        assert e == pytest.approx(_direct_epsilon(kind, 1.1, 0.25, r, 1e-5), rel=1e-12)
    assert all(b >= a for a, b in itertools.pairwise(eps))
    assert eps[-1] > eps[0] > 0
    assert res.privacy["noise_multiplier"] == 1.1 and res.privacy["accountant"] == kind
    summary = (res.run_dir.path / "summary.json").read_text()
    assert '"privacy"' in summary and '"denominator": 10.0' in summary


def test_no_privacy_no_columns(tmp_path: Path) -> None:
    res = _run(tmp_path, "privacy.mechanism=none", "privacy.noise_multiplier=1.0")
    assert res.privacy is None
    assert not any(k == "epsilon" or k.startswith("dp_") for r in res.history.rows for k in r)


def test_empty_rounds_still_release_noise(tmp_path: Path) -> None:
    res = _run(tmp_path, "sampling.rate=0.001", "run.rounds=4")  # 40 clients: rounds are empty
    rows = res.history.rows[1:]
    assert [r["clients"] for r in rows] == [0, 0, 0, 0]
    assert all(r[NOISE_COLUMN] == 1.1 for r in rows)
    x0 = run_experiment(_cfg(tmp_path, "run.rounds=0"), progress=False).x
    assert not torch.equal(res.x, x0)  # the noise moved the model
    assert float(rows[-1]["epsilon"]) == pytest.approx(
        _direct_epsilon("rdp", 1.1, 0.001, 4, 1e-5), rel=1e-12
    )


def test_target_epsilon_calibrates_the_noise(tmp_path: Path) -> None:
    res = _run(tmp_path, "privacy.target_epsilon=3.0", "run.rounds=8", calibrate=True)
    eps = float(res.history.last()["epsilon"])
    assert 2.9 <= eps <= 3.0  # Opacus bisects to within 0.01 below the target
    assert res.privacy["noise_calibrated_to_epsilon"] == 3.0


def test_resume_keeps_the_ledger(tmp_path: Path) -> None:
    full = _run(tmp_path / "a", "run.rounds=8")
    part = _run(tmp_path / "b", "run.rounds=5")
    resumed = resume_experiment(part.run_dir.path, ["run.rounds=8"], progress=False)
    assert [r.get("epsilon") for r in resumed.history.rows] == [
        r.get("epsilon") for r in full.history.rows
    ]
    assert torch.equal(resumed.x, full.x)


@pytest.mark.parametrize(
    ("edit", "says"),
    [
        ({"dp_noise_multiplier": 100.0}, "dp_noise_multiplier = 100.0"),  # less privacy spent
        ({"dp_noise_multiplier": float("nan")}, "dp_noise_multiplier = nan"),
        ({"dp_noise_multiplier": "1"}, "dp_noise_multiplier = '1'"),
        ({"dp_noise_multiplier": None}, "dp_noise_multiplier = None"),  # a round left out
        ({"epsilon": 0.01}, "epsilon = 0.01"),
    ],
)
def test_an_edited_history_cannot_lower_the_privacy_spent_on_resume(
    tmp_path: Path, edit: dict[str, object], says: str
) -> None:
    """Resuming rebuilds the ledger from history.jsonl: a row whose privacy columns the run
    cannot have written (a larger multiplier, one left out, an epsilon the ledger does not
    give) stops the resume instead of reporting less epsilon than was spent."""
    part = _run(tmp_path, "run.rounds=4")
    file = part.run_dir.path / "history.jsonl"
    rows = [json.loads(line) for line in file.read_text().splitlines()]
    target = 2 if "epsilon" not in edit else len(rows) - 1
    for k, v in edit.items():
        if v is None:
            rows[target].pop(k)
        else:
            rows[target][k] = v
    file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(PhloemError, match="cannot resume a private run") as e:
        resume_experiment(part.run_dir.path, ["run.rounds=6"], progress=False)
    assert says in str(e.value)


def test_secure_run_matches_plain_run_without_noise(tmp_path: Path) -> None:
    sets = ("privacy.noise_multiplier=0.0", "run.rounds=3")
    plain = _run(tmp_path / "p", *sets)
    secure = _run(tmp_path / "s", *sets, "aggregation.name=secagg", "aggregation.clip=1.0")
    torch.testing.assert_close(secure.x, plain.x, atol=1e-5, rtol=0)
    assert math.isinf(float(plain.history.last()["epsilon"]))


# --- careless configs -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sets", "field"),
    [
        (["privacy.clip=-1.0"], "privacy.clip"),
        (["privacy.clip=nan"], "privacy.clip"),
        (["privacy.noise_multiplier=nan"], "privacy.noise_multiplier"),
        (["privacy.noise_multiplier=-0.5"], "privacy.noise_multiplier"),
        (["privacy.delta=1.0"], "privacy.delta"),
        (["privacy.delta=nan"], "privacy.delta"),
        (["privacy.target_epsilon=2.0"], "privacy.noise_multiplier"),  # both given
        ([], "privacy.noise_multiplier"),  # neither (calibrate drops the multiplier)
        (["privacy.accountant=gdp"], "privacy.accountant"),
        (["privacy.mechanism=laplace"], "privacy.mechanism"),
    ],
)
def test_bad_privacy_values_name_the_field(tmp_path: Path, sets: list[str], field: str) -> None:
    with pytest.raises(ConfigError) as e:
        _cfg(tmp_path, *sets, calibrate=not sets)
    assert e.value.field == field


@pytest.mark.parametrize(
    ("sets", "field"),
    [
        (["sampling.scheme=uniform", "sampling.cohort_size=5"], "sampling.scheme"),
        (["sampling.scheme=full"], "sampling.scheme"),
        (["algorithm.name=diana"], "privacy.mechanism"),
        (["algorithm.name=scaffold"], "privacy.mechanism"),
        (["aggregation.name=secagg", "aggregation.clip=1.0", "privacy.noise_multiplier=2.0"],
         "aggregation.clip"),
    ],
)  # fmt: skip
def test_bad_privacy_combinations_name_the_field(
    tmp_path: Path, sets: list[str], field: str
) -> None:
    with pytest.raises(ConfigError) as e:
        build_experiment(_cfg(tmp_path, *sets))
    assert e.value.field == field
    if field == "privacy.mechanism":
        assert e.value.allowed is not None and "fedavg" in e.value.allowed


def test_cli_shows_one_line_and_the_final_epsilon(tmp_path: Path) -> None:
    path = tmp_path / "q.toml"
    path.write_text(QUAD)
    out = f"run.out_dir={tmp_path / 'runs'}"
    bad = runner.invoke(
        app, ["fl", "run", str(path), "--set", out, "--set", "sampling.scheme=full"]
    )
    assert bad.exit_code != 0 and "Traceback" not in bad.output
    assert "sampling.scheme" in bad.output and "poisson" in bad.output.lower()
    ok = runner.invoke(app, ["fl", "run", str(path), "--set", out, "--no-progress"])
    assert ok.exit_code == 0, ok.output
    eps = _direct_epsilon("rdp", 1.1, 0.25, 8, 1e-5)
    assert f"epsilon = {eps:.4g} at delta = 1e-05" in " ".join(ok.output.split())


# --- it learns ------------------------------------------------------------------------------


def test_dp_fedavg_learns_digits_with_its_epsilon(tmp_path: Path) -> None:
    cfg = load_config(
        Path(__file__).parents[2] / "configs" / "dp_fedavg.toml",
        [f"run.out_dir={tmp_path}", "run.rounds=30", "run.eval_every=10"],
    )
    with pytest.warns(UserWarning, match="uniformly"):
        res = run_experiment(cfg, progress=False)
    last = res.history.last()
    assert float(last["test_acc"]) > 0.5  # chance is 0.1
    eps = float(last["epsilon"])
    assert eps == pytest.approx(_direct_epsilon("rdp", 1.0, 0.1, 30, 1e-5), rel=1e-12)
    assert 0 < eps < 10


def test_the_mechanism_refuses_bad_values_itself() -> None:
    with pytest.raises(ConfigError, match=r"privacy\.clip"):
        GaussianMechanism(clip=0.0, noise_multiplier=1.0, sample_rate=0.1, num_clients=10)
    with pytest.raises(ConfigError, match=r"privacy\.noise_multiplier"):
        GaussianMechanism(clip=1.0, noise_multiplier=math.inf, sample_rate=0.1, num_clients=10)


def test_secure_dropouts_warn_of_the_approximation(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, "aggregation.name=secagg", "aggregation.dropout=0.2")
    with pytest.warns(UserWarning, match=r"z\*sqrt\(m/n\)"):
        exp = build_experiment(cfg)
    assert isinstance(exp.aggregator, PrivateAggregation) and exp.aggregator.distributed
    assert exp.privacy is not None and exp.privacy.describe()["noise"] == "distributed"
