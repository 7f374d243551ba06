"""The command line, end to end, as a user drives it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from phloem.cli.app import app
from phloem.core.rundir import RunDir, list_runs

runner = CliRunner()

QUAD = """
[data]
dataset = "quadratic"
num_clients = 8
dim = 6

[algorithm]
name = "diana"

[compressor]
name = "randk"
k = 2

[sampling]
scheme = "full"

[server]
lr = 0.3

[run]
name = "quad"
rounds = 4
full_eval = true
"""


def invoke(*args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, list(args), catch_exceptions=False)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    p = tmp_path / "quad.toml"
    p.write_text(QUAD)
    return p


def only_run(root: Path) -> RunDir:
    runs = list_runs(root)
    assert len(runs) == 1
    return RunDir(runs[0].path)


@pytest.mark.parametrize(
    "cmd",
    [
        [],
        ["fl"],
        ["fl", "run"],
        ["fl", "list"],
        ["runs"],
        ["runs", "list"],
        ["runs", "show"],
        ["plot"],
        ["demo"],
    ],
)
def test_every_command_has_help(cmd: list[str]) -> None:
    res = invoke(*cmd, "--help")
    assert res.exit_code == 0
    assert "Usage" in res.output


def test_fl_run_writes_a_complete_run_folder(config: Path, tmp_path: Path) -> None:
    out = tmp_path / "runs"
    res = invoke("fl", "run", str(config), "--set", f"run.out_dir={out}", "--no-progress")
    assert res.exit_code == 0, res.output
    rd = only_run(out)
    assert rd.name.startswith("quad-")
    assert 'name = "diana"' in rd.read_config()
    rows = rd.history().rows
    assert [r["round"] for r in rows] == [0, 1, 2, 3, 4]
    assert "dist_to_opt" in rows[-1] and "grad_norm" in rows[-1]
    summary = json.loads((rd.path / "summary.json").read_text())
    assert summary["status"] == "finished"


def test_set_overrides_and_resume_extends_a_run(config: Path, tmp_path: Path) -> None:
    out = tmp_path / "runs"
    args = ["fl", "run", str(config), "--set", f"run.out_dir={out}", "--set", "run.rounds=2"]
    assert invoke(*args, "--no-progress").exit_code == 0
    rd = only_run(out)
    assert len(rd.history()) == 3
    res = invoke("fl", "run", "--resume", str(rd.path), "--set", "run.rounds=5", "--no-progress")
    assert res.exit_code == 0, res.output
    assert [r["round"] for r in rd.history().rows] == [0, 1, 2, 3, 4, 5]
    assert "rounds = 5" in rd.read_config()


def test_unknown_algorithm_is_a_clear_error(config: Path) -> None:
    res = runner.invoke(app, ["fl", "run", str(config), "--set", "algorithm.name=fedsgdx"])
    assert res.exit_code == 2
    assert "algorithm.name" in res.output and "'scaffold'" in res.output


def test_wrong_type_names_the_field(config: Path) -> None:
    res = runner.invoke(app, ["fl", "run", str(config), "--set", 'local.lr="fast"'])
    assert res.exit_code == 2
    assert "local.lr" in res.output and "expected a number" in res.output


def test_missing_data_file_says_where_it_looked(config: Path, tmp_path: Path) -> None:
    empty = tmp_path / "nodata"
    empty.mkdir()
    res = runner.invoke(
        app,
        [
            "fl",
            "run",
            str(config),
            "--set",
            "data.dataset=mnist",
            "--set",
            f"data.path={empty}",
            "--set",
            f"run.out_dir={tmp_path / 'r'}",
        ],
    )
    assert res.exit_code == 2
    text = " ".join(res.output.split())
    assert "missing data" in text and str(empty) in text and "PHLOEM_DATA_DIR" in text


def test_empty_client_is_a_clear_error(config: Path, tmp_path: Path) -> None:
    # 1,437 digits over 5,000 clients cannot give every client a row.
    res = runner.invoke(
        app,
        [
            "fl",
            "run",
            str(config),
            "--set",
            "data.dataset=digits",
            "--set",
            "data.partition=iid",
            "--set",
            "data.num_clients=5000",
            "--set",
            f"run.out_dir={tmp_path / 'r'}",
        ],
    )
    assert res.exit_code != 0
    assert "client" in res.output.lower()


def test_diverging_run_exits_3_and_keeps_history(config: Path, tmp_path: Path) -> None:
    out = tmp_path / "runs"
    res = runner.invoke(
        app,
        [
            "fl",
            "run",
            str(config),
            "--set",
            "server.lr=50.0",
            "--set",
            "run.rounds=200",
            "--set",
            f"run.out_dir={out}",
            "--no-progress",
        ],
    )
    assert res.exit_code == 3
    assert "diverged at round" in " ".join(res.output.split())
    rd = only_run(out)
    assert rd.summary()["status"] == "diverged"
    assert rd.checkpoint_path.is_file() and len(rd.history()) > 1


def test_fl_list_names_every_algorithm_and_compressor() -> None:
    res = invoke("fl", "list")
    assert res.exit_code == 0
    for name in ("fedavg", "fedprox", "scaffold", "dcgd", "diana", "marina", "ef21"):
        assert name in res.output
    for name in ("randk", "topk", "natural", "qsgd", "bernoulli"):
        assert name in res.output
    # config section names are printed literally (not eaten as rich markup)
    assert "[data] dataset" in res.output and "[mu, L]" in res.output
    assert "plain, secagg, secagg+" in res.output


def test_runs_list_show_and_plot(config: Path, tmp_path: Path) -> None:
    out = tmp_path / "runs"
    invoke("fl", "run", str(config), "--set", f"run.out_dir={out}", "--no-progress")
    invoke(
        "fl",
        "run",
        str(config),
        "--set",
        f"run.out_dir={out}",
        "--set",
        "algorithm.name=dcgd",
        "--set",
        "run.name=dcgd",
        "--no-progress",
    )
    res = invoke("runs", "list", "--root", str(out))
    assert res.exit_code == 0 and "finished" in res.output
    runs = [i.path for i in list_runs(out)]
    res = invoke("runs", "show", str(runs[0]))
    assert res.exit_code == 0 and "[algorithm]" in res.output and "dist" in res.output
    png = tmp_path / "fig.png"
    res = invoke(
        "plot", *map(str, runs), "--x", "bits", "--y", "grad_norm", "--logx", "--out", str(png)
    )
    assert res.exit_code == 0, res.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pdf = tmp_path / "fig.pdf"
    assert invoke("plot", *map(str, runs), "--y", "dist", "--out", str(pdf)).exit_code == 0
    assert pdf.read_bytes()[:4] == b"%PDF"
    bad = runner.invoke(app, ["plot", str(runs[0]), "--y", "nonsense", "--out", str(png)])
    assert bad.exit_code == 2 and "available" in bad.output


def test_demo_runs_every_method_and_writes_plots(tmp_path: Path) -> None:
    res = invoke("demo", "--rounds", "3", "--out", str(tmp_path))
    assert res.exit_code == 0, res.output
    for name in ("fedavg", "fedavg-secagg+", "diana-randk"):
        assert name in res.output
    assert (tmp_path / "demo-accuracy-vs-bits.png").is_file()
    assert len(list_runs(tmp_path)) == 3


def test_theory_command_and_theory_step_rule(config: Path, tmp_path: Path) -> None:
    res = invoke("fl", "theory", str(config))
    assert res.exit_code == 0, res.output
    assert "step size, diana" in res.output and "omega of RandK" in res.output
    out = tmp_path / "runs"
    args = ["--set", "server.lr_rule=theory", "--set", f"run.out_dir={out}", "--no-progress"]
    res = invoke("fl", "run", str(config), *args)
    assert res.exit_code == 0, res.output
    assert "lr=" in json.dumps(only_run(out).summary()["algorithm"])
    bad = runner.invoke(
        app,
        [
            "fl",
            "run",
            str(config),
            "--set",
            "server.lr_rule=theory",
            "--set",
            "algorithm.name=fedprox",
        ],
    )
    assert bad.exit_code == 2 and "no theory step size for fedprox" in bad.output


def test_resume_refuses_to_change_the_experiment(config: Path, tmp_path: Path) -> None:
    out = tmp_path / "runs"
    invoke(
        "fl",
        "run",
        str(config),
        "--set",
        f"run.out_dir={out}",
        "--set",
        "run.rounds=2",
        "--no-progress",
    )
    rd = only_run(out)
    res = runner.invoke(app, ["fl", "run", "--resume", str(rd.path), "--set", "server.lr=0.01"])
    assert res.exit_code == 2
    assert "server.lr" in res.output and "cannot change when resuming" in " ".join(
        res.output.split()
    )


def test_sigterm_saves_history_and_checkpoint_then_resume_finishes(
    config: Path, tmp_path: Path
) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "runs"
    sets = [f"run.out_dir={out}", "run.rounds=100000", "run.eval_every=1000"]
    cmd = [sys.executable, "-m", "phloem.cli.app", "fl", "run", str(config), "--no-progress"]
    cmd += [arg for s in sets for arg in ("--set", s)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        runs = list_runs(out)
        if runs and len(RunDir(runs[0].path).history()) > 20:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, output
    assert "interrupted" in output
    rd = only_run(out)
    assert rd.summary()["status"] == "interrupted"
    done = int(rd.summary()["round"])
    assert done >= 20 and rd.checkpoint_path.is_file()
    res = invoke(
        "fl", "run", "--resume", str(rd.path), "--set", f"run.rounds={done + 3}", "--no-progress"
    )
    assert res.exit_code == 0, res.output
    assert rd.summary()["status"] == "finished"
    assert [r["round"] for r in rd.history().rows][-4:] == [done, done + 1, done + 2, done + 3]
    assert os.path.getsize(rd.history_path) > 0


def test_sweep_runs_the_grid_and_plots(config: Path, tmp_path: Path) -> None:
    out = tmp_path / "runs"
    res = invoke(
        "fl",
        "sweep",
        str(config),
        "--grid",
        "algorithm.name=dcgd,diana",
        "--grid",
        "server.lr=0.1,0.2",
        "--set",
        f"run.out_dir={out}",
        "--x",
        "bits",
        "--y",
        "dist",
        "--no-progress",
    )
    assert res.exit_code == 0, res.output
    assert len(list_runs(out)) == 4
    assert "name=diana lr=0.2" in res.output
    assert (out / "sweep-quad-dist-vs-bits.png").is_file()
    bad = runner.invoke(app, ["fl", "sweep", str(config), "--grid", "algorithm.name=dcgd,nope"])
    assert bad.exit_code == 2 and "nope" in bad.output
    assert len(list_runs(out)) == 4  # the bad grid was rejected before anything ran
