"""Reports of the IoT identifier's evaluation: tables, curves and confusion matrices.

Turns the :class:`~phloem.iot.evaluate.WindowScore` list of
:func:`~phloem.iot.evaluate.evaluate_windows` into what the paper's readers look at: accuracy
and macro-F1 against seconds after the anchor at each label level (device, manufacturer,
category), the share of test events with no DNS at all within the window, confusion matrices
and their most confused pairs -- as a markdown table, figures and one ``report.md``.

matplotlib is imported lazily, inside the plotting functions, with the Agg backend (as in
:mod:`phloem.core.plotting`); every figure is closed after it is saved.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from phloem.iot.evaluate import WindowScore

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "LEVEL_ORDER",
    "confusion_matrix",
    "most_confused",
    "plot_confusion",
    "plot_curves",
    "scores_table",
    "write_report",
]

#: The label levels in the order they are shown; other levels follow, sorted by name.
LEVEL_ORDER = ("device", "manufacturer", "category")

_DPI = 130
_PANEL_W_IN = 4.2  # one panel of the curves figure
_PANEL_H_IN = 3.6
_CELL_TEXT_MAX = 25  # confusion matrices with more labels get no numbers in their cells


# ---------------------------------------------------------------------------------------------
# tables


def _levels(scores: Sequence[WindowScore]) -> list[str]:
    present = {s.level for s in scores}
    known = [lv for lv in LEVEL_ORDER if lv in present]
    return known + sorted(present - set(LEVEL_ORDER))


def _index(scores: Sequence[WindowScore]) -> dict[tuple[float, str], WindowScore]:
    """Scores by (window, level); a pair seen twice means two runs were mixed."""
    if not scores:
        raise ValueError("no scores to report; pass the list returned by evaluate_windows")
    out: dict[tuple[float, str], WindowScore] = {}
    for s in scores:
        key = (float(s.window_s), s.level)
        if key in out:
            raise ValueError(
                f"two scores for window {s.window_s:g} s at level {s.level!r}; "
                "report one evaluation run at a time"
            )
        out[key] = s
    return out


def _fmt(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:.3f}"


def scores_table(scores: Sequence[WindowScore]) -> str:
    """A GitHub markdown table of the scores, one row per window.

    Parameters
    ----------
    scores
        As returned by :func:`~phloem.iot.evaluate.evaluate_windows`: one score per window and
        label level.

    Returns
    -------
    str
        The table (no trailing newline). Columns: the window in seconds, the number of test
        events, the share of them with no DNS within the window, then for each level present
        (device, manufacturer, category, then any other level by name) accuracy and macro-F1
        over all test events and over the events with DNS. Numbers have 3 decimals; NaN, and a
        level missing at some window, show as ``-``.

    Raises
    ------
    ValueError
        If ``scores`` is empty or holds two scores for one (window, level).
    """
    index = _index(scores)
    levels = _levels(scores)
    windows = sorted({w for w, _ in index})
    head = ["window s", "n test", "no DNS"]
    for lv in levels:
        head += [f"{lv} acc", f"{lv} F1", f"{lv} acc (DNS)", f"{lv} F1 (DNS)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    for w in windows:
        row_scores = [index.get((w, lv)) for lv in levels]
        first = next(s for s in row_scores if s is not None)
        cells = [f"{w:g}", str(first.n_test), _fmt(first.no_dns_share)]
        for s in row_scores:
            if s is None:
                cells += ["-"] * 4
            else:
                cells += [_fmt(v) for v in (s.accuracy, s.macro_f1, s.accuracy_dns, s.macro_f1_dns)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# confusion matrices


def confusion_matrix(
    truth: Sequence[str], pred: Sequence[str], labels: Sequence[str] | None = None
) -> tuple[np.ndarray, list[str]]:
    """Count (true label, predicted label) pairs.

    Parameters
    ----------
    truth, pred
        The true and predicted label of each event (same length).
    labels
        The order of the rows and columns. Labels that occur in ``truth`` or ``pred`` but not
        in ``labels`` (a predicted ``"unknown"``, a device never seen in training) are appended
        after them, sorted, so no event is dropped -- unlike scikit-learn, which drops them.
        ``None``: the sorted union of ``truth`` and ``pred``.

    Returns
    -------
    matrix : numpy.ndarray
        Square ``int64`` counts, ``matrix[i, j]`` = number of events whose truth is
        ``labels[i]`` and prediction ``labels[j]``.
    labels : list of str
        The labels of both the rows and the columns.

    Raises
    ------
    ValueError
        If the lengths differ or ``labels`` repeats a label.
    """
    if len(truth) != len(pred):
        raise ValueError(f"truth has {len(truth)} labels but pred has {len(pred)}")
    seen = set(truth) | set(pred)
    if labels is None:
        order = sorted(seen)
    else:
        order = [str(lab) for lab in labels]
        if len(set(order)) != len(order):
            raise ValueError("labels repeat a label; pass each label once")
        order += sorted(seen - set(order))
    n = len(order)
    pos = {lab: i for i, lab in enumerate(order)}
    t = np.fromiter((pos[x] for x in truth), dtype=np.int64, count=len(truth))
    p = np.fromiter((pos[x] for x in pred), dtype=np.int64, count=len(pred))
    counts = np.bincount(t * n + p, minlength=n * n).astype(np.int64)
    return counts.reshape(n, n), order


def most_confused(
    matrix: np.ndarray, labels: Sequence[str], k: int = 10
) -> list[tuple[str, str, int]]:
    """The ``k`` largest off-diagonal cells of a confusion matrix.

    Parameters
    ----------
    matrix
        Square counts, rows = truth, columns = prediction (see :func:`confusion_matrix`).
    labels
        The labels of its rows and columns.
    k
        How many pairs at most; cells with a zero count are never listed.

    Returns
    -------
    list of (truth, predicted, count)
        By count, largest first, ties by truth then predicted label.
    """
    m = _square(matrix, labels)
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    rows, cols = np.nonzero(m)
    cells = [
        (str(labels[i]), str(labels[j]), int(m[i, j]))
        for i, j in zip(rows.tolist(), cols.tolist(), strict=True)
        if i != j
    ]
    cells.sort(key=lambda c: (-c[2], c[0], c[1]))
    return cells[:k]


def _square(matrix: np.ndarray, labels: Sequence[str]) -> np.ndarray:
    m = np.asarray(matrix)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] != len(labels):
        raise ValueError(
            f"expected a square matrix with one row per label ({len(labels)} labels), "
            f"got shape {m.shape}"
        )
    return m


def _row_normalise(m: np.ndarray) -> np.ndarray:
    """Rows scaled to sum to 1; rows with no events stay zero (no division warning)."""
    m = m.astype(np.float64)
    sums = m.sum(axis=1, keepdims=True)
    out = np.zeros_like(m)
    np.divide(m, sums, out=out, where=sums > 0)
    return out


# ---------------------------------------------------------------------------------------------
# figures


def _save(fig: Figure, path: str | Path) -> Path:
    """Save ``fig`` (format from the suffix, PNG when there is none), close it, return the path."""
    import matplotlib.pyplot as plt

    out = Path(path)
    if not out.suffix:
        out = out.with_suffix(".png")
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        fig.savefig(out, dpi=_DPI)
    finally:
        plt.close(fig)
    return out


def plot_curves(scores: Sequence[WindowScore], path: str | Path, *, title: str = "") -> Path:
    """Accuracy and macro-F1 against seconds after the anchor, one panel per label level.

    Each panel shows accuracy and macro-F1 over all test events (solid), over the events with
    at least one query in the window (dashed), and the share of events with no DNS at all
    (grey area). The x axis is symmetric-log (linear below 1 s, so 0 s shows) with a tick at
    each window; y spans [0, 1].

    Parameters
    ----------
    scores
        As returned by :func:`~phloem.iot.evaluate.evaluate_windows`.
    path
        Where to save; the format follows the suffix (``.png`` appended when there is none).
    title
        Figure title.

    Returns
    -------
    pathlib.Path
        The file written.
    """
    index = _index(scores)
    levels = _levels(scores)
    windows = sorted({w for w, _ in index})
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        1,
        len(levels),
        figsize=(_PANEL_W_IN * len(levels), _PANEL_H_IN),
        squeeze=False,
        layout="constrained",  # makes room for the figure legend below the panels
    )
    for ax, lv in zip(axes[0], levels, strict=True):
        pts = [(w, index[(w, lv)]) for w in windows if (w, lv) in index]
        xs = [w for w, _ in pts]
        no_dns = [s.no_dns_share for _, s in pts]
        ax.fill_between(xs, no_dns, color="0.5", alpha=0.2, lw=0)
        ax.plot(xs, no_dns, color="0.5", marker="s", ms=3, lw=1.0, label="no DNS")
        for attr, name, colour, style in (
            ("accuracy", "accuracy", "C0", "-"),
            ("macro_f1", "macro-F1", "C1", "-"),
            ("accuracy_dns", "accuracy (DNS)", "C0", "--"),
            ("macro_f1_dns", "macro-F1 (DNS)", "C1", "--"),
        ):
            ys = [getattr(s, attr) for _, s in pts]
            ax.plot(xs, ys, ls=style, color=colour, marker="o", ms=3, lw=1.5, label=name)
        ax.set_xscale("symlog", linthresh=1.0)
        ax.set_xticks(windows, [f"{w:g}" for w in windows])
        if len(windows) > 1:
            ax.set_xlim(windows[0], windows[-1])
        ax.set_ylim(0.0, 1.02)  # a score of 1 stays visible
        ax.set_xlabel("seconds after the anchor")
        ax.set_title(lv)
        ax.grid(True, alpha=0.3)
    axes[0][0].set_ylabel("score / share")
    handles, names = axes[0][0].get_legend_handles_labels()
    ncol = len(names) if len(levels) > 1 else 3
    fig.legend(handles, names, loc="outside lower center", ncol=ncol, fontsize=8)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def _confusion_side_in(n: int) -> float:
    """Figure side in inches: room for ``n`` rotated tick labels, within 4..16 in."""
    return float(min(16.0, max(4.0, 2.5 + 0.3 * n)))


def plot_confusion(
    matrix: np.ndarray,
    labels: Sequence[str],
    path: str | Path,
    *,
    normalise: bool = True,
    title: str = "",
) -> Path:
    """A confusion matrix as a heatmap (rows = truth, columns = prediction).

    Parameters
    ----------
    matrix, labels
        As returned by :func:`confusion_matrix`.
    path
        Where to save; the format follows the suffix (``.png`` appended when there is none).
    normalise
        Show each row as shares of its events (rows with no events stay zero) instead of
        counts.
    title
        Axes title.

    Returns
    -------
    pathlib.Path
        The file written. Rows with no events (labels that only occur as predictions, such as
        ``"(no DNS)"`` or ``"unknown"``) are left out, so the figure may be wider than tall; it
        grows with the number of labels so that some 40 stay readable; cells carry their value
        when there are at most 25 labels.
    """
    full = _square(matrix, labels)
    n = len(labels)
    # Labels that only ever are predictions ("(no DNS)", "unknown") would be empty rows.
    keep = np.flatnonzero(full.sum(axis=1) > 0) if full.any() else np.arange(n)
    m = full[keep]
    rows = [str(labels[i]) for i in keep.tolist()]
    shown = _row_normalise(m) if normalise else m.astype(np.float64)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    side = _confusion_side_in(n)
    fig, ax = plt.subplots(figsize=(side, _confusion_side_in(len(rows))), layout="constrained")
    vmax = 1.0 if normalise else max(1.0, float(shown.max(initial=0.0)))
    im = ax.imshow(shown, cmap="Blues", vmin=0.0, vmax=vmax, interpolation="nearest")
    fig.colorbar(im, ax=ax, shrink=0.8, label="share of row" if normalise else "events")
    font = 8 if n <= 25 else 6
    ax.set_xticks(
        range(n), list(labels), rotation=60, ha="right", rotation_mode="anchor", fontsize=font
    )
    ax.set_yticks(range(len(rows)), rows, fontsize=font)
    ax.set_xlabel("predicted")
    ax.set_ylabel("truth")
    if title:
        ax.set_title(title)
    if n <= _CELL_TEXT_MAX:
        for i, j in zip(*np.nonzero(m), strict=True):
            v = shown[i, j]
            ax.text(
                j,
                i,
                f"{v:.2f}" if normalise else f"{int(v)}",
                ha="center",
                va="center",
                fontsize=6 if n > 12 else 8,
                color="white" if v > 0.6 * vmax else "black",
            )
    return _save(fig, path)


# ---------------------------------------------------------------------------------------------
# the report


def _json_safe(x: object) -> object:
    """NaN and infinities become ``None`` so that the JSON is strict."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _safe_name(key: str, taken: set[str]) -> str:
    """A file-name stem for ``key``: unsafe characters become ``_``; unique within ``taken``."""
    stem = "confusion_" + (re.sub(r"[^A-Za-z0-9._-]+", "_", key).strip("._") or "matrix")
    name, i = stem, 2
    while name in taken:
        name, i = f"{stem}_{i}", i + 1
    taken.add(name)
    return name


