"""Per-client identification reports of a whole capture or log (``phloem iot identify``).

:func:`identify_clients` groups observations into one event per client, asks the identifier
about each at a fixed window, and returns one :class:`ClientReport` per client: the answer
(device -> manufacturer -> category, confidence, drivers, unknown flag), when the client was
first seen, how the answer evolved over the identifier's checkpoints, the names queried, and
flags (no DNS, a resolver other than the network's).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from phloem.core.errors import ConfigError
from phloem.iot.events import (
    ANCHOR_MODES,
    AnchorMode,
    EventStats,
    Observation,
    events_from_observations,
    main_resolvers,
    uses_external_resolver,
)
from phloem.iot.identify import Answer, Identifier

__all__ = ["ClientReport", "IdentifyParams", "TimelinePoint", "identify_clients"]


@dataclass(frozen=True)
class IdentifyParams:
    """How clients are identified.

    Attributes
    ----------
    window_s
        Seconds after each client's anchor the answer covers (>= 0).
    top
        Devices listed per client (>= 1).
    anchor
        What starts a client's clock: one of :data:`~phloem.iot.events.ANCHOR_MODES`.
    """

    window_s: float = 60.0
    top: int = 3
    anchor: str = "dhcp-or-first-query"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.window_s) and self.window_s >= 0):
            raise ConfigError(
                "window_s", f"must be a non-negative number of seconds, got {self.window_s}"
            )
        if self.top < 1:
            raise ConfigError("top", f"must be at least 1, got {self.top}")
        if self.anchor not in ANCHOR_MODES:
            raise ConfigError("anchor", f"unknown {self.anchor!r}", ANCHOR_MODES)


@dataclass(frozen=True)
class TimelinePoint:
    """The top device after ``elapsed_s`` seconds."""

    elapsed_s: float
    device: str
    confidence: float
    unknown: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "s": self.elapsed_s,
            "device": self.device,
            "p": round(self.confidence, 3),
            "unknown": self.unknown,
        }


@dataclass(frozen=True)
class ClientReport:
    """What the identifier says about one client.

    Attributes
    ----------
    answer
        The answer at the window, with drivers.
    first_seen
        The client's anchor, ISO 8601 in UTC to the second.
    over_time
        The top device at each checkpoint before the window, then at the window itself.
    names
        The distinct names queried within the window, sorted.
    external_resolver
        The client asked a resolver other than the network's main one.
    """

    answer: Answer
    first_seen: str
    over_time: tuple[TimelinePoint, ...]
    names: tuple[str, ...]
    external_resolver: bool

    @property
    def no_dns(self) -> bool:
        """No query within the window: nothing to answer from."""
        return not self.names

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (``phloem iot identify --json``): the answer's, then the rest."""
        out = self.answer.to_dict()
        out.update(
            first_seen=self.first_seen,
            over_time=[p.to_dict() for p in self.over_time],
            names=list(self.names),
            no_dns=self.no_dns,
            external_resolver=self.external_resolver,
        )
        return out


def _point(a: Answer) -> TimelinePoint:
    return TimelinePoint(a.elapsed_s, a.top[0].label, a.confidence, a.unknown)


def identify_clients(
    identifier: Identifier,
    observations: Iterable[Observation],
    params: IdentifyParams | None = None,
    *,
    stats: EventStats | None = None,
) -> list[ClientReport]:
    """One report per client of ``observations`` (a whole capture or log).

    Parameters
    ----------
    identifier
        The trained identifier.
    observations
        Time-ordered observations (:func:`~phloem.iot.sources.open_observations`).
    params
        Window, number of devices listed and anchor mode (default: ``IdentifyParams()``).
    stats
        The source's event counters (``SourceStats.events``): with ``anchor="capture-start"``
        clients are anchored at the capture's first packet.
    """
    p = params if params is not None else IdentifyParams()
    anchor = cast(AnchorMode, p.anchor)  # checked by IdentifyParams
    events = events_from_observations(observations, anchor=anchor, stats=stats)
    answers = identifier.answer_many(events, p.window_s, top=p.top)
    local = main_resolvers(events)  # the network's resolver, found once for all clients
    early = [w for w in identifier.checkpoints if w < p.window_s]  # then the window itself
    reports = []
    for e, a in zip(events, answers, strict=True):
        timeline = identifier.timeline(e, early) if early else []
        reports.append(
            ClientReport(
                a,
                datetime.fromtimestamp(e.anchor_utc, tz=UTC).isoformat(timespec="seconds"),
                tuple(_point(x) for x in [*timeline, a]),
                tuple(sorted({q.name for q in e.window(p.window_s)})),
                uses_external_resolver(e, local),
            )
        )
    return reports
