"""Evaluation reports: tables, confusion matrices against slow references, figures, report.md."""

from __future__ import annotations

import json
import math
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from matplotlib.image import imread
from sklearn.metrics import confusion_matrix as sk_confusion_matrix

from phloem.iot.evaluate import WindowScore
from phloem.iot.report import (
    _DPI,
    _PANEL_H_IN,
    _PANEL_W_IN,
    _confusion_side_in,
    confusion_matrix,
    most_confused,
    plot_confusion,
    plot_curves,
    scores_table,
    write_report,
)

NAN = float("nan")


def score(w: float, level: str, acc: float, f1: float, dns: float = 0.0) -> WindowScore:
    return WindowScore(w, level, acc, f1, 40, dns, min(1.0, acc + 0.1), f1 + 0.05)


def scores(levels: tuple[str, ...] = ("device", "manufacturer", "category")) -> list[WindowScore]:
    out = []
    for w, dns in ((0.0, 0.6), (1.0, 0.3), (2.0, 0.2), (5.0, 0.1), (300.0, 0.0)):
        for k, lv in enumerate(levels):
            acc = 0.3 + 0.1 * k + 0.5 * (1 - dns)
            out.append(score(w, lv, min(acc, 1.0), acc * 0.8, dns))
    return out


# --- table -----------------------------------------------------------------------------------


def test_table_rows_per_window_levels_in_order_and_nan_as_dash() -> None:
    rows = [
        WindowScore(2.0, "category", 0.9, 0.85, 10, 0.2, 0.95, 0.9),
        WindowScore(0.0, "device", 0.1234, 0.05, 10, 1.0),  # all events without DNS: NaN
        WindowScore(2.0, "device", 0.5, 0.45, 10, 0.2, 0.625, 0.5),
        WindowScore(0.0, "category", 0.3, 0.1, 10, 1.0),
    ]
    lines = scores_table(rows).split("\n")
    assert lines[0] == (
        "| window s | n test | no DNS | device acc | device F1 | device acc (DNS) | "
        "device F1 (DNS) | category acc | category F1 | category acc (DNS) | category F1 (DNS) |"
    )
    assert lines[1] == "|" + "---:|" * 11
    assert lines[2] == "| 0 | 10 | 1.000 | 0.123 | 0.050 | - | - | 0.300 | 0.100 | - | - |"
    assert lines[3] == (
        "| 2 | 10 | 0.200 | 0.500 | 0.450 | 0.625 | 0.500 | 0.900 | 0.850 | 0.950 | 0.900 |"
    )
    assert len(lines) == 4


def test_table_shows_missing_level_as_dash_and_refuses_mixed_runs() -> None:
    rows = [score(0.0, "device", 0.5, 0.4), score(1.0, "device", 0.6, 0.5)]
    rows.append(score(1.0, "manufacturer", 0.7, 0.6))
    table = scores_table(rows)
    assert table.split("\n")[2].endswith("| - | - | - | - |")
    assert "manufacturer acc" in table and "category" not in table
    with pytest.raises(ValueError, match="two scores for window 1 s"):
        scores_table([*rows, score(1.0, "device", 0.1, 0.1)])
    with pytest.raises(ValueError, match="no scores"):
        scores_table([])


# --- confusion matrix ------------------------------------------------------------------------


def slow_confusion(truth: list[str], pred: list[str], labels: list[str]) -> np.ndarray:
    m = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for i, a in enumerate(labels):
        for j, b in enumerate(labels):
            m[i, j] = sum(1 for t, p in zip(truth, pred, strict=True) if t == a and p == b)
    return m


NAMES = st.sampled_from(["plug", "cam", "bulb", "speaker", "hub", "unknown"])
PAIRS = st.lists(st.tuples(NAMES, NAMES), max_size=60)


