"""The simulator as an attacker, a careless user and a user with their own data would drive it.

Each case here broke (a traceback, or code run from a file) before it was mended, or guards a
mechanism built for it: forged and damaged checkpoints, run folders that are not, a binary
config, hostile plug-ins, bad numbers, and a data set of 500 per-client files of one's own.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from phloem.cli.app import app
from phloem.core.errors import ConfigError, PhloemError, RunNotFoundError
from phloem.core.rundir import RunDir, list_runs
from phloem.fl.config import load_config
from phloem.fl.experiment import run_experiment
from phloem.fl.record import Checkpoint, Totals

runner = CliRunner()
QUAD = """
[data]
dataset = "quadratic"
num_clients = 6
dim = 4

[algorithm]
name = "diana"

[compressor]
name = "randk"
k = 2

[sampling]
scheme = "full"

[run]
name = "q"
rounds = 3
"""


def _run(tmp_path: Path, *sets: str) -> RunDir:
    path = tmp_path / "q.toml"
    path.write_text(QUAD)
    cfg = load_config(path, [f"run.out_dir={tmp_path / 'runs'}", *sets])
    res = run_experiment(cfg, progress=False)
    assert res.run_dir is not None
    return res.run_dir


class _Payload:
    """Unpickling this runs ``Path.touch(marker)``: what a forged checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[Path]]:
        return (Path.touch, (self.marker,))


def test_a_forged_checkpoint_cannot_run_code_on_resume(tmp_path: Path) -> None:
    rd = _run(tmp_path)
    marker = tmp_path / "owned"
    torch.save(_Payload(marker), rd.checkpoint_path)
    with pytest.raises(PhloemError, match="damaged or not a phloem checkpoint"):
        Checkpoint.load(rd.checkpoint_path)
    assert not marker.exists()
    res = runner.invoke(app, ["fl", "run", "--resume", str(rd.path), "--set", "run.rounds=5"])
    assert res.exit_code == 1 and "cannot resume from this file" in " ".join(res.output.split())
    assert not marker.exists()


def test_a_damaged_or_missing_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    rd = _run(tmp_path)
    whole = rd.checkpoint_path.read_bytes()
    rd.checkpoint_path.write_bytes(whole[: len(whole) // 3])  # a copy cut short
    res = runner.invoke(app, ["fl", "run", "--resume", str(rd.path), "--set", "run.rounds=5"])
    assert res.exit_code == 1 and "damaged" in res.output
    rd.checkpoint_path.unlink()  # killed with -9 before any checkpoint
    res = runner.invoke(app, ["fl", "run", "--resume", str(rd.path), "--set", "run.rounds=5"])
    assert res.exit_code == 2 and "no checkpoint at" in " ".join(res.output.split())
    assert len(rd.history()) == 4  # the history is still there
    with pytest.raises(RunNotFoundError):
        Checkpoint.load(rd.checkpoint_path)


@pytest.mark.parametrize("cmd", [["fl", "run", "--resume"], ["runs", "show"], ["plot"]])
def test_a_path_that_is_not_a_run_folder_is_a_clear_error(cmd: list[str], tmp_path: Path) -> None:
    res = runner.invoke(app, [*cmd, str(tmp_path / "nope")])
    assert res.exit_code == 2
    assert "not a phloem run folder" in " ".join(res.output.split())


def test_checkpoints_written_before_the_refactor_still_load(tmp_path: Path) -> None:
    rd = _run(tmp_path)
    ck = Checkpoint.load(rd.checkpoint_path)
    # as 7f8ae81 wrote them: the class at phloem.fl.simulate, the totals a dict
    old = Checkpoint(ck.round, ck.server, ck.client_states, {"up": 1.0, "down": 2.0})  # type: ignore[arg-type]
    old.totals = {"up": 1.0, "down": 2.0, "samples": 3.0, "wall": 4.0}  # type: ignore[assignment]
    Checkpoint.__module__ = "phloem.fl.simulate"
    try:
        torch.save(old, tmp_path / "old.pt")
    finally:
        Checkpoint.__module__ = "phloem.fl.record"
    back = Checkpoint.load(tmp_path / "old.pt")
    assert back.totals == Totals(1.0, 2.0, 3.0, 4.0) and back.round == ck.round
    assert torch.equal(back.server.x, ck.server.x)


def test_a_config_that_is_not_text_or_not_a_file_is_a_clear_error(tmp_path: Path) -> None:
    binary = tmp_path / "capture.toml"
    binary.write_bytes(bytes(range(256)) * 4)
    res = runner.invoke(app, ["fl", "run", str(binary)])
    assert res.exit_code == 2 and "not a TOML text file" in " ".join(res.output.split())
    res = runner.invoke(app, ["fl", "run", str(tmp_path)])  # a folder
    assert res.exit_code == 2 and "config" in res.output


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("local.lr=nan", "local.lr"),
        ("local.lr=inf", "local.lr"),
        ("server.lr=-0.5", "server"),
        ("data.num_clients=0", "data"),
        ("data.heterogeneity=3.0", "data"),
        ("compressor.k=-2", "compressor"),
        ("sampling.scheme=uniform", "sampling.cohort_size"),  # 10 by default, 6 clients
        ("algorithm.name=[1, 2]", "algorithm.name"),
        ("algorithm.params=1", "algorithm.params"),
        ("aggregation.dropout_stage=done", "aggregation.dropout_stage"),
        ("aggregation.clip=4.0", "aggregation.clip"),  # a key of secagg, not of plain
    ],
)
def test_careless_values_name_the_field_and_never_trace_back(
    override: str, field: str, tmp_path: Path
) -> None:
    path = tmp_path / "q.toml"
    path.write_text(QUAD)
    res = runner.invoke(
        app, ["fl", "run", str(path), "--set", override, "--set", f"run.out_dir={tmp_path}"]
    )
    assert res.exit_code == 2, res.output
    assert f"config field '{field}" in " ".join(res.output.split())
    assert "Traceback" not in res.output


