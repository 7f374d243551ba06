"""``phloem spb ...``: list, train, profile, compare and errors through the command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from phloem.cli.app import app

runner = CliRunner()

TINY = """
[model]
name = "lenet"
[data]
name = "digits"
[train]
epochs = 1
batch_size = 64
[spb]
workers = 2
[run]
progress = false
"""


def test_help_imports_no_torch() -> None:
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from phloem.cli.app import app\n"
        "for cmd in (['spb'], ['spb', 'train'], ['spb', 'profile'], ['spb', 'demo'],"
        " ['spb', 'compare'], ['spb', 'list']):\n"
        "    assert CliRunner().invoke(app, [*cmd, '--help']).exit_code == 0\n"
        "print(sorted(m for m in ('torch',) if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "[]"


def test_list_shows_models_plans_and_syncs() -> None:
    res = runner.invoke(app, ["spb", "list"])
    assert res.exit_code == 0
    for name in ("resnet20", "vgg16", "rotating", "dropbp", "freezeout", "subgroup", "ddp"):
        assert name in res.output


def test_train_then_compare_and_resume(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(TINY + f'out_dir = "{tmp_path / "runs"}"\n')
    res = runner.invoke(app, ["spb", "train", str(cfg)])
    assert res.exit_code == 0, res.output
    (run,) = (tmp_path / "runs").iterdir()
    res = runner.invoke(app, ["spb", "compare", str(run)])
    assert res.exit_code == 0 and "static" in res.output
    res = runner.invoke(app, ["spb", "train", "--resume", str(run), "--set", "train.epochs=2"])
    assert res.exit_code == 0, res.output
    assert len((run / "history.jsonl").read_text().splitlines()) == 2


def test_user_mistakes_are_one_line_and_exit_2(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(TINY.replace("workers = 2", "workers = 3"))
    (tmp_path / "binary.toml").write_bytes(b"\x89PNG\x00\x01\xff")
    for args, word in (
        (["spb", "train", str(cfg)], "train.batch_size"),
        (["spb", "train", str(tmp_path / "missing.toml")], "no config file"),
        (["spb", "train"], "CONFIG"),
        (["spb", "profile", "alexnet"], "allowed"),
        (["spb", "profile", "lenet", "--batch-size", "0"], "--batch-size"),
        (["spb", "profile", "lenet", "--batch-size", "100000000"], "GiB"),  # a typo, not OOM
        (["spb", "train", str(tmp_path / "binary.toml")], "not a TOML text file"),
        (["spb", "compare", str(tmp_path)], "not a"),
        (["spb", "train", "--resume", str(tmp_path)], "not a"),
    ):
        res = runner.invoke(app, args)
        assert res.exit_code == 2, (args, res.output)
        assert word in res.output and "Traceback" not in res.output


def test_nproc_must_match_the_workers(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(TINY)
    res = runner.invoke(app, ["spb", "train", str(cfg), "--nproc", "3"])
    assert res.exit_code == 2 and "--nproc" in res.output


def test_profile_writes_the_table_the_scheduler_reads(tmp_path: Path) -> None:
    args = ["spb", "profile", "lenet", "--batch-size", "8", "--repeats", "1"]
    res = runner.invoke(app, [*args, "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    data = json.loads((tmp_path / "profile.json").read_text())
    assert [b["name"] for b in data["blocks"]] == ["conv1", "conv2", "fc1", "fc2", "fc3"]
    assert sum(b["backward_flops"] for b in data["blocks"]) == data["depths"][-1]["backward_flops"]
    assert (tmp_path / "profile.csv").read_text().startswith("kind,name")
