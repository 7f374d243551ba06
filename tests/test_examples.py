"""Every example and shipped config runs (smoke tests with few rounds)."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

from phloem.core.config import from_dict, load_toml
from phloem.fl.config import ExperimentConfig

ROOT = Path(__file__).resolve().parents[1]


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def test_quadratic_compression_example(tmp_path: Path) -> None:
    final = load("quadratic_compression").main(400, tmp_path / "q.png")
    assert (tmp_path / "q.png").is_file()
    assert final["DIANA + Rand-5"] < 1e-3 < final["DCGD + Rand-5"]


def test_digits_process_example() -> None:
    assert load("digits_fedavg_process").main(12) > 0.5


FL_CONFIGS = sorted(
    p
    for p in (ROOT / "configs").glob("*.toml")
    if not p.name.startswith(("attack_", "spb_", "jigsaw_"))
)
JIGSAW_CONFIGS = sorted((ROOT / "configs").glob("jigsaw_*.toml"))
SPB_CONFIGS = sorted((ROOT / "configs").glob("spb_*.toml"))
ATTACK_CONFIGS = sorted((ROOT / "configs").glob("attack_*.toml"))


@pytest.mark.parametrize("path", ATTACK_CONFIGS, ids=lambda p: p.name)
def test_shipped_attack_configs_validate(path: Path) -> None:
    """``attack_*.toml`` are ``phloem attack run`` configs; the demo's is the built-in one."""
    import dataclasses
    import tomllib

    from phloem.attacks.demo import DEMO
    from phloem.attacks.experiment import ExperimentConfig as AttackConfig
    from phloem.attacks.experiment import load_config

    cfg = load_config(path)
    if path.name == "attack_demo.toml":
        builtin = from_dict(AttackConfig, tomllib.loads(DEMO))
        assert dataclasses.replace(cfg, run=builtin.run) == builtin


@pytest.mark.parametrize("path", FL_CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_validate(path: Path, data_file: Callable[[str], Path]) -> None:
    cfg = from_dict(ExperimentConfig, load_toml(path))
    if cfg.data.dataset == "libsvm":
        data_file(f"libsvm/{cfg.data.dataset_params.libsvm_name}.gz")
    from phloem.fl.experiment import run_experiment

    short = from_dict(ExperimentConfig, {**load_toml(path), "run": {"rounds": 2, "name": "t"}})
    res = run_experiment(
        short, root=Path(pytest.importorskip("tempfile").mkdtemp()), progress=False
    )
    assert res.status == "finished"


@pytest.mark.parametrize("path", SPB_CONFIGS, ids=lambda p: p.name)
def test_shipped_spb_configs_run(
    path: Path, tmp_path: Path, data_file: Callable[[str], Path]
) -> None:
    """``spb_*.toml`` are ``phloem spb train`` configs: one epoch on a slice of their data."""
    from phloem.spb.config import load_config
    from phloem.spb.train import train

    cfg = load_config(path)
    data_file(
        {
            "mnist": "mnist/train-images-idx3-ubyte.gz",
            "cifar10": "cifar10_jpeg/cifar10_jpeg.npz",
        }[cfg.data_name]
    )
    short = load_config(
        path,
        [
            "train.epochs=1",
            "data.limit_train=512",
            "data.limit_test=200",
            f"run.out_dir={tmp_path}",
            "run.progress=false",
        ],
    )
    assert train(short).summary["status"] == "finished"


def test_spb_example() -> None:
    out = load("spb_partial_backprop").main()
    assert out["half-depth backward FLOPs share"] < 0.5
    assert out["max gradient difference at full depth"] < 1e-6


@pytest.mark.parametrize("path", JIGSAW_CONFIGS, ids=lambda p: p.name)
def test_shipped_jigsaw_configs_validate(path: Path) -> None:
    """``jigsaw_*.toml`` are ``phloem jigsaw simulate`` configs."""
    from phloem.jigsaw.config import load_config

    cfg = load_config(path)
    assert cfg.run.name.startswith("jigsaw")


def test_shipped_jigsaw_pollux_config_runs(
    tmp_path: Path, data_file: Callable[[str], Path]
) -> None:
    from phloem.jigsaw.config import load_config
    from phloem.jigsaw.run import run_simulation

    root = data_file("traces/pollux/workloads-2.0/workload-1.csv").parents[3]
    cfg = load_config(ROOT / "configs" / "jigsaw_pollux.toml",
                      [f"run.out_dir={str(tmp_path)!r}", "run.progress=false"])  # fmt: skip
    r = run_simulation(cfg, data_dir=root)
    assert r.metrics.jobs == 320 == r.metrics.finished and r.run_dir is not None


def test_jigsaw_example(tmp_path: Path) -> None:
    out = load("jigsaw_policies").main(tmp_path)
    assert set(out) == {"tiresias", "jigsaw"}
    assert out["jigsaw"]["spb_job_s"] > 0
