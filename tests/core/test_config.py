"""Config validation: unknown keys, wrong types and closed choices give errors naming the field."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from phloem.core.config import (
    apply_overrides,
    from_dict,
    load_toml,
    parse_override,
    to_dict,
    to_toml,
)
from phloem.core.errors import ConfigError
from phloem.fl.config import ExperimentConfig


def test_defaults_and_round_trip_through_toml(tmp_path: Path) -> None:
    cfg = from_dict(
        ExperimentConfig,
        {"algorithm": {"name": "diana"}, "model": {"name": "mlp", "hidden": [32, 16]}},
    )
    assert cfg.algorithm.name == "diana"
    assert cfg.model.params.hidden == (32, 16)
    text = to_toml(to_dict(cfg))
    back = from_dict(ExperimentConfig, tomllib.loads(text))
    assert back == cfg
    p = tmp_path / "c.toml"
    p.write_text(text)
    assert from_dict(ExperimentConfig, load_toml(p)) == cfg


def test_unknown_algorithm_lists_the_allowed_ones() -> None:
    with pytest.raises(ConfigError) as e:
        from_dict(ExperimentConfig, {"algorithm": {"name": "fedsgdx"}})
    assert e.value.field == "algorithm.name"
    assert "fedavg" in str(e.value) and "ef21" in str(e.value) and "fedsgdx" in str(e.value)


def test_unknown_key_lists_the_known_keys() -> None:
    with pytest.raises(ConfigError, match=r"local\.learning_rate.*unknown key.*'lr'"):
        from_dict(ExperimentConfig, {"local": {"learning_rate": 0.1}})
    with pytest.raises(ConfigError, match=r"'bogus'.*unknown key.*'algorithm'"):
        from_dict(ExperimentConfig, {"bogus": {}})


@pytest.mark.parametrize(
    ("data", "field", "fragment"),
    [
        ({"local": {"lr": "fast"}}, "local.lr", "expected a number"),
        ({"run": {"rounds": 2.5}}, "run.rounds", "expected an integer"),
        ({"run": {"full_eval": "yes"}}, "run.full_eval", "true or false"),
        ({"model": {"name": "mlp", "hidden": 64}}, "model.hidden", "expected a list"),
        ({"local": {"lr": -1.0}}, "local", "local.lr must be positive"),
        ({"data": {"dataset": "quadratic", "mu": 2.0, "L": 1.0}}, "data", "must not exceed"),
        ({"data": "digits"}, "data", "expected a table"),
    ],
)
def test_wrong_types_and_values_name_the_field(data: dict, field: str, fragment: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ConfigError) as e:
        from_dict(ExperimentConfig, data)
    assert e.value.field == field
    assert fragment in str(e.value)


def test_overrides_parse_toml_literals_and_bare_strings() -> None:
    assert parse_override("local.lr=0.05") == (["local", "lr"], 0.05)
    assert parse_override("model.hidden=[8, 8]") == (["model", "hidden"], [8, 8])
    assert parse_override("algorithm.name=diana") == (["algorithm", "name"], "diana")
    out = apply_overrides({"local": {"lr": 1.0}}, ["local.lr=0.5", "run.rounds=3"])
    assert out == {"local": {"lr": 0.5}, "run": {"rounds": 3}}
    with pytest.raises(ConfigError, match=r"section\.key=value"):
        parse_override("nonsense")
    with pytest.raises(ConfigError, match="is a value, not a section"):
        apply_overrides({"run": {"rounds": 3}}, ["run.rounds.x=1"])


def test_bad_toml_names_the_file(tmp_path: Path) -> None:
    p = tmp_path / "bad.toml"
    p.write_text("[data\nx=")
    with pytest.raises(ConfigError, match=r"bad\.toml is not valid TOML"):
        load_toml(p)
    with pytest.raises(ConfigError, match="no config file"):
        load_toml(tmp_path / "absent.toml")


@dataclass(frozen=True)
class _Recipe:
    lr: float = 0.1

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise ConfigError("train.lr", f"{self.lr}; needs a number > 0")


@dataclass(frozen=True)
class _Part:
    train: _Recipe = field(default_factory=_Recipe)
    finetune: _Recipe | None = None


@dataclass(frozen=True)
class _Whole:
    victim: _Part = field(default_factory=_Part)


def test_a_nested_dataclass_error_names_the_key_where_the_user_wrote_it() -> None:
    """A section's own check names its bare field ("lr", or "train.lr" as a library error);
    from_dict reports it at its place in the config, however deep."""
    for key in ("train", "finetune"):
        with pytest.raises(ConfigError) as err:
            from_dict(_Whole, {"victim": {key: {"lr": -1.0}}})
        assert err.value.field == f"victim.{key}.lr"
    assert from_dict(_Whole, {"victim": {"finetune": {"lr": 0.5}}}).victim.finetune == _Recipe(0.5)
