"""``phloem attack ...``: run, list and errors through the command line (tiny configs)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from phloem.cli.app import app

runner = CliRunner()

TINY = """
[victim]
name = "lenet"
split = "relu1"
[victim.train]
epochs = 1
optimizer = "adam"
lr = 0.001
[attack]
name = "mean-image"
[private]
name = "lfw-faces"
count = 12
[aux]
name = "noise"
count = 20
[run]
seeds = [0]
"""


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PHLOEM_CACHE_DIR", str(tmp_path / "cache"))


def test_run_prints_the_metrics_and_the_run_folder(tmp_path: Path) -> None:
    cfg = tmp_path / "a.toml"
    cfg.write_text(TINY + f'out_dir = "{tmp_path / "runs"}"\n')
    res = runner.invoke(app, ["attack", "run", str(cfg), "--set", "aux.count=30"])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "mean-image vs lenet at relu1" in text and "ssim" in text and "run folder" in text
    assert "seed 0 done: ssim" in text  # the progress line of a finished seed
    assert len(list((tmp_path / "runs").iterdir())) == 1


def test_bad_configs_are_one_line_errors(tmp_path: Path) -> None:
    cfg = tmp_path / "a.toml"
    cfg.write_text(TINY + f'out_dir = "{tmp_path / "runs"}"\n')
    for override, field in [
        ("victim.split=fc9", "victim.split"),
        ("attack.name=gan", "attack.name"),
    ]:
        res = runner.invoke(app, ["attack", "run", str(cfg), "--set", override])
        assert res.exit_code == 2, res.output
        assert field in " ".join(res.output.split()) and "Traceback" not in res.output
    res = runner.invoke(app, ["attack", "run", str(tmp_path / "missing.toml")])
    assert res.exit_code == 2 and "no config file" in res.output


def test_run_resume_adds_seeds_and_refuses_what_it_cannot_resume(tmp_path: Path) -> None:
    cfg = tmp_path / "a.toml"
    cfg.write_text(TINY + f'out_dir = "{tmp_path / "runs"}"\n')
    assert runner.invoke(app, ["attack", "run", str(cfg)]).exit_code == 0
    (run,) = (tmp_path / "runs").iterdir()
    res = runner.invoke(app, ["attack", "run", "--resume", str(run), "--set", "run.seeds=[0,1]"])
    assert res.exit_code == 0, res.output
    assert "2 seed(s)" in res.output and run.name in "".join(res.output.split())
    for args, words in [
        (["--resume", str(run), "--set", "attack.name=nearest-neighbour"], "attack.name"),
        (["--resume", str(tmp_path / "nowhere")], "not a phloem run folder"),
        ([], "give a CONFIG file, or --resume"),
    ]:
        res = runner.invoke(app, ["attack", "run", *args])
        assert res.exit_code == 2, res.output
        assert words in " ".join(res.output.split()) and "Traceback" not in res.output


def test_list_shows_every_kind_of_part() -> None:
    res = runner.invoke(app, ["attack", "list"])
    assert res.exit_code == 0
    for name in ("he6conv", "encoder-decoder", "rmle", "ir_dropout", "lfw-faces"):
        assert name in res.output


def test_help_imports_no_torch() -> None:
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from phloem.cli.app import app\n"
        "for cmd in (['attack'], ['attack', 'run'], ['attack', 'demo'], ['attack', 'list']):\n"
        "    assert CliRunner().invoke(app, [*cmd, '--help']).exit_code == 0\n"
        "print(sorted(m for m in ('torch', 'skimage', 'scipy') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "[]"


def test_sweep_runs_every_combination_then_report_prints_a_run(tmp_path: Path) -> None:
    cfg = tmp_path / "a.toml"
    cfg.write_text(TINY + f'out_dir = "{tmp_path / "runs"}"\n')
    grid = [
        "--grid",
        "victim.split=relu1,pool1,pool2",
        "--grid",
        "attack.name=mean-image,nearest-neighbour",
    ]
    res = runner.invoke(app, ["attack", "sweep", str(cfg), *grid])
    assert res.exit_code == 0, res.output
    sweeps = list((tmp_path / "runs").glob("sweep-*"))
    assert len(sweeps) == 1
    folder = sweeps[0]
    table = (folder / "sweep.md").read_text().splitlines()
    assert len(table) == 2 + 6 and table[0].startswith("| victim.split | attack.name | ssim")
    assert (folder / "metric-vs-split.png").stat().st_size > 1000
    runs = [p for p in folder.iterdir() if (p / "report.md").is_file()]
    assert len(runs) == 6
    report = runner.invoke(app, ["attack", "report", str(runs[0])])
    assert report.exit_code == 0 and "definition" in report.output
    missing = runner.invoke(app, ["attack", "report", str(tmp_path)])
    assert missing.exit_code == 2 and "no report.md" in missing.output


def test_a_bad_grid_value_fails_before_anything_runs(tmp_path: Path) -> None:
    cfg = tmp_path / "a.toml"
    cfg.write_text(TINY + f'out_dir = "{tmp_path / "runs"}"\n')
    res = runner.invoke(app, ["attack", "sweep", str(cfg), "--grid", "attack.name=mean-image,gan"])
    assert res.exit_code == 2 and "attack.name" in " ".join(res.output.split())
    assert not (tmp_path / "runs").exists()


def test_run_with_the_users_own_folder_of_images(tmp_path: Path) -> None:
    """[aux] name = "folder": the attacker's queries are the user's own image files."""
    from PIL import Image

    folder = tmp_path / "mine"
    folder.mkdir()
    for i in range(40):
        Image.new("L", (20 + i, 30), color=i * 6).save(folder / f"{i}.png")
    cfg = tmp_path / "a.toml"
    text = TINY.replace(
        'name = "noise"\ncount = 20', f'name = "folder"\npath = "{folder}"\ncount = 40'
    )
    cfg.write_text(text + f'out_dir = "{tmp_path / "runs"}"\n')
    res = runner.invoke(app, ["attack", "run", str(cfg)])
    assert res.exit_code == 0, res.output
    missing = runner.invoke(
        app, ["attack", "run", str(cfg), "--set", f"aux.path={tmp_path / 'gone'}"]
    )
    assert missing.exit_code == 2 and "Set `path`" in " ".join(missing.output.split())
