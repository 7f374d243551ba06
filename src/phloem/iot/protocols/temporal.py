"""``temporal``: train on the earlier days, test on the later ones (the default protocol).

For each window a vectorizer and a classifier are fitted on the training days' events cut at
that window and scored on the test days' events (:func:`~phloem.iot.evaluate.evaluate_windows`),
at the device, manufacturer and category levels. Test devices never seen in training are left
out and listed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from phloem.iot.protocols.base import PROTOCOLS, DaySplit, EvaluationProtocol, Setup, Split
from phloem.iot.protocols.reports import WindowsReport

__all__ = ["Temporal", "TemporalParams", "score_windows"]


@dataclass(frozen=True)
class TemporalParams(DaySplit):
    """The day split of :class:`~phloem.iot.protocols.base.DaySplit`."""


def score_windows(split: Split, setup: Setup, windows_s: tuple[float, ...]) -> WindowsReport:
    """Scores per window and level of ``split``'s test events of devices seen in training."""
    from phloem.iot.evaluate import evaluate_windows

    known = {e.device for e in split.train}
    new = sorted({str(e.device) for e in split.test} - known)
    test = [e for e in split.test if e.device in known]
    h = setup.hierarchy
    groups = {
        "manufacturer": {d: m for d, (m, _) in h.items()},
        "category": {d: c for d, (_, c) in h.items()},
    }
    predictions: dict[str, tuple[list[str], list[str]]] = {}
    scores = evaluate_windows(
        split.train,
        test,
        spec=setup.spec,
        model=setup.model,
        windows=windows_s,
        groups=groups,
        predictions=predictions,
    )
    return WindowsReport(
        split.description, tuple(scores), predictions, tuple(new), len(split.train)
    )


@PROTOCOLS.register
class Temporal(EvaluationProtocol):
    """Train on the days up to ``train_until``, test on ``test_from``..``test_until``."""

    name: ClassVar[str] = "temporal"
    description: ClassVar[str] = "train on earlier days, test on later ones"
    Params: ClassVar[type[TemporalParams]] = TemporalParams
    params: TemporalParams

    def run(self, setup: Setup) -> WindowsReport:
        return score_windows(self.params.split(setup.events), setup, self.params.windows_s)
