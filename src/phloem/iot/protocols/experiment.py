"""``experiment``: a random split that keeps each experiment (capture) on one side.

The fix of the paper's leak that keeps its random, day-blind split
(:func:`~phloem.iot.evaluate.experiment_split`); scored as :mod:`.temporal` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from phloem.iot.protocols.base import (
    PROTOCOLS,
    EvaluationProtocol,
    RandomSplitParams,
    Setup,
    Split,
)
from phloem.iot.protocols.reports import WindowsReport
from phloem.iot.protocols.temporal import score_windows

__all__ = ["Experiment", "ExperimentParams"]


@dataclass(frozen=True)
class ExperimentParams(RandomSplitParams):
    """Parameters of the ``experiment`` protocol.

    Attributes
    ----------
    test_until
        Last day of the captures split (``YYYY-MM-DD``).
    test_fraction
        Share of the experiments in the test set.
    seed
        Seeds the split.
    windows_s
        Seconds after the anchor to score at.
    """


@PROTOCOLS.register
class Experiment(EvaluationProtocol):
    """A random split of experiments, each on one side."""

    name: ClassVar[str] = "experiment"
    description: ClassVar[str] = "random split of experiments"
    Params: ClassVar[type[ExperimentParams]] = ExperimentParams
    params: ExperimentParams

    def run(self, setup: Setup) -> WindowsReport:
        from phloem.iot.evaluate import experiment_split

        p = self.params
        events = [e for e in setup.events if e.day <= p.test_until]
        train, test = experiment_split(events, p.test_fraction, seed=p.seed)
        split = Split(train, test, f"{self.name} split of all captures up to {p.test_until}")
        return score_windows(split, setup, p.windows_s)
