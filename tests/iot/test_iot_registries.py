"""The IoT registries: every component describes itself, unknown names list the known ones,
parameters are frozen and validated, and built components match what they stand for."""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest

import phloem.iot
from phloem.core.errors import ConfigError
from phloem.core.registry import Registry
from phloem.iot.builtin_sources import DnsmasqParams
from phloem.iot.clients import IdentifyParams
from phloem.iot.events import ANCHOR_MODES
from phloem.iot.feature_sets import FEATURE_SETS
from phloem.iot.features import Block, FeatureSpec
from phloem.iot.model_kinds import MODEL_KINDS, LogRegParams, MLPParams
from phloem.iot.models import LogRegClassifier, MLPClassifier
from phloem.iot.protocols import PROTOCOLS, DaySplit
from phloem.iot.protocols.anytime import AnytimeParams
from phloem.iot.protocols.experiment import ExperimentParams
from phloem.iot.protocols.paper import PaperParams
from phloem.iot.protocols.unknown import UnknownParams
from phloem.iot.sources import SOURCES
from phloem.iot.stream import TRACKER_ANCHORS
from phloem.iot.training import TrainParams

REGISTRIES: dict[str, tuple[Registry[Any], str, tuple[str, ...]]] = {
    "sources": (SOURCES, "source", ("pcap", "dnsmasq", "unbound", "ftl", "interface")),
    "protocols": (
        PROTOCOLS,
        "protocol",
        ("temporal", "experiment", "unknown", "anytime", "paper"),
    ),
    "feature sets": (FEATURE_SETS, "features", ("full", "log", "sld")),
    "model kinds": (MODEL_KINDS, "model", ("logreg", "mlp")),
}


@pytest.mark.parametrize("which", sorted(REGISTRIES))
def test_every_builtin_is_registered_described_and_has_frozen_params(which: str) -> None:
    registry, _, builtins = REGISTRIES[which]
    assert set(builtins) <= set(registry.names())
    for entry in registry.entries():
        component = registry.get(entry.name)
        assert entry.description.strip() and "\n" not in entry.description
        assert dataclasses.is_dataclass(component.Params)
        params = component.Params()  # every parameter has a default
        assert component.Params.__dataclass_params__.frozen  # type: ignore[attr-defined]
        built = component(params)
        assert built.params == params
        for f in dataclasses.fields(params):
            with pytest.raises(dataclasses.FrozenInstanceError):
                setattr(params, f.name, getattr(params, f.name))


@pytest.mark.parametrize("which", sorted(REGISTRIES))
def test_unknown_names_name_the_parameter_and_list_the_registered_ones(which: str) -> None:
    registry, field, _ = REGISTRIES[which]
    with pytest.raises(ConfigError) as info:
        registry.get("bogus")
    assert info.value.field == field
    assert info.value.allowed == registry.names()
    for name in registry.names():
        assert repr(name) in str(info.value)


@pytest.mark.parametrize("which", sorted(REGISTRIES))
def test_a_component_refuses_another_components_params(which: str) -> None:
    registry, _, _ = REGISTRIES[which]
    kinds = {registry.get(n).Params for n in registry.names()}
    for name in registry.names():
        component = registry.get(name)
        for other in kinds - {component.Params}:
            with pytest.raises(TypeError, match=re.escape(component.Params.__name__)):
                component(other())


def test_feature_sets_build_the_blocks_they_name() -> None:
    assert FEATURE_SETS.get("full")().spec() == FeatureSpec()
    log = FEATURE_SETS.get("log")().spec()
    assert set(log.blocks) == set(Block) - {Block.STACK, Block.RESOLVER}
    assert FEATURE_SETS.get("sld")().spec().blocks == (Block.SLD,)


