"""``phloem jigsaw ...``: simulate, compare, demo, list, and careless input through the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from phloem.cli.app import app

runner = CliRunner()


def test_help_imports_neither_torch_nor_scipy() -> None:
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from phloem.cli.app import app\n"
        "for cmd in (['jigsaw'], ['jigsaw', 'simulate'], ['jigsaw', 'compare'],"
        " ['jigsaw', 'demo'], ['jigsaw', 'list']):\n"
        "    assert CliRunner().invoke(app, [*cmd, '--help']).exit_code == 0\n"
        "print(sorted(m for m in ('torch', 'scipy', 'phloem.jigsaw') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "[]"


def test_list_shows_policies_and_traces() -> None:
    res = runner.invoke(app, ["jigsaw", "list"])
    assert res.exit_code == 0
    for name in (
        "fifo",
        "tiresias",
        "gavel",
        "gandiva",
        "muri",
        "jigsaw",
        "philly",
        "alibaba",
        "csv",
    ):
        assert name in res.output


def test_simulate_writes_a_run_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PHLOEM_DATA_DIR", raising=False)  # the bundled workload
    res = runner.invoke(app, ["jigsaw", "simulate", "--set", f"run.out_dir={str(tmp_path)!r}",
                              "--set", "run.progress=false", "--set", "policy.name=jigsaw",
                              "--set", "spb.fraction=0.5"])  # fmt: skip
    assert res.exit_code == 0, res.output
    (run,) = tmp_path.iterdir()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["metrics"]["finished"] == 160
    for f in ("config.toml", "jobs.csv", "timeline.csv", "plots/jct_cdf.png",
              "plots/utilisation.png", "plots/gantt.png"):  # fmt: skip
        assert (run / f).is_file(), f
    assert "160/160" in res.output


def test_compare_two_policies(tmp_path: Path) -> None:
    res = runner.invoke(app, ["jigsaw", "compare", "--policy", "fifo", "--policy", "tiresias",
                              "--out", str(tmp_path)])  # fmt: skip
    assert res.exit_code == 0, res.output
    data = json.loads((tmp_path / "comparison.json").read_text())
    assert set(data) == {"fifo", "tiresias"}
    assert (tmp_path / "jct_cdf.png").is_file()
    assert data["tiresias"]["avg_jct_s"] < data["fifo"]["avg_jct_s"]


@pytest.mark.parametrize(
    ("sets", "field"),
    [
        (["policy.name=nope"], "policy.name"),
        (["sim.round_s=nan"], "sim.round_s"),
        (["sim.restart_s=-1"], "sim.restart_s"),
        (["cluster.nodes=0"], "cluster.nodes"),
        (["cluster.placement=random"], "cluster.placement"),
        (["spb.fraction=1.5"], "spb.fraction"),
        (["spb.penalty=inf"], "spb.penalty"),
        (["trace.name=csv"], "trace.path"),
        (["trace.load=3"], "trace.load"),
        (["policy.name=tiresias", "policy.thresholds_gpu_s=[5, 1]"], "policy.thresholds_gpu_s"),
        (["policy.name=jigsaw", "policy.base=muri"], "policy.base"),
        (["policy.name=fifo", "policy.margin=0.1"], "policy.margin"),
    ],
)
def test_bad_options_name_the_field(sets: list[str], field: str) -> None:
    args = ["jigsaw", "simulate"]
    for s in sets:
        args += ["--set", s]
    res = runner.invoke(app, args)
    assert res.exit_code == 2, res.output
    assert field in res.output and "Traceback" not in res.output


def test_a_users_damaged_csv_runs_and_reports_what_it_skipped(tmp_path: Path) -> None:
    trace = tmp_path / "mine.csv"
    trace.write_text("name,time,num_gpus,duration\na,0,2,3600\nb,10,1,nan\nc,20,4,1800\n"
                     "d,30,99999,60\n")  # fmt: skip
    res = runner.invoke(app, ["jigsaw", "simulate", "--set", "trace.name=csv",
                              "--set", f"trace.path={str(trace)!r}",
                              "--set", f"run.out_dir={str(tmp_path / 'runs')!r}",
                              "--set", "run.plots=false",
                              "--set", "run.progress=false"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "duration: not finite: 1" in res.output
    assert "refused jobs" in res.output  # 99999 GPUs: more than the cluster


def test_a_missing_trace_or_config_is_one_line(tmp_path: Path) -> None:
    res = runner.invoke(app, ["jigsaw", "simulate", "--set", "trace.name=csv",
                              "--set", f"trace.path={str(tmp_path / 'no.csv')!r}"])  # fmt: skip
    flat = res.output.replace("\n", "")  # rich wraps long paths
    assert res.exit_code == 2 and "no.csv" in flat and "Traceback" not in flat
    res = runner.invoke(app, ["jigsaw", "simulate", str(tmp_path / "missing.toml")])
    assert res.exit_code == 2 and "missing.toml" in res.output.replace("\n", "")


def test_demo_runs_without_a_data_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PHLOEM_DATA_DIR", raising=False)
    res = runner.invoke(app, ["jigsaw", "demo", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    data = json.loads((tmp_path / "comparison.json").read_text())
    assert set(data) == {"fifo", "tiresias", "gavel", "gandiva", "muri", "jigsaw"}


def test_jobs_left_unfinished_are_said(tmp_path: Path) -> None:
    trace = tmp_path / "t.csv"
    trace.write_text("name,time,num_gpus,duration\na,0,1,600\nb,1e300,1,60\nc,5,1,1e308\n")
    res = runner.invoke(app, ["jigsaw", "simulate", "--set", "trace.name=csv",
                              "--set", f"trace.path={str(trace)!r}", "--set", "run.plots=false",
                              "--set", f"run.out_dir={str(tmp_path / 'r')!r}",
                              "--set", "run.progress=false"])  # fmt: skip
    flat = " ".join(res.output.split())
    assert res.exit_code == 0, res.output
    assert "1 job(s) unfinished" in flat and "work: not finite or not positive" in flat