def write_report(
    outdir: str | Path,
    scores: Sequence[WindowScore],
    *,
    predictions: Mapping[str, tuple[Sequence[str], Sequence[str]]] | None = None,
    meta: Mapping[str, object] | None = None,
    title: str = "",
) -> Path:
    """Write the evaluation report: JSON scores, figures and ``report.md``.

    Parameters
    ----------
    outdir
        Folder to write into (created when missing; files of the same names are replaced).
    scores
        As returned by :func:`~phloem.iot.evaluate.evaluate_windows`.
    predictions
        Optional ``key -> (truth, predicted)`` label lists, e.g. ``"device@2s"``; each gives
        a confusion-matrix figure ``confusion_<key>.png`` (characters other than letters,
        digits, ``.``, ``_`` and ``-`` replaced by ``_``) and its most confused pairs.
    meta
        Optional facts about the run (split, model, features, machine...) listed at the top.
    title
        Report title (default "IoT device identification").

    Returns
    -------
    pathlib.Path
        The path of ``report.md``. Beside it: ``scores.json`` (the scores as a list of
        objects, NaN written as ``null``), ``curves.png`` and the confusion figures.
    """
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    table = scores_table(scores)  # validates scores before anything is written
    rows = [{k: _json_safe(v) for k, v in asdict(s).items()} for s in scores]
    (out / "scores.json").write_text(json.dumps(rows, indent=2, allow_nan=False) + "\n")
    plot_curves(scores, out / "curves.png", title=title)

    md = [f"# {title or 'IoT device identification'}", ""]
    if meta:
        md += [f"- **{k}**: {v}" for k, v in meta.items()] + [""]
    md += ["## Scores against seconds after the anchor", "", table, ""]
    md += [
        "No DNS: share of test events without any query within the window. "
        "(DNS): scores over the test events with at least one query.",
        "",
    ]
    md += ["![accuracy and macro-F1 against seconds after the anchor](curves.png)", ""]
    taken: set[str] = set()
    for key, (truth, pred) in (predictions or {}).items():
        matrix, labels = confusion_matrix(truth, pred)
        name = _safe_name(key, taken) + ".png"
        plot_confusion(matrix, labels, out / name, title=key)
        n = int(matrix.sum())
        acc = float(np.trace(matrix)) / n if n else float("nan")
        md += [f"## Confusion: {key}", "", f"{n} events, accuracy {_fmt(acc)}.", ""]
        md += [f"![confusion matrix {key}]({name})", ""]
        pairs = most_confused(matrix, labels)
        if pairs:
            md += ["Most confused (truth → predicted: events):", ""]
            md += [f"- {t} → {p}: {c}" for t, p, c in pairs]
        else:
            md += ["No confusions."]
        md.append("")
    report = out / "report.md"
    report.write_text("\n".join(md))
    return report