def test_a_hostile_plugin_cannot_replace_a_builtin(tmp_path: Path) -> None:
    (tmp_path / "evil_plugin.py").write_text(
        "from dataclasses import dataclass\n"
        "from typing import ClassVar\n"
        "from phloem.fl.algorithms.fedavg import FedAvg\n"
        "from phloem.fl.registries import ALGORITHMS\n"
        "@ALGORITHMS.register\n"
        "@dataclass(frozen=True)\n"
        "class Evil(FedAvg):\n"
        "    name: ClassVar[str] = 'fedavg'\n"
    )
    code = (
        "from phloem.core.registry import plugin_errors\n"
        "from phloem.fl.registries import ALGORITHMS\n"
        "assert ALGORITHMS.get('fedavg').__module__ == 'phloem.fl.algorithms.fedavg'\n"
        "print(plugin_errors())\n"
    )
    env = {
        **os.environ,
        "PHLOEM_PLUGINS": "evil_plugin",
        "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path]),
    }
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "evil_plugin" in res.stdout and "already registered" in res.stdout


def test_a_users_own_data_set_of_500_client_files(tmp_path: Path) -> None:
    """A data set phloem does not ship: one CSV file per client (features, then the label),
    read by a data set the user registers, split by its natural owners."""
    folder = tmp_path / "clients"
    folder.mkdir()
    rng = np.random.default_rng(0)
    w = rng.normal(size=5)
    for i in range(500):
        x = rng.normal(i % 7 - 3, 1.0, size=(int(rng.integers(4, 30)), 5))
        y = (x @ w > 0).astype(int)
        np.savetxt(folder / f"client-{i:03d}.csv", np.column_stack([x, y]), delimiter=",")
    (tmp_path / "csv_clients.py").write_text(CSV_PLUGIN)
    sys.path.insert(0, str(tmp_path))
    try:
        import csv_clients  # noqa: F401
    finally:
        sys.path.remove(str(tmp_path))
    cfg = load_config(
        None,
        [],
        {
            "data": {"dataset": "csv-clients", "path": str(folder), "partition": "natural"},
            "sampling": {"scheme": "uniform", "cohort_size": 25},
            "run": {"rounds": 4, "out_dir": str(tmp_path / "runs"), "name": "own"},
        },
    )
    res = run_experiment(cfg, progress=False)
    rows = res.history.rows
    assert rows[-1]["clients"] == 25 and len(rows) == 5
    assert rows[-1]["test_acc"] > 0.7  # type: ignore[operator]
    assert len(list_runs(tmp_path / "runs")) == 1
    # the same folder with a damaged file names that file
    (folder / "client-250.csv").write_text("1,2,x\n")
    with pytest.raises(ConfigError, match=r"client-250\.csv"):
        run_experiment(cfg, progress=False)


CSV_PLUGIN = """
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from phloem.core.errors import ConfigError
from phloem.data.dataset import ArrayDataset, TrainTest
from phloem.data.datasets import Dataset
from phloem.data.registries import DATASETS


@dataclass(frozen=True)
class CsvParams:
    path: str = "."


@DATASETS.register
class CsvClients(Dataset):
    name: ClassVar[str] = "csv-clients"
    description: ClassVar[str] = "a folder of per-client CSV files (features, label)"
    Params: ClassVar[type[CsvParams]] = CsvParams
    has_owners: ClassVar[bool] = True

    @classmethod
    def load(cls, params, *, num_clients, rng):
        xs, ys, owners = [], [], []
        for i, f in enumerate(sorted(Path(params.path).glob("*.csv"))):
            try:
                rows = np.loadtxt(f, delimiter=",", ndmin=2)
            except ValueError as e:
                raise ConfigError("data.path", f"{f}: {e}") from None
            xs.append(rows[:, :-1])
            ys.append(rows[:, -1].astype(np.int64))
            owners.append(np.full(len(rows), i))
        x, y, g = np.concatenate(xs).astype(np.float32), np.concatenate(ys), np.concatenate(owners)
        test = rng.random(len(y)) < 0.2
        train = ArrayDataset(x[~test], y[~test], 2, g[~test])
        return TrainTest("csv-clients", train, ArrayDataset(x[test], y[test], 2))
"""