@pytest.mark.filterwarnings("ignore:A single label was found:UserWarning")  # sklearn's
@given(PAIRS, st.lists(NAMES, unique=True, max_size=4))
def test_confusion_matrix_matches_double_loop_and_sklearn(
    pairs: list[tuple[str, str]], given_labels: list[str]
) -> None:
    truth, pred = [t for t, _ in pairs], [p for _, p in pairs]
    for labels_arg in (None, given_labels):
        m, labels = confusion_matrix(truth, pred, labels_arg)
        seen = sorted(set(truth) | set(pred))
        if labels_arg is None:
            assert labels == seen
        else:  # given order first, then what else occurs, sorted
            assert labels[: len(given_labels)] == given_labels
            assert labels[len(given_labels) :] == sorted(set(seen) - set(given_labels))
        assert m.dtype == np.int64 and m.shape == (len(labels), len(labels))
        assert np.array_equal(m, slow_confusion(truth, pred, labels))
        assert int(m.sum()) == len(pairs)
        if pairs:
            assert np.array_equal(m, sk_confusion_matrix(truth, pred, labels=labels))


def test_confusion_matrix_keeps_unknown_predictions_and_checks_inputs() -> None:
    m, labels = confusion_matrix(["a", "b", "b"], ["a", "unknown", "b"], ["b", "a"])
    assert labels == ["b", "a", "unknown"]
    assert m.tolist() == [[1, 0, 1], [0, 1, 0], [0, 0, 0]]
    m, labels = confusion_matrix([], [])
    assert m.shape == (0, 0) and labels == []
    with pytest.raises(ValueError, match="truth has 2 labels but pred has 1"):
        confusion_matrix(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="repeat"):
        confusion_matrix(["a"], ["a"], ["a", "a"])


def test_most_confused_orders_by_count_then_names() -> None:
    labels = ["a", "b", "c"]
    m = np.array([[9, 2, 3], [3, 9, 0], [2, 1, 9]])
    assert most_confused(m, labels, k=10) == [
        ("a", "c", 3),
        ("b", "a", 3),
        ("a", "b", 2),
        ("c", "a", 2),
        ("c", "b", 1),
    ]  # the diagonal and zero cells never appear
    assert most_confused(m, labels, k=2) == [("a", "c", 3), ("b", "a", 3)]
    assert most_confused(m, labels, k=0) == []
    assert most_confused(np.diag([4, 5, 6]), labels) == []
    with pytest.raises(ValueError, match="square"):
        most_confused(m[:, :2], labels)


# --- figures ---------------------------------------------------------------------------------


def px(inches: float) -> int:
    return round(inches * _DPI)


@pytest.mark.parametrize("levels", [("device",), ("device", "manufacturer", "category")])
def test_plot_curves_one_panel_per_level(tmp_path: Path, levels: tuple[str, ...]) -> None:
    out = plot_curves(scores(levels), tmp_path / "sub" / "curves.png", title="t")
    assert out == tmp_path / "sub" / "curves.png"
    img = imread(out)
    assert img.shape[:2] == (px(_PANEL_H_IN), px(_PANEL_W_IN * len(levels)))
    assert img[..., :3].std() > 0  # something was drawn


def test_plot_curves_format_follows_suffix(tmp_path: Path) -> None:
    svg = plot_curves(scores(("device",)), tmp_path / "c.svg")
    assert "<svg" in svg.read_text()
    png = plot_curves(scores(("device",)), tmp_path / "noext")
    assert png == tmp_path / "noext.png" and imread(png).shape[0] == px(_PANEL_H_IN)


@pytest.mark.parametrize("normalise", [True, False])
@pytest.mark.parametrize("n", [3, 40])
def test_plot_confusion_sized_by_labels_without_warnings(
    tmp_path: Path, n: int, normalise: bool
) -> None:
    rng = np.random.default_rng(n)
    labels = [f"device-{i:02d}" for i in range(n)]
    m = rng.integers(0, 5, size=(n, n))
    m[0] = 0  # a device with no test events: its row is left out, without a warning
    m[1:, 0] = 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = plot_confusion(m, labels, tmp_path / f"cm{n}.png", normalise=normalise, title="x")
    img = imread(out)
    assert img.shape[:2] == (px(_confusion_side_in(n - 1)), px(_confusion_side_in(n)))
    assert img[..., :3].std() > 0


