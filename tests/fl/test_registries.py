"""Every part of an experiment registers itself; configs pick parts by name and take their keys."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from phloem.core.config import from_dict, to_dict
from phloem.core.errors import ConfigError
from phloem.core.registry import NoParams, Registry
from phloem.data.registries import DATASETS, PARTITIONS
from phloem.fl import registries as reg
from phloem.fl.algorithms.base import Cohort, Uplink, WeightedAggregate, weighted_sum
from phloem.fl.config import ExperimentConfig, load_config
from phloem.fl.experiment import build_experiment, theory_step
from phloem.fl.record import RoundRecord, Totals
from phloem.fl.secure import DecodedAggregate

HERE = Path(__file__).resolve().parent
ALL: dict[str, Registry[Any]] = {
    "algorithm": reg.ALGORITHMS,
    "compressor": reg.COMPRESSORS,
    "sampler": reg.SAMPLERS,
    "server": reg.SERVER_OPTIMIZERS,
    "local": reg.LOCAL_SOLVERS,
    "model": reg.MODELS,
    "aggregation": reg.AGGREGATIONS,
    "dataset": DATASETS,
    "partition": PARTITIONS,
}
QUAD = {
    "data": {"dataset": "quadratic", "num_clients": 6, "dim": 5},
    "local": {"solver": "full"},
    "sampling": {"scheme": "full"},
    "run": {"rounds": 3},
}


@pytest.mark.parametrize("kind", sorted(ALL))
def test_every_registered_part_declares_itself(kind: str) -> None:
    registry = ALL[kind]
    assert len(registry) >= 2
    for name in registry.names():
        part = registry.get(name)
        assert part.name == name
        assert part.description.strip()
        assert dataclasses.is_dataclass(part.Params)
        assert part.Params.__dataclass_params__.frozen
        part.Params(**getattr(part, "fixed_params", {}))  # the defaults are valid


def test_the_built_in_parts() -> None:
    assert set(reg.ALGORITHMS.names()) >= {
        "fedavg",
        "fedprox",
        "scaffold",
        "dcgd",
        "diana",
        "marina",
        "ef21",
    }
    assert set(reg.COMPRESSORS.names()) >= {"none", "identity", "randk", "topk", "qsgd"}
    assert reg.AGGREGATIONS.names()[:3] == ("plain", "secagg", "secagg+")


def test_an_unknown_name_lists_the_registered_ones() -> None:
    for section, key, registry in (
        ("algorithm", "name", reg.ALGORITHMS),
        ("data", "partition", PARTITIONS),
        ("sampling", "scheme", reg.SAMPLERS),
    ):
        with pytest.raises(ConfigError) as e:
            from_dict(ExperimentConfig, {section: {key: "nope"}})
        assert e.value.field == f"{section}.{key}"
        assert e.value.allowed == registry.names()


def test_a_key_of_another_part_is_refused_naming_its_owner() -> None:
    with pytest.raises(ConfigError) as e:
        from_dict(ExperimentConfig, {"algorithm": {"name": "fedavg", "alpha": 0.5}})
    assert e.value.field == "algorithm.alpha"
    assert "(a key of algorithm 'cofig', 'diana'" in str(e.value)  # and of feddyn, frecon
    assert e.value.allowed == ("name",)
    with pytest.raises(ConfigError, match=r"data\.dim.*a key of data set 'quadratic'"):
        from_dict(ExperimentConfig, {"data": {"dataset": "digits", "dim": 3}})
    with pytest.raises(ConfigError, match=r"compressor\.levels.*'qsgd'"):
        from_dict(ExperimentConfig, {"compressor": {"name": "randk", "levels": 3}})


def test_switching_a_part_by_override_drops_the_old_parts_keys(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[algorithm]\nname = "diana"\nalpha = 0.5\n[compressor]\nname = "qsgd"\n')
    assert load_config(path).algorithm.params.alpha == 0.5
    dcgd = load_config(path, ["algorithm.name=dcgd"])
    assert dcgd.algorithm.name == "dcgd" and dcgd.algorithm.params == NoParams()
    # a key set by the override itself is still checked
    with pytest.raises(ConfigError, match=r"algorithm\.alpha"):
        load_config(path, ["algorithm.name=dcgd", "algorithm.alpha=0.5"])
    # switching to a part that has the key keeps it
    path.write_text('[compressor]\nname = "randk"\nk = 3\n')
    assert load_config(path, ["compressor.name=topk"]).compressor.params.k == 3


def test_configs_written_before_parts_had_their_own_keys_still_load() -> None:
    # what `to_toml(to_dict(cfg))` wrote into a run folder at 7f8ae81 (sections held every key)
    old = {
        "data": {
            "dataset": "quadratic",
            "libsvm_name": "a9a",
            "num_clients": 8,
            "partition": "dirichlet",
            "alpha": 0.5,
            "shards_per_client": 2,
            "min_client_size": 1,
            "test_fraction": 0.2,
            "dim": 6,
            "L": 1.0,
            "mu": 0.1,
            "heterogeneity": 1.0,
            "syn_alpha": 0.5,
            "syn_beta": 0.5,
        },
        "model": {"name": "logistic", "hidden": [64], "l2": 0.0, "dtype": "float32"},
        "algorithm": {"name": "diana", "mu": 0.01},
        "compressor": {"name": "randk", "k": 2, "levels": 4, "p": 0.5, "scaled": False},
        "local": {"solver": "sgd", "lr": 0.1, "batch_size": 32, "epochs": 1},
        "server": {
            "optimizer": "sgd",
            "lr": 0.3,
            "lr_rule": "fixed",
            "lr_scale": 1.0,
            "momentum": 0.0,
            "beta1": 0.9,
            "beta2": 0.99,
            "eps": 0.001,
        },
        "sampling": {"scheme": "full", "cohort_size": 10, "rate": 0.1},
        "aggregation": {"name": "plain", "dropout": 0.0, "dropout_stage": "any", "clip": 8.0},
        "run": {"name": "quad", "rounds": 4},
    }
    with pytest.raises(ConfigError):
        load_config(None, [], old)
    cfg = load_config(None, [], old, strict=False)
    assert cfg.data.dataset_params.dim == 6 and cfg.compressor.params.k == 2
    assert cfg.server.lr == 0.3 and cfg.algorithm.name == "diana"
    # only keys that belong to *some* registered part are forgiven
    with pytest.raises(ConfigError, match=r"algorithm\.nonsense"):
        load_config(None, [], {"algorithm": {"name": "fedavg", "nonsense": 1}}, strict=False)


def test_every_algorithm_and_compressor_builds_and_runs_from_a_config() -> None:
    for name in reg.ALGORITHMS.names():
        exp = build_experiment(load_config(None, [], {**QUAD, "algorithm": {"name": name}}))
        assert exp.algorithm.name == name
    for entry in reg.COMPRESSORS.entries():
        section: dict[str, object] = {"name": entry.name}
        if "k" in dict(entry.params):
            section["k"] = 2
        cfg = load_config(None, [], {**QUAD, "compressor": section, "algorithm": {"name": "dcgd"}})
        comp = build_experiment(cfg).algorithm.compressor
        assert (comp is None) == (entry.name == "none")


def test_theory_steps_are_methods_of_the_algorithms() -> None:
    with_rule = {n for n in reg.ALGORITHMS.names() if reg.ALGORITHMS.get(n).has_theory_step()}
    assert with_rule >= {"dcgd", "diana", "marina", "ef21", "fedavg", "scaffold"}
    assert "fedprox" not in with_rule
    exp = build_experiment(load_config(None, [], {**QUAD, "algorithm": {"name": "fedprox"}}))
    with pytest.raises(ConfigError, match="no theory step size for fedprox") as e:
        theory_step(exp.algorithm, exp.problem)
    assert set(e.value.allowed or ()) == with_rule


@dataclasses.dataclass(frozen=True)
class Pair(Uplink):
    a: torch.Tensor
    b: torch.Tensor


def test_uplinks_flatten_by_field_and_both_aggregates_weigh_alike() -> None:
    rng = np.random.default_rng(0)
    ups = [
        Pair(torch.tensor(rng.normal(size=3)), torch.tensor(rng.normal(size=(2, 2))))
        for _ in range(4)
    ]
    flat = ups[0].flatten()
    assert flat.shape == (7,) and torch.equal(flat[:3], ups[0].a)
    back = ups[0].unflatten(flat.numpy())
    assert torch.equal(back.a, ups[0].a) and torch.equal(back.b, ups[0].b)
    with pytest.raises(ValueError, match="holds 7 entries"):
        ups[0].unflatten(np.zeros(8))
    w = np.array([0.1, 0.2, 0.3, 0.15])
    plain = WeightedAggregate(ups, Cohort(np.arange(4), w, 10))
    exact_mean = sum(wi * u.b for wi, u in zip(w / w.sum(), ups, strict=True))
    assert torch.allclose(plain.mean(lambda u: u.b), exact_mean)
    assert torch.allclose(plain.total(lambda u: u.b), exact_mean * w.sum())
    mean_up = Pair(plain.mean(lambda u: u.a), plain.mean(lambda u: u.b))
    decoded = DecodedAggregate(mean_up, float(w.sum()))
    assert torch.equal(decoded.mean(lambda u: u.a), mean_up.a)
    assert torch.equal(decoded.total(lambda u: u.a), weighted_sum([mean_up.a], w.sum()[None]))


def test_a_round_row_has_its_columns_in_one_order() -> None:
    t = Totals(up=64.0, down=32.0, samples=5.0, wall=0.5)
    row = RoundRecord(3, 2, t, up_bits=8.0, train_loss=0.25, round_s=0.1, num_clients=4).row()
    assert list(row) == [
        "round",
        "clients",
        "train_loss",
        "up_bits",
        "down_bits",
        "cum_up_bits",
        "cum_down_bits",
        "cum_bits",
        "bits_per_client",
        "oracle_samples",
        "cum_oracle_samples",
        "round_s",
        "wall_s",
    ]
    assert row["cum_bits"] == 96.0 and row["bits_per_client"] == 16.0
    assert "train_loss" not in RoundRecord(0, 0, Totals()).row()


def _python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_command_line_and_configs_import_no_torch_and_exports_resolve() -> None:
    code = (
        "import sys, phloem, phloem.cli.app, phloem.fl.config, phloem.fl.registries\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
        "import phloem.fl as fl, phloem.fl.simulate\n"
        "from phloem.fl import simulate\n"
        "assert callable(simulate) and simulate.__module__ == 'phloem.fl.simulate'\n"
        "missing = [n for n in fl.__all__ if getattr(fl, n, None) is None]\n"
        "assert not missing, missing\n"
    )
    res = _python(code)
    assert res.returncode == 0, res.stderr


def test_to_dict_puts_a_parts_keys_beside_its_name() -> None:
    cfg = load_config(None, [], {"compressor": {"name": "randk", "ratio": 0.5}})
    assert to_dict(cfg)["compressor"] == {"name": "randk", "k": None, "ratio": 0.5, "scaled": False}
