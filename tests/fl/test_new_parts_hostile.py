"""The new parts of phloem.fl driven by someone who did not build them.

Each case here broke (a traceback, a false stop, a silently ignored key) before it was mended:
a careless user's config, an adversarial value, a combination nobody spelled out.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from phloem.cli.app import app
from phloem.fl.simulate import _LossWatch

runner = CliRunner()

QUAD = """
[data]
dataset = "quadratic"
num_clients = 6
dim = 8

[algorithm]
name = "{alg}"

[local]
solver = "full"

[sampling]
scheme = "full"

[run]
name = "q"
rounds = 4
"""


def _cli(
    tmp_path: Path, alg: str, *sets: str, extra: str = "", cmd: str = "run"
) -> tuple[int, str]:
    """``phloem fl CMD`` on a small quadratic config; (exit code, output on one line)."""
    path = tmp_path / "q.toml"
    path.write_text(QUAD.format(alg=alg) + extra)
    args = ["fl", cmd, str(path)]
    if cmd == "run":
        args += ["--set", f"run.out_dir={tmp_path / 'runs'}"]
    for s in sets:
        args += ["--set", s]
    res = runner.invoke(app, args)
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    assert "Traceback" not in res.output
    return res.exit_code, " ".join(res.output.split())


# --- divergence watch ------------------------------------------------------------------------


def test_a_first_loss_of_zero_is_no_scale_for_divergence() -> None:
    watch = _LossWatch(1e6)
    assert watch.check(0.0) is None  # the quadratic's f(x0 = 0)
    assert watch.check(0.05) is None  # was "exploded past 1e+06 x 1e-12"
    assert watch.check(-0.2) is None
    assert watch.check(1e6) is not None  # a real explosion is still caught


@pytest.mark.parametrize("alg", ["fednova", "feddyn"])
def test_partial_participation_on_the_quadratic_is_not_a_false_divergence(
    tmp_path: Path, alg: str
) -> None:
    # The sampled clients' loss at x0 = 0 is 0, and their next one is positive for some
    # cohorts: runs with a small, safe step stopped at round 2 as "diverged".
    code, out = _cli(tmp_path, alg, "sampling.scheme=poisson", "sampling.rate=0.3", "run.rounds=6")
    assert code == 0, out


# --- compressors -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["dithering", "qsgd"])
def test_absurd_quantisation_levels_are_refused_not_a_traceback(tmp_path: Path, name: str) -> None:
    # levels = 1e30 ran until compress() raised OverflowError inside the first round.
    extra = f'[compressor]\nname = "{name}"\nlevels = 1e30\n'
    code, out = _cli(tmp_path, "diana", extra=extra)
    assert code == 2 and "compressor.levels" in out and "16777216" in out, out
    ok = f'[compressor]\nname = "{name}"\nlevels = 16777216\n'
    assert _cli(tmp_path, "diana", "server.lr=0.1", extra=ok)[0] == 0


_TOPK = '[compressor]\nname = "topk"\nk = 2\n'


@pytest.mark.parametrize("alg", ["diana", "marina", "pp_marina", "cofig", "frecon"])
@pytest.mark.parametrize(
    "comp",
    [
        _TOPK,
        '[compressor]\nname = "sign"\n',
        '[compressor]\nname = "rankk"\n',
        '[compressor]\nname = "mixture"\ncomponents = [{name = "randk", k = 2}, "sign"]\n',
    ],
    ids=["topk", "sign", "rankk", "mixture-with-sign"],
)
def test_unbiased_only_methods_refuse_a_biased_compressor(
    tmp_path: Path, alg: str, comp: str
) -> None:
    # omega = inf made the shift step 1 / (1 + omega) silently 0: DIANA ran as biased DCGD,
    # COFIG/FRECON never moved their shifts.
    code, out = _cli(tmp_path, alg, extra=comp)
    assert code == 2 and "compressor.name" in out and "needs an unbiased compressor" in out, out
    assert "'randk'" in out and "'topk'" not in out


def test_scaled_unbiased_compressor_is_refused_by_name_for_diana(tmp_path: Path) -> None:
    code, out = _cli(
        tmp_path, "diana", extra='[compressor]\nname = "randk"\nk = 2\nscaled = true\n'
    )
    assert code == 2 and "compressor.scaled" in out, out


@pytest.mark.parametrize("alg", ["ef21", "ef21_pp", "ef21_bc"])
def test_error_feedback_refuses_a_non_contractive_compressor(tmp_path: Path, alg: str) -> None:
    # EF21 with an unscaled Rand-K (omega = 3) diverged at round ~16 at any step, with advice
    # to lower the learning rate.
    extra = '[compressor]\nname = "randk"\nk = 1\n'
    code, out = _cli(tmp_path, alg, "server.lr=0.05", extra=extra)
    assert code == 2 and "'compressor'" in out and "contractive" in out, out
    scaled = '[compressor]\nname = "randk"\nk = 1\nscaled = true\n'
    assert _cli(tmp_path, alg, "server.lr=0.05", extra=scaled)[0] == 0


def test_ef21_bc_refuses_a_non_contractive_downlink(tmp_path: Path) -> None:
    extra = _TOPK + '[downlink]\nname = "randk"\nk = 1\n'
    code, out = _cli(tmp_path, "ef21_bc", "server.lr=0.05", extra=extra)
    assert code == 2 and "downlink.name" in out and "downlink.scaled" in out, out


# --- schedules -------------------------------------------------------------------------------


@pytest.mark.parametrize("section", ["local", "server"])
@pytest.mark.parametrize("warmup", ["4", "1000", "1e300"])
def test_a_warm_up_as_long_as_the_run_is_refused(tmp_path: Path, section: str, warmup: str) -> None:
    # warmup_rounds >= run.rounds: every round was warm-up, the configured lr never taken (and
    # 1e300 made every step ~1e-300), silently.
    code, out = _cli(tmp_path, "fedavg", f"{section}.warmup_rounds={warmup}")
    assert code == 2 and f"{section}.warmup_rounds" in out and "run.rounds (4)" in out, out
    assert _cli(tmp_path, "fedavg", f"{section}.warmup_rounds=3")[0] == 0


# --- privacy ---------------------------------------------------------------------------------

_DP = '[privacy]\nmechanism = "gaussian"\n'


@pytest.mark.parametrize(
    ("key", "value"),
    [
        # 1e300 (and anything past ~1e160) raised OverflowError in Opacus's RDP analysis
        ("noise_multiplier", "1e300"),
        # Opacus's bisection never ended (a run hung for over 10 minutes)
        ("target_epsilon", "1e300"),
        ("target_epsilon", "1000"),
    ],
)
def test_privacy_numbers_past_what_the_accountant_handles_are_refused(
    tmp_path: Path, key: str, value: str
) -> None:
    extra = _DP + f"{key} = {value}\n"
    code, out = _cli(
        tmp_path, "fedavg", "sampling.scheme=poisson", "sampling.rate=0.5", extra=extra
    )
    assert code == 2 and f"privacy.{key}" in out and "must lie in" in out, out


# --- a user's own LIBSVM file ------------------------------------------------------------------

_OWN = """
[data]
dataset = "libsvm"
path = "{path}"
num_clients = 3
partition = "iid"

