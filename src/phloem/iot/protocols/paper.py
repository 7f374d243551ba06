"""``paper``: the paper's own protocol, one row per queried registered domain, rows split at
random (:func:`~phloem.iot.evaluate.paper_rows`).

Kept to show fidelity to the paper and how it leaks between training and test: the same
experiment contributes rows to both sides.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from phloem.iot.protocols.base import (
    PROTOCOLS,
    EvaluationProtocol,
    RandomSplitParams,
    Setup,
)
from phloem.iot.protocols.reports import PaperReport, PaperScore

__all__ = ["Paper", "PaperParams"]


@dataclass(frozen=True)
class PaperParams(RandomSplitParams):
    """Parameters of the ``paper`` protocol.

    Attributes
    ----------
    test_until
        Last day of the captures whose rows are split (``YYYY-MM-DD``).
    test_fraction
        Share of the rows in the test set.
    seed
        Seeds the split and the MLP.
    windows_s
        Seconds after the anchor whose queries make rows.
    """

    test_fraction: float = 0.2


@PROTOCOLS.register
class Paper(EvaluationProtocol):
    """Random rows, MLP 64-64: the paper's protocol (leaks across the split)."""

    name: ClassVar[str] = "paper"
    description: ClassVar[str] = "the paper's random split of rows"
    Params: ClassVar[type[PaperParams]] = PaperParams
    params: PaperParams

    def run(self, setup: Setup) -> PaperReport:
        from phloem.iot.evaluate import paper_rows

        p = self.params
        events = [e for e in setup.events if e.day <= p.test_until]
        scores = tuple(
            PaperScore(w, paper_rows(events, w, seed=p.seed, test_fraction=p.test_fraction))
            for w in p.windows_s
        )
        return PaperReport(f"{self.name} split of all captures up to {p.test_until}", scores)
