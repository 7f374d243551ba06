"""Any-time identification over a stream: answer as soon as confident, refine as queries come.

:class:`Tracker` follows every client of a network from its anchor (a DHCP join, or its first
query when it was not seen before) and asks an :class:`~phloem.iot.identify.Identifier` after
each of its queries, up to a horizon. It emits plain dicts (``phloem iot monitor`` writes them
as JSON lines):

``{"event": "join", ...}``
    a new client: key, anchor time, how it was anchored;
``{"event": "identified", ...}``
    the first confident answer (top probability at least the confidence threshold, not
    unknown), with the seconds it took;
``{"event": "revised", ...}``
    a later confident answer naming another device;
``{"event": "unknown", ...}``
    the first time the client is flagged as a device the model does not know;
``{"event": "final", ...}``
    the answer at the horizon (or at the end of the input), whatever its confidence.

Time is the observations' own clock (capture or log timestamps), so a replayed capture gives
the same lines as the live run did; :meth:`Tracker.advance` moves the clock without a query
(call it on a timer when following a live source, so clients that fall silent still get their
final answer on time).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from phloem.iot.events import Event, Observation, Query
from phloem.iot.identify import Answer, Identifier

__all__ = ["Tracker"]


@dataclass
class _Client:
    key: str
    anchor: float
    queries: list[Query] = field(default_factory=list)  # emptied once the client is final
    last_seen: float = -math.inf
    said: str | None = None  # device of the last identified/revised line
    flagged_unknown: bool = False
    done: bool = False


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="milliseconds")


@dataclass
class Tracker:
    """Per-client any-time identification over a time-ordered stream of observations.

    Parameters
    ----------
    identifier
        The trained identifier.
    horizon_s
        Seconds after the anchor at which a client's answer is final and it is no longer
        scored (its later queries are ignored until it joins again).
    confidence
        Top probability needed for an ``identified`` line (default: the identifier's own).
    anchor
        ``"dhcp-or-first-query"`` (default): a DHCP DISCOVER/REQUEST (re)starts a client's
        clock, and so does the first query of a client never seen; ``"first-query"``: DHCP
        is ignored.
    rejoin_after_s
        A known client silent for this long starts a new event at its next query (``None``:
        never; resolver logs without DHCP need this to see a device reboot).
    explain
        Put the driving names in identified/revised/final lines (costs one prediction per
        distinct name).
    """

    identifier: Identifier
    horizon_s: float = 60.0
    confidence: float | None = None
    anchor: str = "dhcp-or-first-query"
    rejoin_after_s: float | None = None
    explain: bool = True
    clients: dict[str, _Client] = field(default_factory=dict)
    now: float = -math.inf
    # the clients not yet final, and the rank of each key's first join (the order of
    # ``clients``, in which clients due at the same time get their final lines)
    _open: dict[str, _Client] = field(default_factory=dict, init=False, repr=False)
    _rank: dict[str, int] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.anchor not in ("first-query", "dhcp-or-first-query"):
            raise ValueError(
                f"anchor must be 'first-query' or 'dhcp-or-first-query', got {self.anchor!r}"
            )
        if not self.horizon_s >= 0:
            raise ValueError(f"horizon_s must be >= 0, got {self.horizon_s}")
        for key, c in self.clients.items():
            self._rank[key] = len(self._rank)
            if not c.done:
                self._open[key] = c

    @property
    def threshold(self) -> float:
        return self.identifier.confidence if self.confidence is None else self.confidence

    # --- input ---------------------------------------------------------------------------

    def feed(self, ob: Observation) -> list[dict[str, Any]]:
        """Take one observation; return the lines it causes (finals of others included)."""
        out = self.advance(ob.ts)
        c = self.clients.get(ob.key)
        if ob.kind == "dhcp":
            if self.anchor == "dhcp-or-first-query":
                if c is not None and not c.done:
                    out.append(self._final(c))
                c = self._join(ob.key, ob.ts, "dhcp", out)
            return out
        if c is None:
            c = self._join(ob.key, ob.ts, "first-query", out)
        elif (
            c.done
            and self.rejoin_after_s is not None
            and ob.ts - c.last_seen >= self.rejoin_after_s
        ):
            c = self._join(ob.key, ob.ts, "rejoin", out)
        c.last_seen = max(c.last_seen, ob.ts)
        if c.done:
            return out
        t = max(0.0, ob.ts - c.anchor)
        c.queries.append(Query(t, ob.name, ob.qtype, ob.resolver, ob.stack))
        out.extend(self._score(c, t))
        return out

    def advance(self, now: float) -> list[dict[str, Any]]:
        """Move the clock to ``now``; clients whose horizon passed get their final line."""
        if now > self.now:
            self.now = now
        due = [c for c in self._open.values() if self.now - c.anchor > self.horizon_s]
        due.sort(key=lambda c: self._rank[c.key])
        return [self._final(c) for c in due]

    def close(self) -> list[dict[str, Any]]:
        """End of input: every open client gets its final line (with the time it had)."""
        return [
            self._final(c) for c in sorted(self._open.values(), key=lambda c: self._rank[c.key])
        ]

    def run(self, observations: Iterable[Observation]) -> Iterator[dict[str, Any]]:
        """Feed a whole stream and yield its lines, closing at the end."""
        for ob in observations:
            yield from self.feed(ob)
        yield from self.close()

    # --- internals -----------------------------------------------------------------------

    def _join(self, key: str, ts: float, how: str, out: list[dict[str, Any]]) -> _Client:
        c = _Client(key, ts, last_seen=ts)
        self.clients[key] = c
        self._open[key] = c
        self._rank.setdefault(key, len(self._rank))
        out.append({"event": "join", "key": key, "t": _iso(ts), "anchor": how})
        return c

    def _event(self, c: _Client) -> Event:
        return Event(c.key, c.anchor, tuple(c.queries))

    def _score(self, c: _Client, elapsed: float) -> list[dict[str, Any]]:
        idt = self.identifier
        event = self._event(c)
        ans = idt.answer(event, elapsed, explain=False, confidence=self.threshold)
        out: list[dict[str, Any]] = []
        if ans.unknown and not c.flagged_unknown:
            c.flagged_unknown = True
            out.append(self._line("unknown", c, ans))
        if ans.confident and ans.device != c.said:
            kind = "identified" if c.said is None else "revised"
            c.said = ans.device
            if self.explain:
                ans = idt.with_drivers(event, ans)
            out.append(self._line(kind, c, ans))
        return out

    def _final(self, c: _Client) -> dict[str, Any]:
        c.done = True
        del self._open[c.key]
        elapsed = min(self.horizon_s, max(0.0, self.now - c.anchor))
        ans = self.identifier.answer(
            self._event(c), elapsed, explain=self.explain, confidence=self.threshold
        )
        c.queries = []  # a final client is never scored again; a rejoin starts a new one
        line = self._line("final", c, ans)
        line["identified_as"] = c.said
        return line

    def _line(self, kind: str, c: _Client, ans: Answer) -> dict[str, Any]:
        return {"event": kind, "t": _iso(c.anchor + ans.elapsed_s), **ans.to_dict()}
