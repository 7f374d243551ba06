"""The standard convex benchmark, exactly: L2-regularised binary logistic regression (labels
+-1, no bias) from a config, its exact optimum against an independent solver, L and mu of the
model actually used, and GD with its theory step reaching f - f* < 1e-6 on a9a."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.optimize import minimize
from typer.testing import CliRunner

from phloem.cli.app import app
from phloem.core.errors import ConfigError
from phloem.data.dataset import ArrayDataset
from phloem.data.partition import iid
from phloem.fl.config import load_config
from phloem.fl.models import BinaryLogistic, BinaryLogisticParams, seeded
from phloem.fl.problem import ModelProblem, Task

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "a9a_gd_logreg.toml"


def _data(n: int = 400, d: int = 7, seed: int = 0) -> ArrayDataset:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    y = (x @ rng.normal(size=d) + rng.normal(scale=2.0, size=n) > 0).astype(np.int64)
    return ArrayDataset(x, y, num_classes=2)


def _problem(bias: bool = False, l2: float = 0.01) -> ModelProblem:
    data = _data()
    module = seeded(lambda: BinaryLogistic.build(BinaryLogisticParams(bias), (7,), 2), 0)
    part = iid(len(data.y), 5, np.random.default_rng(0))
    return ModelProblem(module, data, data, part, task=Task.BINARY, l2=l2, dtype=torch.float64)


def _reference(a: np.ndarray, y: np.ndarray, l2: float) -> tuple[np.ndarray, float]:
    """An independent solver: scipy's L-BFGS on the objective written out in numpy."""

    def fg(x: np.ndarray) -> tuple[float, np.ndarray]:
        m = y * (a @ x)
        f = float(np.logaddexp(0.0, -m).mean() + l2 / 2 * x @ x)
        return f, -(a.T @ (y / (1.0 + np.exp(m)))) / len(y) + l2 * x

    r = minimize(fg, np.zeros(a.shape[1]), jac=True, method="L-BFGS-B",
                 options={"gtol": 1e-11, "ftol": 1e-15, "maxiter": 10_000})  # fmt: skip
    return r.x, float(r.fun)


@pytest.mark.parametrize("bias", [False, True])
def test_newton_optimum_matches_an_independent_solver(bias: bool) -> None:
    p = _problem(bias)
    opt = p.solve()
    assert opt.grad_norm < 1e-12 and len(opt.x) == 7 + bias
    data = _data()
    a = data.x if not bias else np.hstack([data.x, np.ones((len(data.x), 1))])
    y = 2.0 * data.y - 1.0
    x_ref, f_ref = _reference(a, y, 0.01)
    assert opt.f == pytest.approx(f_ref, abs=1e-12)
    assert np.linalg.norm(opt.x.numpy() - x_ref) < 1e-6
    # the problem's own oracles agree: f(x*) and a zero gradient, gap and distance reported
    ev = p.evaluate(opt.x, full=True)
    assert ev["objective"] == pytest.approx(opt.f, abs=1e-12)
    assert ev["grad_norm"] < 1e-10 and abs(ev["objective_gap"]) < 1e-12
    assert ev["dist_to_opt"] < 1e-12
    assert p.evaluate(torch.zeros_like(opt.x), full=True)["objective_gap"] > 0


def test_smoothness_is_that_of_the_model_used() -> None:
    data = _data()
    for bias in (False, True):
        s = _problem(bias).smoothness()
        assert s is not None
        a = data.x if not bias else np.hstack([data.x, np.ones((len(data.x), 1))])
        want = np.linalg.eigvalsh(a.T @ a)[-1] / (4 * len(a)) + 0.01  # sigmoid' <= 1/4
        assert pytest.approx(want, rel=1e-9) == s.L and s.mu == 0.01


def test_bad_binary_problems_are_refused() -> None:
    with pytest.raises(ValueError, match="two classes"):
        BinaryLogistic.build(BinaryLogisticParams(), (7,), 3)
    with pytest.raises(ValueError, match="l2 must be > 0"):
        _problem(l2=0.0).solve()
    with pytest.raises(ValueError, match="finite"):
        load_config(CONFIG, ["model.l2=nan"])


