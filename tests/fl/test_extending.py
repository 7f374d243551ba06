"""docs/extending.md, checked: a plug-in module registers an algorithm and a compressor that
phloem does not ship, and configs, the library and the command line use them by name."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from phloem.cli.app import app
from phloem.core.registry import PLUGINS_ENV
from phloem.fl.config import load_config
from phloem.fl.experiment import run_experiment
from phloem.fl.registries import ALGORITHMS, COMPRESSORS

HERE = Path(__file__).resolve().parent
CONFIG = """
[data]
dataset = "quadratic"
num_clients = 8
dim = 6

[algorithm]
name = "{algorithm}"

[compressor]
name = "{compressor}"

[local]
solver = "full"

[sampling]
scheme = "full"

[server]
lr = {lr}

[run]
name = "plugin"
rounds = {rounds}
full_eval = true
"""


def _import_plugin() -> None:
    sys.path.insert(0, str(HERE))
    try:
        import plugin_signsgd  # noqa: F401
    finally:
        sys.path.remove(str(HERE))


def test_a_plugin_module_registers_parts_that_configs_pick_by_name(tmp_path: Path) -> None:
    _import_plugin()
    assert "signsgd" in ALGORITHMS.names() and "scaled-sign" in COMPRESSORS.names()
    path = tmp_path / "c.toml"
    path.write_text(CONFIG.format(algorithm="signsgd", compressor="none", lr=0.05, rounds=60))
    cfg = load_config(path, ["algorithm.vote=true"])
    assert cfg.algorithm.params.vote is True
    res = run_experiment(cfg, root=tmp_path / "runs", progress=False)
    rows = res.history.rows
    assert rows[-1]["dist_to_opt"] < rows[0]["dist_to_opt"]  # type: ignore[operator]
    assert rows[1]["up_bits"] == 8 * 6  # one bit per coordinate, eight clients
    # the compressor works with the methods that need a contractive one, theory included
    path.write_text(CONFIG.format(algorithm="ef21", compressor="scaled-sign", lr=0.1, rounds=600))
    ef21 = run_experiment(
        load_config(path, ["server.lr_rule=theory"]), root=tmp_path / "runs", progress=False
    ).history.rows
    # the theorem's step for alpha = 1/d: slow, but linear convergence
    assert ef21[-1]["dist_to_opt"] < 0.05 * ef21[0]["dist_to_opt"]  # type: ignore[operator]
    listing = CliRunner().invoke(app, ["fl", "list"])
    assert "signsgd" in listing.output and "scaled-sign" in listing.output


def test_the_command_line_loads_plugins_named_in_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(CONFIG.format(algorithm="signsgd", compressor="none", lr=0.05, rounds=3))
    cmd = [sys.executable, "-m", "phloem.cli.app", "fl", "run", str(path), "--no-progress"]
    cmd += ["--set", f"run.out_dir={tmp_path / 'runs'}"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path])}
    ok = subprocess.run(
        cmd, env={**env, PLUGINS_ENV: "plugin_signsgd"}, capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stderr
    missing = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert missing.returncode == 2 and "unknown algorithm 'signsgd'" in missing.stderr
    # a broken plug-in: phloem still runs (help, other parts), and says which and why
    broken = {**env, PLUGINS_ENV: "no_such_plugin"}
    res = subprocess.run(cmd, env=broken, capture_output=True, text=True)
    text = " ".join(res.stderr.split())
    assert res.returncode == 2 and "unknown algorithm 'signsgd'" in text
    assert "plug-in module 'no_such_plugin'" in text and "ModuleNotFoundError" in text
    helps = [sys.executable, "-m", "phloem.cli.app", "fl", "--help"]
    res = subprocess.run(helps, env=broken, capture_output=True, text=True)
    assert res.returncode == 0 and "warning: plug-in module 'no_such_plugin'" in res.stderr


@pytest.mark.parametrize("bad", ["fedavg", "randk"])
def test_a_plugin_cannot_take_a_builtin_name(bad: str) -> None:
    from dataclasses import dataclass
    from typing import ClassVar

    from phloem.fl.algorithms.fedavg import FedAvg

    registry = ALGORITHMS if bad == "fedavg" else COMPRESSORS

    @dataclass(frozen=True)
    class Impostor(FedAvg):
        name: ClassVar[str] = bad

    with pytest.raises(ValueError, match="already registered"):
        registry.register(Impostor)
