"""Where observations come from: a capture, a resolver log, Pi-hole's database, an interface.

One entry point per use: :func:`sniff_format` guesses a file's format from its first bytes,
and :func:`open_observations` turns a file (read once, or followed as it grows) or a live
interface into one time-ordered stream of :class:`~phloem.iot.events.Observation` plus the
counters of what was read and skipped.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Literal, get_args

from phloem.core.errors import ConfigError
from phloem.iot.events import EventStats, Observation, observe_packets
from phloem.iot.logs import (
    LogQuery,
    LogStats,
    observations_from_log,
    read_dnsmasq,
    read_ftl_db,
    read_unbound,
)
from phloem.iot.pcap import PcapReader, looks_like_capture

if TYPE_CHECKING:
    from phloem.iot.live import CaptureStats

__all__ = ["SOURCE_KINDS", "SourceKind", "SourceStats", "open_observations", "sniff_format"]

SourceKind = Literal["pcap", "dnsmasq", "unbound", "ftl"]
SOURCE_KINDS: tuple[SourceKind, ...] = get_args(SourceKind)


def sniff_format(path: Path) -> SourceKind:
    """Guess a file's format: pcap/pcapng by magic, SQLite (FTL), unbound, else dnsmasq."""
    try:
        with path.open("rb") as fh:
            head = fh.read(512)
    except OSError as exc:
        raise ConfigError("SOURCE", f"cannot read {path}: {exc.strerror or exc}") from None
    if looks_like_capture(head):
        return "pcap"
    if head.startswith(b"SQLite format 3"):
        return "ftl"
    text = head.decode("utf-8", "replace")
    return "unbound" if text.startswith("[") and "unbound" in text else "dnsmasq"


@dataclass
class SourceStats:
    """What a source read: packet counters (captures) or line counters (logs)."""

    kind: str
    events: EventStats = field(default_factory=EventStats)
    log: LogStats = field(default_factory=LogStats)
    capture: CaptureStats | None = None  # set for an interface

    def summary(self) -> str:
        """One line for the user: what was read and what was skipped."""
        if self.kind in ("pcap", "interface"):
            d = self.events.decode
            looped = (
                f", loopback duplicates skipped {self.capture.loopback_duplicates}"
                if self.capture is not None
                else ""
            )
            return (
                f"packets read {self.events.packets}, malformed {d.malformed}, "
                f"undecodable DNS {self.events.malformed_dns}{looped}; DNS queries "
                f"{self.events.queries} (damaged input skipped, never fatal)"
            )
        return (
            f"log lines {self.log.lines}, queries {self.log.queries}, "
            f"malformed {self.log.malformed} (skipped)"
        )


def open_observations(
    path: Path | None,
    *,
    kind: str = "auto",
    follow: bool = False,
    interface: str | None = None,
    year: int | None = None,
    tz: tzinfo = UTC,
    stop: threading.Event | None = None,
    poll_s: float = 0.5,
) -> tuple[Iterator[Observation], SourceStats]:
    """A stream of observations and its counters.

    The counters fill in as the stream is read. For a capture or an interface,
    ``stats.events`` also holds the first packet's time: pass it on as
    ``events_from_observations(..., stats=stats.events)`` so that ``anchor="capture-start"``
    starts at the first packet, not at the first DNS or DHCP message.

    Parameters
    ----------
    path
        A pcap/pcapng capture, a dnsmasq/Pi-hole or unbound log, or Pi-hole's FTL database
        (``None`` with ``interface``).
    kind
        The format, or ``"auto"`` to sniff it.
    follow
        Keep reading as the log or database grows (``tail -F``; not for captures).
    interface
        Capture live on this interface instead of reading ``path`` (needs CAP_NET_RAW).
    year, tz
        dnsmasq lines carry neither: the year (default: this year) and the zone of their
        clock (UTC by default; a live gateway's log is in its local time).
    stop
        Ends a followed or live source.
    poll_s
        How often a followed source looks for new data.

    Raises
    ------
    ConfigError
        Unknown format, following a capture, or neither/both of ``path`` and ``interface``.
    """
    from phloem.iot import live

    if (path is None) == (interface is None):
        raise ConfigError("SOURCE", "give a file to read or --interface to capture on, not both")
    if interface is not None:
        stats = SourceStats("interface")
        cap = live.capture_interface(interface, stop=stop)
        stats.capture = cap.stats
        return observe_packets(cap, stats.events), stats
    assert path is not None
    if not follow and not path.exists():
        raise ConfigError("SOURCE", f"{path} does not exist")
    resolved: SourceKind
    if kind == "auto":
        resolved = sniff_format(path) if path.exists() else "dnsmasq"
    elif kind in SOURCE_KINDS:
        resolved = kind
    else:
        raise ConfigError("--source", f"unknown {kind!r}", ("auto", *SOURCE_KINDS))
    stats = SourceStats(resolved)
    if resolved == "pcap":
        if follow:
            raise ConfigError("--follow", "a capture file cannot be followed; use --interface")

        def packets() -> Iterator[Observation]:
            with PcapReader(path) as reader:
                yield from observe_packets(reader, stats.events)

        return packets(), stats
    if resolved == "ftl":
        records = (
            live.follow_ftl(path, poll_s=poll_s, stop=stop, stats=stats.log)
            if follow
            else read_ftl_db(path, stats=stats.log)  # already in time order (ORDER BY)
        )
        return observations_from_log(records), stats
    yr = year if year is not None else datetime.now(tz).year

    def whole_file() -> Iterator[str]:
        with path.open(encoding="utf-8", errors="replace") as fh:
            yield from fh

    # a follower takes its starting point now: lines written before the first read still count
    lines = live.follow_lines(path, poll_s=poll_s, stop=stop) if follow else whole_file()

    recs = (
        read_unbound(lines, stats=stats.log)
        if resolved == "unbound"
        else read_dnsmasq(lines, year=yr, tz=tz, stats=stats.log)
    )
    return observations_from_log(recs if follow else _sorted(recs)), stats


def _sorted(records: Iterator[LogQuery]) -> Iterator[LogQuery]:
    """A whole log read at once, in time order (logs of several resolvers may interleave)."""
    yield from sorted(records, key=lambda r: r.ts)
