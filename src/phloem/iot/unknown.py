"""Unknown-device detection by novelty: how much of an event was never seen in training.

A classifier's top probability alone is a weak signal for a device it never saw: unknown
devices share popular names (NTP pools, Google and Amazon endpoints) with known ones and get
confident answers. :class:`NoveltyDetector` adds the share of an event's masked query names
(:func:`phloem.iot.domains.masked_name`, so per-device ids do not count as new) that no
training event contained (:func:`novelty_share`; the deployed
:class:`~phloem.iot.identify.Identifier` computes it the same way). An event is flagged unknown
when that share reaches a threshold, calibrated on known validation events and never below
``min_threshold``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field

import numpy as np

from phloem.iot.events import Event, Query
from phloem.iot.features import name_parts

__all__ = ["NoveltyDetector", "masked_names", "novelty_share"]


def masked_names(queries: Iterable[Query]) -> set[str]:
    """The distinct masked names (:func:`~phloem.iot.domains.masked_name`) of ``queries``."""
    return {name_parts(q.name).masked for q in queries}


def novelty_share(queries: Iterable[Query], vocabulary: AbstractSet[str]) -> float:
    """Share of the distinct masked names of ``queries`` outside ``vocabulary`` (0 if none)."""
    names = masked_names(queries)
    return len(names - vocabulary) / len(names) if names else 0.0


@dataclass
class NoveltyDetector:
    """Flags events whose share of never-seen masked names is at least ``threshold``."""

    threshold: float = 0.3
    min_threshold: float = 0.25
    vocabulary: set[str] = field(default_factory=set)

    def fit(self, events: Iterable[Event], window_s: float) -> NoveltyDetector:
        self.vocabulary = masked_names(q for e in events for q in e.window(window_s))
        return self

    def novelty(self, events: Sequence[Event], window_s: float) -> np.ndarray:
        """Per event, the share of its distinct masked names outside the vocabulary (0 if none)."""
        return np.array(
            [novelty_share(e.window(window_s), self.vocabulary) for e in events], dtype=np.float64
        )

    def calibrate(
        self, known_val: Sequence[Event], window_s: float, target_false_unknown: float = 0.01
    ) -> NoveltyDetector:
        """Lowest threshold (>= ``min_threshold``) flagging at most the target of ``known_val``."""
        scores = np.sort(self.novelty(known_val, window_s))
        allowed = int(np.floor(target_false_unknown * scores.size))
        # flagged = scores >= threshold; put the threshold just above the (n - allowed)-th score
        above = scores[scores.size - allowed - 1] if scores.size > allowed else 0.0
        self.threshold = max(self.min_threshold, float(np.nextafter(above, np.inf)))
        return self

    def is_unknown(self, events: Sequence[Event], window_s: float) -> np.ndarray:
        return self.novelty(events, window_s) >= self.threshold