def test_gd_with_its_theory_step_reaches_the_optimum_on_a9a(
    data_file: Callable[[str], Path],
) -> None:
    from phloem.fl.experiment import run_experiment

    data_file("libsvm/a9a.gz")
    # the shipped config, made well enough conditioned to converge in a test's time
    cfg = load_config(CONFIG, ["model.l2=0.05", "run.rounds=400", "run.eval_every=400"])
    res = run_experiment(cfg, progress=False)
    last = res.history.last()
    assert last["objective_gap"] < 1e-6, last
    assert last["dist_to_opt"] < 1e-2


def test_optimum_command(data_file: Callable[[str], Path], tmp_path: Path) -> None:
    import json

    data_file("libsvm/a9a.gz")
    out = tmp_path / "opt.json"
    res = CliRunner().invoke(app, ["fl", "optimum", str(CONFIG), "--out", str(out)])
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    assert doc["dim"] == 123 and doc["grad_norm"] < 1e-12 and doc["mu"] == 0.001
    assert doc["f_star"] == pytest.approx(0.333340752068716, abs=1e-12)
    # solved once (here or by an earlier test), then read back from the cache
    res = CliRunner().invoke(app, ["fl", "optimum", str(CONFIG), "--out", str(out)])
    assert res.exit_code == 0 and "read from the cache" in res.output
    assert json.loads(out.read_text())["f_star"] == doc["f_star"]
    res = CliRunner().invoke(app, ["fl", "optimum", str(CONFIG), "--set", "model.name=logistic"])
    assert res.exit_code == 2 and "model.name" in res.output
    with pytest.raises(ConfigError):
        load_config(CONFIG, ["model.l2=-1"])


def test_the_optimum_is_cached_and_a_cached_one_is_checked(tmp_path: Path) -> None:
    cache = tmp_path / "optimum"
    solved = _problem().solve(cache=cache)
    assert solved.cached is None
    (file,) = cache.glob("*.npz")
    again = _problem().solve(cache=cache)
    assert again.cached == file and again.iterations == solved.iterations
    assert torch.equal(again.x, solved.x) and again.grad_norm < 1e-12
    # another problem (l2) has another key
    _problem(l2=0.02).solve(cache=cache)
    assert len(list(cache.glob("*.npz"))) == 2
    # a forged entry (x moved off the optimum) is not trusted: solved again and replaced
    np.savez(file, x=solved.x.numpy() + 1e-3, iterations=0, seconds=0.0)
    forged = _problem().solve(cache=cache)
    assert forged.cached is None and torch.allclose(forged.x, solved.x, atol=1e-12)
    assert _problem().solve(cache=cache).cached == file
    # damaged bytes, or an entry of the wrong shape: solved again
    file.write_bytes(b"not an npz")
    assert _problem().solve(cache=cache).cached is None
    np.savez(file, x=np.zeros(3), iterations=0, seconds=0.0)
    assert _problem().solve(cache=cache).cached is None


def test_an_unwritable_cache_only_warns(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    with pytest.warns(UserWarning, match="could not cache the optimum"):
        opt = _problem().solve(cache=blocker / "optimum")
    assert opt.grad_norm < 1e-12 and opt.cached is None


def test_smoothness_is_computed_once_per_problem() -> None:
    p = _problem()
    first = p.smoothness()
    assert first is not None and p.smoothness() is first


def test_a_natural_split_that_ignores_num_clients_says_so(
    data_file: Callable[[str], Path],
) -> None:
    from phloem.core.rng import SeedStreams
    from phloem.fl.experiment import build_problem

    data_file("femnist/femnist_leaf_sample.npz")
    base = {"data": {"dataset": "femnist", "partition": "natural", "num_clients": 100},
            "model": {"name": "logistic"}}  # fmt: skip
    cfg = load_config(None, base=base)
    with pytest.warns(UserWarning, match=r"num_clients = 100 is ignored .* 105 clients"):
        problem = build_problem(cfg, SeedStreams(0))
    assert problem.num_clients == 105
