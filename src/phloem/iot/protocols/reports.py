"""The typed results of the built-in protocols: scores per window, unknown-device detection,
any-time replay, and the paper's row accuracy."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from phloem.iot.evaluate import AnytimeScore, UnknownScore, WindowScore
from phloem.iot.protocols.base import ProtocolReport, ScoreTable, Strong

__all__ = [
    "REPORTED_CONFUSIONS",
    "AnytimeReport",
    "PaperReport",
    "PaperScore",
    "UnknownReport",
    "WindowsReport",
]

#: the confusion matrices a report folder shows (where the windows include them)
REPORTED_CONFUSIONS = ("device@0s", "device@2s", "device@60s", "manufacturer@60s", "category@60s")


@dataclass(frozen=True)
class WindowsReport(ProtocolReport):
    """Accuracy and macro-F1 per window and label level (``temporal``, ``experiment``).

    Attributes
    ----------
    scores
        As :func:`~phloem.iot.evaluate.evaluate_windows` returns them.
    predictions
        ``"<level>@<window>s" -> (truth, predicted)`` for every window and level.
    left_out
        Test devices never seen in training, left out of the test set.
    n_train
        Training events.
    """

    scores: tuple[WindowScore, ...] = ()
    predictions: Mapping[str, tuple[list[str], list[str]]] = field(default_factory=dict)
    left_out: tuple[str, ...] = ()
    n_train: int = 0

    def table(self) -> ScoreTable:
        cols = ("window s", "level", "acc", "macro-F1", "acc (DNS)", "F1 (DNS)", "no DNS")
        rows = tuple(
            (
                f"{s.window_s:g}",
                s.level,
                f"{s.accuracy:.3f}",
                f"{s.macro_f1:.3f}",
                f"{s.accuracy_dns:.3f}",
                f"{s.macro_f1_dns:.3f}",
                f"{s.no_dns_share:.3f}",
            )
            for s in self.scores
        )
        return ScoreTable(cols, rows)

    def score_rows(self) -> list[dict[str, Any]]:
        return [asdict(s) for s in self.scores]

    def notes(self) -> tuple[str, ...]:
        if not self.left_out:
            return ()
        return (f"devices not in training, left out: {', '.join(self.left_out)}",)

    def write_report(self, outdir: Path, *, title: str, meta: Mapping[str, object]) -> Path:
        """``report.md`` with curves and the confusion matrices of
        :data:`REPORTED_CONFUSIONS` (see :func:`~phloem.iot.report.write_report`)."""
        from phloem.iot.report import write_report

        keep = {k: v for k, v in self.predictions.items() if k in REPORTED_CONFUSIONS}
        facts = {
            **meta,
            "train events": self.n_train,
            "test events": self.scores[0].n_test,
            "left out (unseen in training)": ", ".join(self.left_out) or "none",
        }
        return write_report(outdir, self.scores, predictions=keep, meta=facts, title=title)


@dataclass(frozen=True)
class UnknownReport(ProtocolReport):
    """Unknown-device detection per held-out (or new) device and window (``unknown``)."""

    scores: tuple[UnknownScore, ...] = ()

    def table(self) -> ScoreTable:
        cols = ("window s", "unseen device", "flagged", "known flagged", "n")
        rows: list[tuple[str, ...]] = [
            (
                f"{s.window_s:g}",
                s.device,
                f"{s.unknown_flagged:.3f}",
                f"{s.known_flagged:.4f}",
                str(s.n_unknown),
            )
            for s in self.scores
        ]
        by_window: dict[float, list[UnknownScore]] = {}
        for s in self.scores:
            by_window.setdefault(s.window_s, []).append(s)
        for w, ss in by_window.items():
            flagged = sum(x.unknown_flagged for x in ss) / len(ss)
            known = sum(x.known_flagged for x in ss) / len(ss)
            rows.append((f"{w:g}", Strong("mean"), f"{flagged:.3f}", f"{known:.4f}", ""))
        return ScoreTable(cols, tuple(rows))

    def score_rows(self) -> list[dict[str, Any]]:
        return [asdict(s) for s in self.scores]


@dataclass(frozen=True)
class AnytimeReport(ProtocolReport):
    """The any-time mode replayed query by query, one score per horizon (``anytime``)."""

    scores: tuple[AnytimeScore, ...] = ()

    def table(self) -> ScoreTable:
        # short headers and a light frame: nine columns fit an 80-column terminal
        cols = ("T s", "events", "answered", "1st acc", "final", "med s", "p90 s", "revised",
                "unknown")  # fmt: skip
        rows = tuple(
            (
                f"{s.horizon_s:g}",
                str(s.n_events),
                f"{s.answered:.3f}",
                f"{s.first_answer_accuracy:.4f}",
                f"{s.final_accuracy:.4f}",
                f"{s.median_time_s:.2f}",
                f"{s.p90_time_s:.2f}",
                f"{s.revised:.3f}",
                f"{s.flagged_unknown:.3f}",
            )
            for s in self.scores
        )
        return ScoreTable(cols, rows, compact=True)

    def score_rows(self) -> list[dict[str, Any]]:
        return [asdict(s) for s in self.scores]


@dataclass(frozen=True)
class PaperScore:
    """The paper's protocol at one window: accuracy over (device, registered domain) rows."""

    window_s: float
    row_accuracy: float


@dataclass(frozen=True)
class PaperReport(ProtocolReport):
    """Row accuracy per window (``paper``)."""

    scores: tuple[PaperScore, ...] = ()

    def table(self) -> ScoreTable:
        rows = tuple((f"{s.window_s:g}", f"{s.row_accuracy:.3f}") for s in self.scores)
        return ScoreTable(("window s", "row accuracy"), rows)

    def score_rows(self) -> list[dict[str, Any]]:
        return [asdict(s) for s in self.scores]
