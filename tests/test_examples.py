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


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.toml")), ids=lambda p: p.name)
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
