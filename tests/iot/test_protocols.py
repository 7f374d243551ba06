"""Evaluation protocols as library classes: each run against the evaluate functions it stands
for (called directly, the obvious reference), on the small synthetic corpus of iot_synth."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from iot_synth import HIERARCHY, corpus

from phloem.core.errors import ConfigError
from phloem.core.registry import NoParams
from phloem.iot.evaluate import (
    evaluate_anytime,
    evaluate_windows,
    experiment_split,
    leave_one_device_out,
    temporal_split_events,
    unseen_devices,
)
from phloem.iot.events import Event
from phloem.iot.feature_sets import FEATURE_SETS
from phloem.iot.identify import Identifier
from phloem.iot.model_kinds import MODEL_KINDS
from phloem.iot.protocols import (
    PROTOCOLS,
    EvaluationProtocol,
    ProtocolReport,
    ScoreTable,
    Setup,
    Strong,
    run_protocol,
)
from phloem.iot.protocols.anytime import AnytimeParams
from phloem.iot.protocols.experiment import ExperimentParams
from phloem.iot.protocols.paper import PaperParams
from phloem.iot.protocols.reports import UnknownReport, WindowsReport
from phloem.iot.protocols.temporal import TemporalParams
from phloem.iot.protocols.unknown import UnknownParams

GROUPS = {"manufacturer": {d: m for d, (m, _) in HIERARCHY.items()},
          "category": {d: c for d, (_, c) in HIERARCHY.items()}}  # fmt: skip
DAYS = 4  # 2023-10-19..22
SPLIT = {"train_until": "2023-10-21", "test_until": "2023-10-22"}


def run(name: str, params: Any, events: list[Event], features: str = "full") -> Any:
    protocol = PROTOCOLS.get(name)(params)
    kinds = (FEATURE_SETS.get(features)(), MODEL_KINDS.get("logreg")())
    return run_protocol(protocol, *kinds, events=events, hierarchy=HIERARCHY)


def test_temporal_scores_the_later_days_as_evaluate_windows_does() -> None:
    events = corpus(per_day=4, days=DAYS)
    # a device seen only on the test day is left out and listed
    newcomer = Event("new-mac", 0.0, events[0].queries, "newcomer", "new-0", "2023-10-22")
    result = run("temporal", TemporalParams(windows_s=(0.0, 10.0), **SPLIT), [*events, newcomer])
    report = result.report
    assert isinstance(report, WindowsReport)
    train, test = temporal_split_events(events, until="2023-10-21")
    preds: dict[str, tuple[list[str], list[str]]] = {}
    expected = evaluate_windows(train, test, windows=(0.0, 10.0), groups=GROUPS, predictions=preds)
    assert list(report.scores) == expected
    assert report.predictions == preds and report.n_train == len(train)
    assert report.left_out == ("newcomer",)
    assert report.notes() == ("devices not in training, left out: newcomer",)
    assert report.split == "train 2023-10-19..2023-10-21, test days 2023-10-22"
    assert result.title == f"temporal: full features, logreg; {report.split}"
    # the JSON form is the scores' fields, NaN kept as NaN
    doc = result.to_dict()
    assert doc["protocol"] == "temporal" and doc["split"] == report.split
    assert doc["scores"] == [asdict(s) for s in expected]
    table = report.table()
    assert len(table.rows) == len(expected) and len(table.columns) == len(table.rows[0])


def test_day_split_picks_the_test_days_and_describes_them() -> None:
    events = corpus(days=7, per_day=1)  # 2023-10-19..25
    split = TemporalParams(train_until="2023-10-19", test_from="2023-10-21").split(events)
    assert {e.day for e in split.train} == {"2023-10-19"}
    assert sorted({e.day for e in split.test}) == [f"2023-10-{d}" for d in range(21, 26)]
    assert split.description == "train 2023-10-19..2023-10-19, test days 2023-10-21..2023-10-25"
    with pytest.raises(ConfigError) as info:
        TemporalParams(train_until="2023-11-30").split(events)
    assert info.value.field == "train_until" and "empty train or test set" in str(info.value)
    with pytest.raises(ConfigError) as info:
        TemporalParams(train_until="2023-10-20", test_from="2023-10-27").split(events)
    assert info.value.field == "test_until"


def test_experiment_split_keeps_experiments_apart_as_experiment_split_does() -> None:
    events = corpus(per_day=4, days=DAYS)
    p = ExperimentParams(test_until="2023-10-21", windows_s=(0.0,), seed=2)
    report = run("experiment", p, events).report
    kept = [e for e in events if e.day <= "2023-10-21"]
    train, test = experiment_split(kept, 0.3, seed=2)
    assert list(report.scores) == evaluate_windows(train, test, windows=(0.0,), groups=GROUPS)
    assert report.split == "experiment split of all captures up to 2023-10-21"


def test_paper_is_paper_rows_per_window(monkeypatch: pytest.MonkeyPatch) -> None:
    # paper_rows itself (an MLP on rows) is tested in test_evaluate; here: what it is given
    calls: list[tuple[int, float, int, float]] = []

    def spy(events: list[Event], window_s: float, *, seed: int, test_fraction: float) -> float:
        calls.append((len(events), window_s, seed, test_fraction))
        return window_s / 100

    monkeypatch.setattr("phloem.iot.evaluate.paper_rows", spy)
    events = corpus(days=DAYS)
    p = PaperParams(test_until="2023-10-20", windows_s=(0.0, 10.0), seed=1, test_fraction=0.25)
    report = run("paper", p, events).report
    n = sum(e.day <= "2023-10-20" for e in events)
    assert calls == [(n, 0.0, 1, 0.25), (n, 10.0, 1, 0.25)]
    assert [(s.window_s, s.row_accuracy) for s in report.scores] == [(0.0, 0.0), (10.0, 0.1)]
    assert report.table().rows == (("0", "0.000"), ("10", "0.100"))
    assert report.split == "paper split of all captures up to 2023-10-20"


def test_unknown_holds_each_device_out_and_means_each_window() -> None:
    events = corpus(per_day=6, days=DAYS)
    p = UnknownParams(windows_s=(10.0,), target_false_unknown=0.05, **SPLIT)
    report = run("unknown", p, events).report
    assert isinstance(report, UnknownReport)
    train, test = temporal_split_events(events, until="2023-10-21")
    assert list(report.scores) == leave_one_device_out(train, test, 10.0, target_false_unknown=0.05)
    (*rows, mean) = report.table().rows
    assert len(rows) == len(HIERARCHY) and isinstance(mean[1], Strong) and mean[1] == "mean"
    expected = np.mean([s.unknown_flagged for s in report.scores])
    assert mean[2] == f"{expected:.3f}"


def test_unknown_scores_the_test_days_new_devices_when_there_are() -> None:
    events = [
        e for e in corpus(per_day=6, days=DAYS) if e.device != "speaker" or e.day == "2023-10-22"
    ]
    p = UnknownParams(windows_s=(10.0,), target_false_unknown=0.05, **SPLIT)
    report = run("unknown", p, events).report
    train, test = temporal_split_events(events, until="2023-10-21")
    assert list(report.scores) == unseen_devices(train, test, 10.0, target_false_unknown=0.05)
    assert [s.device for s in report.scores] == ["speaker"]
    assert report.split.endswith("; 1 new devices")


def test_anytime_replays_an_identifier_trained_on_the_training_days() -> None:
    events = corpus(per_day=6, days=DAYS)
    p = AnytimeParams(windows_s=(2.0, 10.0), confidence=0.8, **SPLIT)
    report = run("anytime", p, events).report
    train, test = temporal_split_events(events, until="2023-10-21")
    idt = Identifier.train(train, hierarchy=HIERARCHY)
    expected = [evaluate_anytime(idt, test, confidence=0.8, horizon_s=w) for w in (2.0, 10.0)]
    assert list(report.scores) == expected
    assert report.table().compact and len(report.table().columns) == 9


def test_a_report_folder_is_written_for_window_scores_only(tmp_path: Path) -> None:
    events = corpus(per_day=4, days=DAYS)
    p = TemporalParams(windows_s=(0.0, 2.0), **SPLIT)
    path = run("temporal", p, events, features="sld").write_report(tmp_path / "r")
    assert path is not None and path.name == "report.md"
    text = path.read_text()
    assert "- **features**: sld" in text
    assert f"- **train events**: {3 * 4 * len(HIERARCHY)}" in text
    scores = json.loads((tmp_path / "r" / "scores.json").read_text())
    assert len(scores) == 2 * 3  # two windows, three levels
    anytime = run("anytime", AnytimeParams(windows_s=(2.0,), **SPLIT), events)
    assert anytime.write_report(tmp_path / "a") is None
    assert not (tmp_path / "a").exists()


# ---- a protocol from outside the package -------------------------------------------------


@dataclass(frozen=True)
class MajorityParams:
    """Parameters of the toy protocol (mirrors docs/iot.md)."""

    train_until: str = "2023-10-21"

    def __post_init__(self) -> None:
        if not self.train_until:
            raise ConfigError("train_until", "give a day")


@dataclass(frozen=True)
class MajorityReport(ProtocolReport):
    accuracy: float = math.nan

    def table(self) -> ScoreTable:
        return ScoreTable(("baseline", "accuracy"), ((Strong("majority"), f"{self.accuracy:.3f}"),))

    def score_rows(self) -> list[dict[str, Any]]:
        return [{"accuracy": self.accuracy}]


class Majority(EvaluationProtocol):
    """Always answer the device seen most in training: the floor any model must clear."""

    name: ClassVar[str] = "majority"
    description: ClassVar[str] = "always the most frequent training device"
    Params: ClassVar[type[MajorityParams]] = MajorityParams
    params: MajorityParams

    def run(self, setup: Setup) -> MajorityReport:
        train = [e for e in setup.events if e.day <= self.params.train_until]
        test = [e for e in setup.events if e.day > self.params.train_until]
        devices = [str(e.device) for e in train]
        best = max(sorted(set(devices)), key=devices.count)
        hits = sum(e.device == best for e in test)
        return MajorityReport(f"{len(train)} train, {len(test)} test", hits / len(test))


@pytest.fixture
def majority() -> Any:
    PROTOCOLS.register(Majority)  # what @PROTOCOLS.register does at import
    yield Majority
    PROTOCOLS.unregister(Majority.name)


def test_a_protocol_registered_from_outside_runs_through_the_entry_point(majority: Any) -> None:
    assert "majority" in PROTOCOLS.names()
    # one device has an extra event: it is the majority
    events = corpus(per_day=2, days=DAYS)
    events.append(Event("x", 0.0, (), "bulb", "extra", "2023-10-19"))
    result = run_protocol(
        PROTOCOLS.get("majority")(),
        FEATURE_SETS.get("sld")(),
        MODEL_KINDS.get("logreg")(),
        events=events,
        hierarchy={},
    )
    test = [e for e in events if e.day > "2023-10-21"]
    expected = sum(e.device == "bulb" for e in test) / len(test)
    assert result.report == MajorityReport(f"{len(events) - len(test)} train, {len(test)} test",
                                           expected)  # fmt: skip
    assert result.to_dict() == {"protocol": "majority", "split": result.report.split,
                                "scores": [{"accuracy": expected}]}  # fmt: skip


def test_protocols_refuse_other_params_and_default_their_own() -> None:
    for name in PROTOCOLS.names():
        protocol = PROTOCOLS.get(name)()
        assert isinstance(protocol.params, PROTOCOLS.get(name).Params)
    with pytest.raises(TypeError, match="ExperimentParams"):
        PROTOCOLS.get("experiment")(NoParams())