def test_plot_confusion_leaves_out_prediction_only_rows(tmp_path: Path) -> None:
    truth = [f"d{i:02d}" for i in range(20)] * 2
    pred = truth[:20] + ["(no DNS)"] * 20
    m, labels = confusion_matrix(truth, pred)
    assert labels[0] == "(no DNS)" and not m[0].any()
    img = imread(plot_confusion(m, labels, tmp_path / "cm.png"))
    assert img.shape[:2] == (px(_confusion_side_in(20)), px(_confusion_side_in(21)))
    assert _confusion_side_in(20) < _confusion_side_in(21)


def test_confusion_figure_grows_with_labels_within_bounds() -> None:
    sides = [_confusion_side_in(n) for n in (1, 3, 10, 25, 40, 200)]
    assert sides == sorted(sides) and sides[0] >= 4.0 and sides[-1] <= 16.0
    assert _confusion_side_in(40) / 40 >= 0.3  # some 0.3 in per label at 40 labels


def test_plot_confusion_rejects_mismatched_labels(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="one row per label"):
        plot_confusion(np.eye(3), ["a", "b"], tmp_path / "x.png")


# --- report ----------------------------------------------------------------------------------


def refuse_constant(name: str) -> None:
    raise AssertionError(f"non-strict JSON constant {name}")


def test_write_report_writes_every_file_and_strict_json(tmp_path: Path) -> None:
    rows = [*scores(("device", "category")), WindowScore(10.0, "device", 0.5, 0.4, 40, 1.0)]
    predictions = {
        "device@2s": (["plug", "cam", "cam", "bulb"], ["plug", "plug", "cam", "unknown"]),
        "category@2s": (["power", "camera"], ["power", "camera"]),
        "a#b": (["x"], ["y"]),
        "a@b": (["x"], ["x"]),  # same safe name as "a#b": must not overwrite it
    }
    meta = {"split": "temporal, 3 train days", "model": "logreg", "machine": "laptop"}
    report = write_report(
        tmp_path / "out", rows, predictions=predictions, meta=meta, title="IoT test"
    )
    out = tmp_path / "out"
    assert report == out / "report.md"

    data = json.loads((out / "scores.json").read_text(), parse_constant=refuse_constant)
    assert len(data) == len(rows)
    assert data[-1] == {
        "window_s": 10.0,
        "level": "device",
        "accuracy": 0.5,
        "macro_f1": 0.4,
        "n_test": 40,
        "no_dns_share": 1.0,
        "accuracy_dns": None,
        "macro_f1_dns": None,
    }
    assert [WindowScore(**d) for d in data[:-1]] == rows[:-1]

    text = report.read_text()
    assert text.startswith("# IoT test\n")
    assert "- **split**: temporal, 3 train days" in text and "- **machine**: laptop" in text
    assert scores_table(rows) in text
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert links[0] == "curves.png"
    assert sorted(links[1:]) == [
        "confusion_a_b.png",
        "confusion_a_b_2.png",
        "confusion_category_2s.png",
        "confusion_device_2s.png",
    ]
    for link in links:
        assert imread(out / link).size > 0
    assert sorted(p.name for p in out.iterdir()) == sorted([*links, "report.md", "scores.json"])
    assert "- cam → plug: 1" in text and "- bulb → unknown: 1" in text
    assert "## Confusion: category@2s" in text and "No confusions." in text
    assert "4 events, accuracy 0.500." in text


def test_write_report_without_predictions_or_meta(tmp_path: Path) -> None:
    report = write_report(tmp_path, scores(("device",)))
    assert report.read_text().startswith("# IoT device identification\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curves.png", "report.md", "scores.json"]
    assert not math.isnan(json.loads((tmp_path / "scores.json").read_text())[0]["accuracy"])
