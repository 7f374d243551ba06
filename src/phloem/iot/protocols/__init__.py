"""Evaluation protocols: how the identifier is scored on labelled DNS events.

Each protocol is a class registered in :data:`PROTOCOLS` (see
:mod:`phloem.iot.protocols.base`), one module each:

- ``temporal`` (:mod:`.temporal`): train on the earlier days, test on the later ones;
- ``experiment`` (:mod:`.experiment`): a random split that keeps each experiment on one side;
- ``unknown`` (:mod:`.unknown`): unknown-device detection (new devices, or leave one out);
- ``anytime`` (:mod:`.anytime`): the any-time identifier replayed query by query;
- ``paper`` (:mod:`.paper`): the paper's random split of rows.

:func:`run_protocol` is the entry point: it builds the :class:`Setup` (the doh_iot corpus and
its labels unless given events), runs the protocol and returns an :class:`Evaluation`, which
``phloem iot evaluate`` prints, writes as JSON and renders as a report folder.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from phloem.iot.events import Event
from phloem.iot.feature_sets import FeatureSet
from phloem.iot.model_kinds import ModelKind
from phloem.iot.protocols.base import (
    PROTOCOLS,
    DaySplit,
    EvaluationProtocol,
    ProtocolReport,
    ScoreTable,
    Setup,
    Split,
    Strong,
)

__all__ = [
    "PROTOCOLS",
    "DaySplit",
    "Evaluation",
    "EvaluationProtocol",
    "ProtocolReport",
    "ScoreTable",
    "Setup",
    "Split",
    "Strong",
    "run_protocol",
]


@dataclass(frozen=True)
class Evaluation:
    """One protocol run: what was run, and the protocol's typed report.

    Attributes
    ----------
    protocol, features, model
        The names of the protocol, feature set and model kind.
    report
        The protocol's result.
    """

    protocol: str
    features: str
    model: str
    report: ProtocolReport

    @property
    def title(self) -> str:
        """One line naming the run and its split."""
        return f"{self.protocol}: {self.features} features, {self.model}; {self.report.split}"

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: protocol, split and the score rows."""
        return {
            "protocol": self.protocol,
            "split": self.report.split,
            "scores": self.report.score_rows(),
        }

    def write_report(self, outdir: Path) -> Path | None:
        """Write the report folder (when the protocol's report has one); ``report.md``'s path."""
        meta = {
            "protocol": self.protocol,
            "split": self.report.split,
            "features": self.features,
            "model": self.model,
        }
        return self.report.write_report(outdir, title=self.title, meta=meta)


def run_protocol(
    protocol: EvaluationProtocol,
    features: FeatureSet,
    model: ModelKind,
    *,
    events: Sequence[Event] | None = None,
    hierarchy: Mapping[str, tuple[str, str]] | None = None,
) -> Evaluation:
    """Run ``protocol`` with ``features`` and ``model``.

    Parameters
    ----------
    protocol, features, model
        Built components (e.g. ``PROTOCOLS.get("temporal")(params)``).
    events
        Labelled events to split (default: the doh_iot corpus,
        :func:`~phloem.iot.corpus.load_corpus`).
    hierarchy
        Device -> ``(manufacturer, category)`` (default: the corpus's ``labels.csv``).

    Raises
    ------
    ConfigError
        A parameter the data cannot satisfy (e.g. ``train_until`` leaving no test day), named
        as the protocol's ``Params`` field.
    DataNotFoundError
        The corpus or its labels are needed and not found.
    """
    if events is None:
        from phloem.iot.corpus import load_corpus

        events = load_corpus()
    if hierarchy is None:
        from phloem.iot.dataset import load_hierarchy

        hierarchy = load_hierarchy()
    setup = Setup(events, features.spec(), model.factory(), hierarchy)
    return Evaluation(protocol.name, features.name, model.name, protocol.run(setup))
