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

:func:`monitor` is that loop: it feeds a tracker from a replayed file, or reads a live source
(:class:`Watched`: a followed log or an interface) in a thread while it ticks the tracker's
clock, stops after an idle period, and gives every open client its final line at the end --
after Ctrl-C or SIGTERM too.
"""

from __future__ import annotations

import json
import math
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Final, TextIO

from phloem.core.errors import ConfigError
from phloem.iot.events import Anchor, Event, Observation, Query
from phloem.iot.identify import Answer, Identifier
from phloem.iot.sources import AUTO, SourceStats, open_observations

__all__ = ["TRACKER_ANCHORS", "Emit", "Stopped", "Tracker", "Watched", "json_lines", "monitor"]

TRACKER_ANCHORS: Final = (Anchor.DHCP_OR_FIRST_QUERY.value, Anchor.FIRST_QUERY.value)
"""What may start a client's clock in a :class:`Tracker`."""

Emit = Callable[[list[dict[str, Any]]], None]
"""Takes the lines a tracker gives (possibly none) and writes them out."""


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
    anchor: Anchor | str = Anchor.DHCP_OR_FIRST_QUERY
    rejoin_after_s: float | None = None
    explain: bool = True
    clients: dict[str, _Client] = field(default_factory=dict)
    now: float = -math.inf
    # the clients not yet final, and the rank of each key's first join (the order of
    # ``clients``, in which clients due at the same time get their final lines)
    _open: dict[str, _Client] = field(default_factory=dict, init=False, repr=False)
    _rank: dict[str, int] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.anchor not in TRACKER_ANCHORS:
            raise ConfigError("anchor", f"unknown {str(self.anchor)!r}", TRACKER_ANCHORS)
        self.anchor = Anchor(self.anchor)
        if not self.horizon_s >= 0:
            raise ConfigError("horizon_s", f"must be >= 0, got {self.horizon_s}")
        if self.confidence is not None and not 0.0 < self.confidence <= 1.0:
            raise ConfigError("confidence", f"{self.confidence} is not in (0, 1]")
        if self.rejoin_after_s is not None and not self.rejoin_after_s >= 0:
            raise ConfigError("rejoin_after_s", f"must be >= 0 seconds, got {self.rejoin_after_s}")
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
            if self.anchor is Anchor.DHCP_OR_FIRST_QUERY:
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


# ---- the monitor loop ---------------------------------------------------------------------


class Stopped(StrEnum):
    """Why :func:`monitor` returned."""

    END = "end of input"
    IDLE = "idle timeout"
    INTERRUPTED = "interrupted"


def json_lines(sink: TextIO) -> Emit:
    """An :data:`Emit` that writes each line as one JSON object per text line, then flushes."""

    def emit(lines: list[dict[str, Any]]) -> None:
        for line in lines:
            sink.write(json.dumps(line) + "\n")
        sink.flush()

    return emit


@dataclass(frozen=True)
class Watched:
    """What a monitor watches: a file replayed or followed, or a live interface.

    Attributes
    ----------
    path
        A capture, a resolver log or Pi-hole's FTL database (``None`` with ``interface``).
    interface
        Capture live here instead (needs CAP_NET_RAW).
    kind
        The source (:data:`~phloem.iot.sources.SOURCES`), or ``"auto"``.
    follow
        Keep reading ``path`` as it grows.
    year
        The year of dnsmasq lines (default: this year).
    """

    path: Path | None = None
    interface: str | None = None
    kind: str = AUTO
    follow: bool = False
    year: int | None = None

    @property
    def live(self) -> bool:
        """Followed or captured live: read as it happens, on the gateway's own clock."""
        return self.follow or self.interface is not None

    def open(self, stop: threading.Event) -> tuple[Iterator[Observation], SourceStats]:
        """The observations and their counters (see
        :func:`~phloem.iot.sources.open_observations`); ``stop`` ends a live source.

        A live source runs on the gateway, whose dnsmasq log is in its local time; a replayed
        file is read in UTC.
        """
        tz = (datetime.now().astimezone().tzinfo or UTC) if self.live else UTC
        return open_observations(
            self.path,
            kind=self.kind,
            follow=self.follow,
            interface=self.interface,
            year=self.year,
            tz=tz,
            stop=stop,
        )


def monitor(
    tracker: Tracker,
    observations: Iterable[Observation],
    emit: Emit,
    *,
    live: bool = False,
    stop: threading.Event | None = None,
    idle_timeout_s: float | None = None,
    tick_s: float = 0.5,
) -> Stopped:
    """Feed ``observations`` to ``tracker`` and ``emit`` every line it gives.

    A replayed file is fed as fast as it is read. A live source (``live``: a followed log, an
    interface) is read in a thread while the tracker's clock ticks every ``tick_s`` seconds of
    wall time, so a client that falls silent still gets its final line on time. Whatever
    ends the loop -- the end of the input, ``idle_timeout_s`` seconds without an observation
    (live sources), Ctrl-C or SIGTERM (as :class:`KeyboardInterrupt`), or an error of the
    source -- ``stop`` is set and every open client gets its final line before this returns
    (or re-raises the error).

    Returns
    -------
    Stopped
        Why the loop ended.
    """
    if idle_timeout_s is not None and not idle_timeout_s >= 0:
        raise ConfigError("idle_timeout_s", f"must be >= 0 seconds, got {idle_timeout_s}")
    stop = stop if stop is not None else threading.Event()
    try:
        if not live:
            for ob in observations:
                emit(tracker.feed(ob))
            return Stopped.END
        return _pump(observations, tracker, emit, stop, idle_timeout_s, tick_s)
    except KeyboardInterrupt:
        return Stopped.INTERRUPTED  # every open client still gets its final line
    finally:
        stop.set()
        emit(tracker.close())


def _pump(
    observations: Iterable[Observation],
    tracker: Tracker,
    emit: Emit,
    stop: threading.Event,
    idle_timeout_s: float | None,
    tick_s: float,
) -> Stopped:
    """Read a live source in a thread; tick the tracker's clock meanwhile."""
    q: queue.Queue[Any] = queue.Queue(maxsize=10_000)
    done = object()
    failure: list[BaseException] = []

    def reader() -> None:
        try:
            for ob in observations:
                q.put(ob)
                if stop.is_set():
                    break
        except BaseException as exc:  # handed to the main thread
            failure.append(exc)
        finally:
            q.put(done)

    threading.Thread(target=reader, name="phloem-monitor-reader", daemon=True).start()
    reason = Stopped.END
    last = time.monotonic()
    while True:
        try:
            item = q.get(timeout=tick_s)
        except queue.Empty:
            emit(tracker.advance(time.time()))
            if idle_timeout_s is not None and time.monotonic() - last > idle_timeout_s:
                stop.set()  # the reader notices within its poll period and finishes
                reason = Stopped.IDLE
            continue
        last = time.monotonic()
        if item is done:
            break
        emit(tracker.feed(item))
    if failure:
        raise failure[0]
    return reason
