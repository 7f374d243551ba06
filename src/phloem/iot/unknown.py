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

__all__ = [
    "KEY_FIELDS",
    "DeviceQueries",
    "NoveltyDetector",
    "carried_fields",
    "high_threshold",
    "masked_names",
    "novelty_share",
    "query_keys",
]


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


#: the fields of a query key (:func:`query_keys`), in order. Not the resolver: which one a
#: device asks depends on the network it is on (a lab's devices asked 8.8.8.8, a home's may
#: ask the gateway), not on the device
KEY_FIELDS = ("name", "qtype", "stack")
_SEP = "\x1f"  # between a key's fields (the ASCII unit separator)


def query_keys(queries: Iterable[Query], fields: Sequence[str] = KEY_FIELDS) -> set[str]:
    """The distinct keys of ``queries``: masked name, query type and stack fingerprint,
    joined; only ``fields`` of them."""
    out = set()
    for q in queries:
        parts = {"name": name_parts(q.name).masked, "qtype": str(q.qtype), "stack": q.stack}
        out.add(_SEP.join(parts[f] for f in fields))
    return out


def carried_fields(queries: Sequence[Query]) -> tuple[str, ...]:
    """The key fields ``queries`` carry: a resolver log has no stack fingerprint."""
    fields = ["name", "qtype"]
    if any(q.stack for q in queries):
        fields.append("stack")
    return tuple(fields)


@dataclass
class DeviceQueries:
    """What each device was seen to send in training: the keys of its queries
    (:func:`query_keys`). An event's *device novelty* for a device is the share of its
    distinct keys that device never sent: unknown devices share popular names with known ones
    (NTP pools, Google, Amazon), so "was this name ever seen?" passes them, but "did *this*
    device ever send this query this way?" does not."""

    keys: dict[str, frozenset[str]] = field(default_factory=dict)
    _projected: dict[tuple[str, tuple[str, ...]], frozenset[str]] = field(
        default_factory=dict, repr=False, compare=False
    )

    @classmethod
    def fit(cls, events: Iterable[Event], window_s: float) -> DeviceQueries:
        per: dict[str, set[str]] = {}
        for e in events:
            per.setdefault(str(e.device), set()).update(query_keys(e.window(window_s)))
        return cls({d: frozenset(k) for d, k in sorted(per.items())})

    def share_unseen(self, queries: Sequence[Query], device: str) -> float:
        """Share of the distinct keys of ``queries`` (on the fields they carry) that
        ``device`` never sent in training (0 if no queries; 1 for a device never trained)."""
        fields = carried_fields(queries)
        mine = query_keys(queries, fields)
        if not mine:
            return 0.0
        seen = self._seen(device, fields)
        return len(mine - seen) / len(mine)

    def _seen(self, device: str, fields: tuple[str, ...]) -> frozenset[str]:
        hit = self._projected.get((device, fields))
        if hit is None:
            idx = [KEY_FIELDS.index(f) for f in fields]
            hit = frozenset(
                _SEP.join(k.split(_SEP)[i] for i in idx) for k in self.keys.get(device, ())
            )
            self._projected[(device, fields)] = hit
        return hit


def high_threshold(scores: Sequence[float], target: float) -> float:
    """The lowest threshold that flags (``score >= threshold``) at most ``target`` of
    ``scores``."""
    s = np.sort(np.asarray(scores, dtype=np.float64))
    allowed = int(np.floor(target * s.size))
    above = s[s.size - allowed - 1] if s.size > allowed else 0.0
    return float(np.nextafter(above, np.inf))
