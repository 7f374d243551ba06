"""``anytime``: the deployable any-time identifier, each test event replayed query by query.

One :class:`~phloem.iot.identify.Identifier` is trained on the training days; each window is a
horizon of :func:`~phloem.iot.evaluate.evaluate_anytime` (share answered, accuracy of the
first confident answer, time to it, revisions, unknown flags).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from phloem.core.errors import ConfigError
from phloem.iot.protocols.base import PROTOCOLS, DaySplit, EvaluationProtocol, Setup
from phloem.iot.protocols.reports import AnytimeReport

__all__ = ["Anytime", "AnytimeParams"]


@dataclass(frozen=True)
class AnytimeParams(DaySplit):
    """The day split of :class:`~phloem.iot.protocols.base.DaySplit` (each window a horizon),
    and

    Attributes
    ----------
    confidence
        Top probability at which an answer counts as confident, in (0, 1].
    """

    confidence: float = 0.9

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 < self.confidence <= 1.0:
            raise ConfigError("confidence", f"{self.confidence} is not in (0, 1]")


@PROTOCOLS.register
class Anytime(EvaluationProtocol):
    """The any-time identifier replayed query by query on the test days."""

    name: ClassVar[str] = "anytime"
    description: ClassVar[str] = "query-by-query replay"
    Params: ClassVar[type[AnytimeParams]] = AnytimeParams
    params: AnytimeParams

    def run(self, setup: Setup) -> AnytimeReport:
        from phloem.iot.evaluate import evaluate_anytime
        from phloem.iot.identify import Identifier

        p = self.params
        s = p.split(setup.events)
        idt = Identifier.train(
            s.train, spec=setup.spec, model=setup.model, hierarchy=setup.hierarchy
        )
        known = {e.device for e in s.train}
        test = [e for e in s.test if e.device in known]
        scores = tuple(
            evaluate_anytime(idt, test, confidence=p.confidence, horizon_s=w) for w in p.windows_s
        )
        return AnytimeReport(s.description, scores)
