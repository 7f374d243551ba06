"""``phloem secagg ...`` and secure aggregation through ``phloem fl run``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from phloem.cli.app import app
from phloem.core.history import read_history
from phloem.core.rundir import list_runs

runner = CliRunner()


def invoke(*args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, list(args), catch_exceptions=False)


@pytest.mark.parametrize("cmd", [["secagg"], ["secagg", "bench"], ["secagg", "params"]])
def test_help(cmd: list[str]) -> None:
    res = invoke(*cmd, "--help")
    assert res.exit_code == 0 and "Usage" in res.output


@pytest.mark.parametrize(
    ("protocol", "extra"),
    [
        ("secagg+", ["--num-shares", "7", "--threshold", "5"]),
        ("secagg", []),
        ("secagg", ["--consistency"]),
    ],
)
def test_bench_reports_a_correct_round(protocol: str, extra: list[str], tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    args = ["-n", "12", "--dim", "300", "--dropout", "0.1", "--stage", "masked_input"]
    res = invoke("secagg", "bench", *args, "--protocol", protocol, "--json", str(out), *extra)
    assert res.exit_code == 0, res.output
    r = json.loads(out.read_text())
    assert r["ok"] and r["dropped"] == 1 and r["clients"] == 12
    assert r["max_abs_error"] <= r["error_bound"]
    # 300 entries + the weight at 4 bytes each dominate the upload
    assert 4 * 301 < r["up_bytes"] < 4 * 301 + 4000
    assert "masked_input" in res.output


def test_bench_with_parameters_that_miss_the_security_target_is_refused_by_the_clients() -> None:
    """k = 5, t = 3 over 12 clients with 10% corrupt: every client's policy refuses the round,
    and the output says why; the same pair with no corrupt client tolerated goes through."""
    args = ["-n", "12", "--dim", "30", "--num-shares", "5", "--threshold", "3"]
    res = invoke("secagg", "bench", *args)
    assert res.exit_code == 4
    flat = " ".join(res.output.split())
    assert "refused the round" in flat and "misses the security target" in flat
    assert invoke("secagg", "bench", *args, "--tolerate-corrupt", "0").exit_code == 0


def test_bench_abort_exits_nonzero_with_reason() -> None:
    args = ["-n", "6", "--dim", "10", "--protocol", "secagg", "--threshold", "5"]
    res = invoke("secagg", "bench", *args, "--dropout", "0.5", "--stage", "unmask")
    assert res.exit_code == 4
    assert "threshold" in res.output


def test_bench_fails_a_round_whose_mean_is_off_by_more_than_its_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``ok`` means the right mean, not only a finished round."""
    import dataclasses

    import phloem.secagg.bench as bench

    real = bench.secure_mean

    def off_by_a_bit(*args: object, **kwargs: object) -> object:
        res = real(*args, **kwargs)  # type: ignore[arg-type]
        assert res.mean is not None
        return dataclasses.replace(res, mean=res.mean + 10 * res.error_bound)

    monkeypatch.setattr(bench, "secure_mean", off_by_a_bit)
    res = invoke("secagg", "bench", "-n", "8", "--dim", "20")
    assert res.exit_code == 4
    assert "FAILED" in res.output and "the mean is wrong" in res.output


def test_bench_bad_input_names_the_field() -> None:
    res = runner.invoke(app, ["secagg", "bench", "--protocol", "secagg++"])
    assert res.exit_code == 2 and "--protocol" in res.output and "secagg+" in res.output
    res = runner.invoke(app, ["secagg", "bench", "-n", "5", "--dim", "4", "--stage", "later"])
    assert res.exit_code == 2 and "stage" in res.output and "unmask" in res.output


@pytest.mark.parametrize(
    ("args", "flag", "allowed"),
    [
        (["bench", "--tolerate-dropout", "1.5"], "--tolerate-dropout", "[0, 1)"),
        (["bench", "--num-shares", "1"], "--num-shares", "int >= 2"),
        (["bench", "--prg", "rc4"], "--prg", "chacha20"),
        (["bench", "--modulus-bits", "65"], "--modulus-bits", "1..64"),
        (["bench", "-n", "5", "--dim", "4", "--dropout", "1.5"], "--dropout", "[0, 1)"),
        (
            ["params", "-n", "4", "--protocol", "secagg", "--dropout", "0.3", "--corrupt", "0"],
            "--dropout",
            "more clients",
        ),
        (["params", "--corrupt", "nan"], "--corrupt", "[0, 1)"),
        (["params", "--sigma", "0"], "--sigma", "> 0"),
        (["params", "-n", "1"], "--clients", "secure aggregation needs at least 2"),
        (["bench", "-n", "5", "--dim", "-3"], "--dim", ">= 1"),  # was a numpy traceback
    ],
)
def test_library_errors_name_the_option(args: list[str], flag: str, allowed: str) -> None:
    """Each command's options map to the settings' fields; errors are renamed at the CLI."""
    res = runner.invoke(app, ["secagg", *args])
    assert res.exit_code == 2, res.output
    text = " ".join(res.output.split())  # rich wraps long lines
    assert f"config field '{flag}'" in text and allowed in text


def test_help_imports_neither_torch_nor_scipy() -> None:
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from phloem.cli.secagg import app\n"
        "for cmd in ([], ['bench'], ['params']):\n"
        "    assert CliRunner().invoke(app, [*cmd, '--help']).exit_code == 0\n"
        "print(sorted(m for m in ('torch', 'scipy', 'flwr') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "[]"


def test_params_explains_the_choice() -> None:
    res = invoke("secagg", "params", "-n", "200", "--dropout", "0.05", "--corrupt", "0.05")
    assert res.exit_code == 0
    assert "Harary" in res.output and "Security" in res.output and "Correctness" in res.output


QUAD = """
[data]
dataset = "quadratic"
num_clients = 10
dim = 6

[algorithm]
name = "fedavg"

[local]
solver = "full"

[sampling]
cohort_size = 8

[aggregation]
name = "secagg+"
dropout = 0.1
clip = 16.0

[run]
name = "sec"
rounds = 3
"""


def test_fl_run_with_secure_aggregation(tmp_path: Path) -> None:
    cfg = tmp_path / "sec.toml"
    cfg.write_text(QUAD)
    res = invoke("fl", "run", str(cfg), "--set", f"run.out_dir={tmp_path / 'runs'}")
    assert res.exit_code == 0, res.output
    (run,) = list_runs(tmp_path / "runs")
    rows = read_history(run.path / "history.jsonl").rows
    assert all("secagg_ok" in r for r in rows[1:])
    bad = runner.invoke(app, ["fl", "run", str(cfg), "--set", "aggregation.name=he"])
    assert bad.exit_code == 2 and "aggregation.name" in bad.output