def test_model_kinds_default_to_the_classifiers_own_defaults() -> None:
    logreg = MODEL_KINDS.get("logreg")().factory()()
    reference = LogRegClassifier()
    assert isinstance(logreg, LogRegClassifier)
    assert (logreg.C, logreg.balanced, logreg.max_iter) == (
        reference.C,
        reference.balanced,
        reference.max_iter,
    )
    mlp = MODEL_KINDS.get("mlp")().factory()()
    ref = MLPClassifier()
    assert isinstance(mlp, MLPClassifier)
    settings = ("hidden", "lr", "weight_decay", "batch_size", "max_epochs", "patience",
                "val_fraction", "balanced", "seed")  # fmt: skip
    assert [getattr(mlp, s) for s in settings] == [getattr(ref, s) for s in settings]
    # parameters reach the classifier, and each call makes a new one
    factory = MODEL_KINDS.get("mlp")(MLPParams(hidden_units=(8,), seed=3)).factory()
    first, second = factory(), factory()
    assert first is not second and first.hidden == (8,) and first.seed == 3


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: DaySplit(train_until="2023-13-01"), "train_until"),
        (lambda: DaySplit(train_until="20231025"), "train_until"),
        (lambda: DaySplit(test_from="soon"), "test_from"),
        (lambda: DaySplit(test_until=""), "test_until"),
        (lambda: DaySplit(windows_s=()), "windows_s"),
        (lambda: DaySplit(windows_s=(2.0, -1.0)), "windows_s"),
        (lambda: DaySplit(windows_s=(float("nan"),)), "windows_s"),
        (lambda: ExperimentParams(test_fraction=1.0), "test_fraction"),
        (lambda: PaperParams(test_fraction=0.0), "test_fraction"),
        (lambda: UnknownParams(target_false_unknown=1.0), "target_false_unknown"),
        (lambda: AnytimeParams(confidence=0.0), "confidence"),
        (lambda: TrainParams(confidence=1.5), "confidence"),
        (lambda: TrainParams(target_false_unknown=-0.1), "target_false_unknown"),
        (lambda: TrainParams(checkpoints_s=()), "checkpoints_s"),
        (lambda: LogRegParams(C=0.0), "C"),
        (lambda: LogRegParams(max_iter=0), "max_iter"),
        (lambda: MLPParams(hidden_units=()), "hidden_units"),
        (lambda: MLPParams(lr=float("inf")), "lr"),
        (lambda: MLPParams(val_fraction=1.0), "val_fraction"),
        (lambda: MLPParams(patience=0), "patience"),
        (lambda: DnsmasqParams(year=0), "year"),
        (lambda: IdentifyParams(top=0), "top"),
        (lambda: IdentifyParams(window_s=-1.0), "window_s"),
    ],
)
def test_bad_parameters_name_their_field(make: Any, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        make()
    assert info.value.field == field


def test_closed_choices_list_what_is_allowed() -> None:
    with pytest.raises(ConfigError) as info:
        IdentifyParams(anchor="dhcp-first")
    assert info.value.field == "anchor" and info.value.allowed == ANCHOR_MODES
    assert set(TRACKER_ANCHORS) < set(ANCHOR_MODES)


def test_no_library_error_names_a_command_line_option() -> None:
    """Library code raises errors naming its own parameters; only phloem.cli names options."""
    root = Path(phloem.iot.__file__).parent
    offenders = []
    for file in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(file.read_text(), str(file))):
            if not (isinstance(node, ast.Call) and getattr(node.func, "id", "") == "ConfigError"):
                continue
            field = node.args[0] if node.args else None
            name = field.value if isinstance(field, ast.Constant) else ""
            # an option ("--source") or an argument's metavar ("SOURCE"), not a parameter
            if isinstance(name, str) and (
                name.startswith("-") or (name.isupper() and len(name) > 1)
            ):
                offenders.append(f"{file.name}:{node.lineno}: {name}")
            for arg in node.args[1:]:
                text = ast.unparse(arg)
                if re.search(r"--[a-z]", text):
                    offenders.append(f"{file.name}:{node.lineno}: {text}")
    assert offenders == []
