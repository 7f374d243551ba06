"""The built-in input sources: pcap/pcapng captures, dnsmasq/Pi-hole and unbound logs, Pi-hole's
FTL database, and live capture on an interface.

Each class registers itself in :data:`~phloem.iot.sources.SOURCES`; see
:mod:`phloem.iot.sources` for the protocol and :func:`~phloem.iot.sources.open_observations`
for the entry point. The followers and the interface capture are :mod:`phloem.iot.live`'s,
looked up on that module at each call (so tests may replace them).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import ClassVar

from phloem.core.errors import ConfigError
from phloem.iot import live
from phloem.iot.events import Observation, observe_packets
from phloem.iot.logs import LogQuery, observations_from_log, read_dnsmasq, read_ftl_db, read_unbound
from phloem.iot.pcap import PcapReader, looks_like_capture
from phloem.iot.sources import (
    SOURCES,
    Medium,
    Reading,
    Sniff,
    Source,
    SourceStats,
    looks_like_text,
)

__all__ = ["DnsmasqLog", "DnsmasqParams", "FtlDatabase", "Interface", "PcapFile", "UnboundLog"]

_SQLITE_MAGIC = b"SQLite format 3"
#: what a resolver's log never shows: the querying stack's traits, the resolver it asked
_LOG_LACKS = frozenset({"stack", "resolver"})


@SOURCES.register
class PcapFile(Source):
    """A pcap or pcapng capture file, read once."""

    name: ClassVar[str] = "pcap"
    description: ClassVar[str] = "a pcap or pcapng capture"

    @classmethod
    def sniff(cls, head: bytes) -> Sniff:
        return Sniff.YES if looks_like_capture(head) else Sniff.NO

    @classmethod
    def summary(cls, stats: SourceStats) -> str:
        return stats.packet_summary()

    def open(
        self, target: str | os.PathLike[str], reading: Reading, stats: SourceStats
    ) -> Iterator[Observation]:
        if reading.follow:
            raise ConfigError(
                "follow", "a capture file cannot be followed; capture on an interface"
            )
        return self._read(Path(target), stats)

    @staticmethod
    def _read(path: Path, stats: SourceStats) -> Iterator[Observation]:
        with PcapReader(path) as reader:
            stats.records = reader.stats  # damaged and cut-short records, as they are met
            yield from observe_packets(reader, stats.events)


@contextmanager
def _unfollowable() -> Iterator[None]:
    """A path that cannot be followed (no such folder, a folder) is the caller's ``path``."""
    try:
        yield
    except (FileNotFoundError, IsADirectoryError) as exc:
        raise ConfigError("path", str(exc)) from None


def _lines(path: Path, reading: Reading) -> Iterable[str]:
    """A text log's lines: all of it now, or (following) those written from this call on."""
    if reading.follow:
        # the follower takes its starting point now: lines written before the first read count
        with _unfollowable():
            return live.follow_lines(path, poll_s=reading.poll_s, stop=reading.stop)

    def whole_file() -> Iterator[str]:
        with path.open(encoding="utf-8", errors="replace") as fh:
            yield from fh

    return whole_file()


def _in_time_order(records: Iterator[LogQuery], reading: Reading) -> Iterator[Observation]:
    """A whole log read at once is sorted (logs of several resolvers may interleave); a
    followed one is passed on as it comes."""
    return observations_from_log(records if reading.follow else _sorted(records))


def _sorted(records: Iterator[LogQuery]) -> Iterator[LogQuery]:
    yield from sorted(records, key=lambda r: r.ts)


@dataclass(frozen=True)
class DnsmasqParams:
    """Parameters of a dnsmasq log.

    Attributes
    ----------
    year
        The year of the lines, which carry none (``None``: this year, in the reading's zone).
    """

    year: int | None = None

    def __post_init__(self) -> None:
        if self.year is not None and not 1 <= self.year <= 9999:
            raise ConfigError("year", f"must be a year from 1 to 9999, got {self.year}")


@SOURCES.register
class DnsmasqLog(Source):
    """A dnsmasq (or Pi-hole) query log; the format assumed for any text no source claims."""

    name: ClassVar[str] = "dnsmasq"
    description: ClassVar[str] = "a dnsmasq or Pi-hole log"
    lacks: ClassVar[frozenset[str]] = _LOG_LACKS
    Params: ClassVar[type[DnsmasqParams]] = DnsmasqParams
    params: DnsmasqParams

    @classmethod
    def sniff(cls, head: bytes) -> Sniff:
        # any text no other source claims; not binary (random bytes, a compressed file)
        return Sniff.FALLBACK if looks_like_text(head) else Sniff.NO

    def open(
        self, target: str | os.PathLike[str], reading: Reading, stats: SourceStats
    ) -> Iterator[Observation]:
        year = self.params.year if self.params.year is not None else datetime.now(reading.tz).year
        lines = _lines(Path(target), reading)
        records = read_dnsmasq(lines, year=year, tz=reading.tz, stats=stats.log)
        return _in_time_order(records, reading)


@SOURCES.register
class UnboundLog(Source):
    """An unbound log with ``log-queries: yes``."""

    name: ClassVar[str] = "unbound"
    description: ClassVar[str] = "an unbound log"
    lacks: ClassVar[frozenset[str]] = _LOG_LACKS

    @classmethod
    def sniff(cls, head: bytes) -> Sniff:
        text = head.decode("utf-8", "replace")
        return Sniff.YES if text.startswith("[") and "unbound" in text else Sniff.NO

    def open(
        self, target: str | os.PathLike[str], reading: Reading, stats: SourceStats
    ) -> Iterator[Observation]:
        records = read_unbound(_lines(Path(target), reading), stats=stats.log)
        return _in_time_order(records, reading)


@SOURCES.register
class FtlDatabase(Source):
    """Pi-hole FTL's SQLite database (``pihole-FTL.db``), read once or polled for new rows."""

    name: ClassVar[str] = "ftl"
    description: ClassVar[str] = "Pi-hole's FTL database"
    lacks: ClassVar[frozenset[str]] = _LOG_LACKS

    @classmethod
    def sniff(cls, head: bytes) -> Sniff:
        return Sniff.YES if head.startswith(_SQLITE_MAGIC) else Sniff.NO

    def open(
        self, target: str | os.PathLike[str], reading: Reading, stats: SourceStats
    ) -> Iterator[Observation]:
        path = Path(target)
        if not reading.follow:
            return observations_from_log(read_ftl_db(path, stats=stats.log))  # in time order
        with _unfollowable():
            records = live.follow_ftl(
                path, poll_s=reading.poll_s, stop=reading.stop, stats=stats.log
            )
        return observations_from_log(records)


@SOURCES.register
class Interface(Source):
    """Live capture on a Linux network interface (``AF_PACKET``; needs CAP_NET_RAW)."""

    name: ClassVar[str] = "interface"
    description: ClassVar[str] = "live capture on a network interface"
    medium: ClassVar[Medium] = Medium.INTERFACE

    @classmethod
    def summary(cls, stats: SourceStats) -> str:
        return stats.packet_summary()

    def open(
        self, target: str | os.PathLike[str], reading: Reading, stats: SourceStats
    ) -> Iterator[Observation]:
        cap = live.capture_interface(os.fspath(target), stop=reading.stop)
        stats.capture = cap.stats
        return observe_packets(cap, stats.events)