[model]
name = "binary_logistic"
l2 = 0.01

[local]
solver = "full"

[sampling]
scheme = "full"

[run]
rounds = 2
out_dir = "{out}"
"""


def _own_file(tmp_path: Path, labels: list[str], text: str | None = None) -> tuple[int, str]:
    data = tmp_path / "mine.txt"
    rows = (
        [f"{labels[i % len(labels)]} 1:{(i % 5) / 5 - 0.3:.2f} 2:{i % 3}" for i in range(30)]
        if labels
        else []
    )
    data.write_text(text if text is not None else "\n".join(rows) + "\n")
    cfg = tmp_path / "own.toml"
    cfg.write_text(_OWN.format(path=data, out=tmp_path / "runs"))
    res = runner.invoke(app, ["fl", "run", str(cfg)])
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    return res.exit_code, " ".join(res.output.split())


@pytest.mark.parametrize("labels", [["-1", "+1"], ["1", "2"], ["2", "4"], ["0", "1"]])
def test_an_own_binary_libsvm_file_is_binary_whatever_its_two_labels(
    tmp_path: Path, labels: list[str]
) -> None:
    # labels 1/2 were kept as class ids: "3 classes", refused by binary_logistic
    code, out = _own_file(tmp_path, labels)
    assert code == 0, out


def test_libsvm_labels_are_ranked_jointly_over_train_and_test(tmp_path: Path) -> None:
    from phloem.data.loaders import load_libsvm

    (tmp_path / "t.txt").write_text("1 1:1\n3 1:2\n2 1:3\n")
    (tmp_path / "t.txt.t").write_text("3 1:1\n3 1:2\n")  # the test file lacks classes 1 and 2
    tt = load_libsvm(tmp_path / "t.txt")
    assert tt.train.y.tolist() == [0, 2, 1] and tt.test.y.tolist() == [2, 2]
    assert tt.train.num_classes == 3


def test_an_own_libsvm_file_with_one_class_is_refused(tmp_path: Path) -> None:
    # Newton's exact optimum failed with a traceback
    code, out = _own_file(tmp_path, ["1"])
    assert code == 2 and "data.dataset" in out and "single class" in out, out


def test_a_malformed_own_libsvm_file_names_its_line(tmp_path: Path) -> None:
    code, out = _own_file(tmp_path, [], text="1 1:0.5\nhello world\n")
    assert code == 2 and "line 2" in out and "'hello' is not a number" in out, out


# --- server optimisers -----------------------------------------------------------------------


@pytest.mark.parametrize("opt", ["adagrad", "yogi"])
def test_an_adaptive_server_eps_whose_square_overflows_is_refused(tmp_path: Path, opt: str) -> None:
    # eps = 1e300: eps**2 (the default initial accumulator) raised OverflowError in round 1
    code, out = _cli(tmp_path, "fedavg", f"server.optimizer={opt}", "server.eps=1e300")
    assert code == 2 and "server.eps" in out, out


# --- backends --------------------------------------------------------------------------------


def test_process_backend_refuses_more_workers_than_the_machine_can_hold(tmp_path: Path) -> None:
    # run.workers = 100000 started one process per worker: the run hung for over 10 minutes
    code, out = _cli(tmp_path, "fedavg", "run.backend=process", "run.workers=100000")
    assert code == 2 and "run.workers" in out and "4 per core" in out, out


def test_a_ray_address_without_the_ray_backend_is_refused(tmp_path: Path) -> None:
    # the address was ignored and the run went serial, silently
    code, out = _cli(tmp_path, "fedavg", "run.ray_address=auto")
    assert code == 2 and "run.ray_address" in out and "'ray'" in out, out


@pytest.mark.parametrize("clients", ["1000000000", "1000000000000000000"])
def test_pp_marina_refuses_an_absurd_number_of_draws(tmp_path: Path, clients: str) -> None:
    # 1e18 raised inside numpy in round 1; 1e9 hung allocating the draws
    extra = '[compressor]\nname = "randk"\nk = 2\n'
    sets = (f"algorithm.clients={clients}", "algorithm.p=0.5")
    code, out = _cli(tmp_path, "pp_marina", *sets, extra=extra)
    assert code == 2 and "algorithm.clients" in out and "1000000]" in out, out


def test_an_own_libsvm_file_with_more_features_than_a9a_keeps_its_own_width(
    tmp_path: Path,
) -> None:
    """`path` naming a file: its width is its largest feature index, not a9a's 123 (the
    default libsvm_name's), which refused any file using a feature beyond 123."""
    rows = [f"{'+1' if i % 2 else '-1'} {i % 7 + 1}:0.5 {200 + i % 50}:{i % 3}" for i in range(40)]
    code, out = _own_file(tmp_path, [], text="\n".join(rows) + "\n")
    assert code == 0, out
    from phloem.core.rng import SeedStreams
    from phloem.fl.config import load_config
    from phloem.fl.experiment import build_problem

    cfg = load_config(tmp_path / "own.toml", [])
    assert build_problem(cfg, SeedStreams(0)).dim == 239  # the largest index; no bias column


def test_a_large_own_problem_skips_the_automatic_optimum_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Newton's d x d Hessian is not formed behind a user's back for a wide problem: the run
    warns that it reports no gap; `fl optimum` still solves it."""
    from phloem.core.rng import SeedStreams
    from phloem.fl import experiment
    from phloem.fl.config import load_config

    _own_file(tmp_path, ["-1", "+1"])
    cfg = load_config(tmp_path / "own.toml", [])
    monkeypatch.setattr(experiment, "AUTO_SOLVE_MAX_DIM", 1)
    with pytest.warns(UserWarning, match="not solved for every run at d = 2"):
        problem = experiment.build_problem(cfg, SeedStreams(0))
    assert problem.optimum is None  # type: ignore[union-attr]
    assert experiment.optimum_report(cfg).grad_norm < 1e-12
