"""Events: the DNS queries of one device from its connection anchor onwards.

An :class:`Event` is what the identifier classifies: one device (keyed by MAC where layer 2
is visible, else by IP) from its anchor (a DHCP event, or its first query) to the end of the
observation, each query timed in seconds since the anchor. :meth:`Event.window` cuts it at
``T`` seconds, the "first seconds" of the paper.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Event", "Query"]


@dataclass(frozen=True)
class Query:
    """One DNS query sent by the device."""

    t: float  # seconds since the event's anchor (>= 0)
    name: str  # query name, lower case, no trailing dot
    qtype: int  # 1 = A, 28 = AAAA, ... (phloem.iot.dns.QTYPE)
    resolver: str  # destination IP of the query


@dataclass(frozen=True)
class Event:
    """One device's queries after its anchor."""

    key: str  # client MAC ("aa:bb:..") or IP when layer 2 is not visible
    anchor_utc: float  # epoch seconds of the anchor
    queries: tuple[Query, ...]  # sorted by t
    device: str | None = None  # ground-truth device label, when known
    experiment: str = ""  # where it came from (capture id, log name)
    day: str = ""  # ISO date (UTC) of the anchor, for temporal splits

    def window(self, seconds: float) -> tuple[Query, ...]:
        """The queries within ``seconds`` of the anchor (``t <= seconds``)."""
        return tuple(q for q in self.queries if q.t <= seconds)

    @property
    def has_dns(self) -> bool:
        return bool(self.queries)
