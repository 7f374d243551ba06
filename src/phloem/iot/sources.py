"""Where observations come from: a capture, a resolver log, Pi-hole's database, an interface.

Each kind of input is a :class:`Source`: a class that declares its ``name``, a one-line
``description`` and its frozen ``Params``, registers itself in :data:`SOURCES`, and turns a
file (or an interface) into a time-ordered stream of :class:`~phloem.iot.events.Observation`.
The built-in sources live in :mod:`phloem.iot.builtin_sources` (``pcap``, ``dnsmasq``,
``unbound``, ``ftl`` and the live ``interface``); adding one is one module that registers its
class and one line in the registry's ``populate`` list (or an import of that module).

One entry point per use: :func:`sniff_format` asks every file source how sure it is that a
file's first bytes are its format and takes the surest, and :func:`open_observations` turns a
file (read once, or followed as it grows) or a live interface into one stream of observations
plus the counters of what was read and skipped (:class:`SourceStats`).

Errors name this module's parameters (``path``, ``kind``, ``follow``, ...), never a
command-line option: the command line renames them to its own.
"""

from __future__ import annotations

import os
import threading
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, tzinfo
from enum import Enum, IntEnum
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from phloem.core.config import params_for
from phloem.core.errors import ConfigError
from phloem.core.registry import Configured, Registry
from phloem.iot.events import EventStats, Observation
from phloem.iot.logs import LogStats

if TYPE_CHECKING:
    from phloem.iot.live import CaptureStats
    from phloem.iot.pcap import ReadStats

__all__ = [
    "AUTO",
    "SOURCES",
    "Medium",
    "Reading",
    "Sniff",
    "Source",
    "SourceStats",
    "feature_gap",
    "file_sources",
    "looks_like_text",
    "open_observations",
    "sniff_format",
]

AUTO = "auto"
"""The ``kind`` that lets :func:`open_observations` pick the source (sniffed for a file)."""

_SNIFF_BYTES = 512


class Medium(Enum):
    """What a source reads: a file (by path) or a network interface (by name)."""

    FILE = "file"
    INTERFACE = "interface"


class Sniff(IntEnum):
    """How sure a file source is that a file's first bytes are its format."""

    NO = 0
    FALLBACK = 1  # could be: the format to assume when no source is sure (plain text)
    YES = 2


@dataclass(frozen=True)
class Reading:
    """How a source is read; the same for every source.

    Attributes
    ----------
    follow
        Keep reading as the file grows (``tail -F``); not every source can.
    stop
        Ends a followed or live source.
    poll_s
        How often a followed source looks for new data (> 0).
    tz
        The zone of timestamps that carry none (dnsmasq's): UTC by default; a live gateway's
        log is in its local time.
    """

    follow: bool = False
    stop: threading.Event | None = None
    poll_s: float = 0.5
    tz: tzinfo = UTC

    def __post_init__(self) -> None:
        if not self.poll_s > 0:
            raise ConfigError("poll_s", f"must be a positive number of seconds, got {self.poll_s}")


@dataclass
class SourceStats:
    """What a source read: packet counters (captures) or line counters (logs).

    ``kind`` is the source's registered name; :meth:`summary` asks that source how to say it.
    """

    kind: str
    events: EventStats = field(default_factory=EventStats)
    log: LogStats = field(default_factory=LogStats)
    capture: CaptureStats | None = None  # set for an interface
    records: ReadStats | None = None  # set for a capture file: its damaged records

    def summary(self) -> str:
        """One line for the user: what was read and what was skipped."""
        return SOURCES.get(self.kind, field="kind").summary(self)

    def damage(self) -> Counter[str]:
        """The damaged or skipped records, by kind (zeros left out)."""
        d = self.events.decode
        counts: Counter[str] = Counter(self.log.damaged)
        if self.records is not None:
            counts["damaged records"] += self.records.malformed
            counts["records cut short"] += self.records.truncated
        counts["malformed packets"] += d.malformed
        counts["undecodable DNS"] += self.events.malformed_dns
        counts["timestamps out of range"] += self.events.bad_timestamps
        return +counts

    def packet_summary(self) -> str:
        """The summary of a source of packets (a capture, an interface)."""
        d = self.events.decode
        looped = (
            f", loopback duplicates skipped {self.capture.loopback_duplicates}"
            if self.capture is not None
            else ""
        )
        records = ""
        if self.records is not None:
            records = (
                f", damaged records {self.records.malformed}, cut short {self.records.truncated}"
            )
        return (
            f"packets read {self.events.packets}{records}, malformed {d.malformed}, "
            f"undecodable DNS {self.events.malformed_dns}, timestamps out of range "
            f"{self.events.bad_timestamps}{looped}; DNS queries {self.events.queries} "
            f"(damaged input skipped, never fatal)"
        )

    def log_summary(self) -> str:
        """The summary of a source of log lines (or database rows)."""
        why = self.log.damage()
        return (
            f"log lines {self.log.lines}, queries {self.log.queries}, "
            f"malformed {self.log.malformed}{f' ({why})' if why else ''} (skipped)"
        )


class Source(Configured, ABC):
    """One kind of input: how to recognise it and how to read observations from it.

    Subclasses declare ``name``, ``description`` and ``Params`` (class attributes), implement
    :meth:`open`, and may override the hooks :meth:`sniff` (file sources that can be
    recognised by their first bytes) and :meth:`summary`.

    Built with an instance of its ``Params`` (default: ``Params()``), kept as ``params``.
    """

    medium: ClassVar[Medium] = Medium.FILE
    #: feature blocks (:class:`~phloem.iot.features.Block` values) this input never carries
    #: (a resolver log: no stack fingerprint, no resolver address)
    lacks: ClassVar[frozenset[str]] = frozenset()

    kind: ClassVar[str] = "source"

    @classmethod
    def sniff(cls, head: bytes) -> Sniff:
        """How sure this source is that a file starting with ``head`` is its format.

        ``head`` holds the first 512 bytes (fewer for a short file; none for a file that does
        not exist yet and is to be followed). Default: never.
        """
        return Sniff.NO

    @classmethod
    def summary(cls, stats: SourceStats) -> str:
        """One line on what was read (default: log lines)."""
        return stats.log_summary()

    @abstractmethod
    def open(
        self, target: str | os.PathLike[str], reading: Reading, stats: SourceStats
    ) -> Iterator[Observation]:
        """Observations of ``target`` (a path, or an interface name), in time order.

        Checks what it can at the call (raising :class:`~phloem.core.errors.ConfigError`
        that names the parameter at fault); reading happens as the result is iterated, and
        updates ``stats``.
        """


SOURCES: Registry[type[Source]] = Registry(
    "input source", "source", populate=["phloem.iot.builtin_sources"]
)
"""Input sources by name (``pcap``, ``dnsmasq``, ``unbound``, ``ftl``, ``interface``)."""


def feature_gap(blocks: Iterable[str], kind: str) -> str | None:
    """A one-line warning when a model built on feature ``blocks`` reads input of source
    ``kind`` that lacks some of them (a capture model fed a resolver log), else ``None``."""
    source = SOURCES.get(kind, field="kind")
    missing = sorted(set(map(str, blocks)) & source.lacks)
    if not missing:
        return None
    return (
        f"warning: the model uses the {', '.join(missing)} feature block(s), which {kind} "
        f"input does not carry; its answers rest on the other blocks and are less accurate "
        f"(train with --features log for logs)"
    )


def file_sources() -> list[type[Source]]:
    """The registered sources that read files, in registration order."""
    return [s for s in (SOURCES.get(n) for n in SOURCES.names()) if s.medium is Medium.FILE]


def _of_medium(medium: Medium) -> tuple[str, ...]:
    return tuple(n for n in SOURCES.names() if SOURCES.get(n).medium is medium)


def __getattr__(name: str) -> tuple[str, ...]:
    # SOURCE_KINDS: the names a file's ``kind`` may take, asked of the registry when read
    # (so that sources registered later count)
    if name == "SOURCE_KINDS":
        return _of_medium(Medium.FILE)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _head(path: Path) -> bytes:
    try:
        with path.open("rb") as fh:
            return fh.read(_SNIFF_BYTES)
    except OSError as exc:
        raise ConfigError("path", f"cannot read {path}: {exc.strerror or exc}") from None


#: magic numbers of compressed files: what to say
_COMPRESSED = {
    b"\x1f\x8b": "gzip-compressed (gunzip it first)",
    b"BZh": "bzip2-compressed (bunzip2 it first)",
    b"\xfd7zXZ\x00": "xz-compressed (unxz it first)",
    b"PK\x03\x04": "a zip archive (unzip it first)",
    b"\x28\xb5\x2f\xfd": "zstd-compressed (unzstd it first)",
}


def _check_content(path: Path, head: bytes, follow: bool) -> None:
    """One clear error for a file that cannot be any source's input: empty (unless it is
    followed: a log may be empty when it is created) or compressed."""
    if not head and not follow:
        raise ConfigError("path", f"{path} is empty: not a capture, a log or a database")
    for magic, what in _COMPRESSED.items():
        if head.startswith(magic):
            raise ConfigError("path", f"{path} is {what}")


def looks_like_text(head: bytes) -> bool:
    """Whether ``head`` could begin a text log: no NUL byte, and at least 95% of its characters
    printable or whitespace once decoded as UTF-8 (an empty head could be)."""
    if b"\x00" in head:
        return False
    text = head.decode("utf-8", "replace")
    if not text:
        return True
    good = sum(1 for c in text if c.isprintable() or c in "\t\r\n")
    return good >= 0.95 * len(text)


def _sniffed(head: bytes, what: str) -> str:
    best, name = Sniff.NO, ""
    for source in file_sources():
        sure = source.sniff(head)
        if sure > best:  # ties go to the source registered first
            best, name = sure, source.name
    if best is Sniff.NO:
        raise ConfigError(
            "kind",
            f"cannot tell the format of {what}: it is not a pcap/pcapng capture, an SQLite "
            "database or a text log; name its source if it is one",
            _of_medium(Medium.FILE),
        )
    return name


def sniff_format(path: Path) -> str:
    """The name of the file source surest that ``path`` is its format.

    Built in: pcap/pcapng by magic, SQLite (Pi-hole FTL), unbound's log prefix, else dnsmasq.

    Raises
    ------
    ConfigError
        ``path`` cannot be read (field ``path``), or no source recognises it (``kind``).
    """
    return _sniffed(_head(path), str(path))


def _pick(kind: str, medium: Medium, target: str) -> type[Source]:
    """The source ``kind`` names for a ``medium`` (``auto``: the first of that medium)."""
    allowed = (AUTO, *_of_medium(medium))
    if kind == AUTO:
        if len(allowed) == 1:
            raise ConfigError("kind", f"no registered source reads a {medium.value}")
        return SOURCES.get(allowed[1])
    if kind not in SOURCES:
        raise ConfigError("kind", f"unknown {SOURCES.kind} {kind!r}", allowed)
    source = SOURCES.get(kind)
    if source.medium is not medium:
        raise ConfigError("kind", f"{kind!r} does not read {target}", allowed)
    return source


def open_observations(
    path: Path | None,
    *,
    kind: str = AUTO,
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
        The registered source to read it with (:data:`SOURCES`), or ``"auto"``: sniff a file's
        format (:func:`sniff_format`; a file still to be created is taken for a dnsmasq log),
        or capture on an interface.
    follow
        Keep reading as the log or database grows (``tail -F``; not for captures).
    interface
        Capture live on this interface instead of reading ``path`` (needs CAP_NET_RAW).
    year
        A parameter of the sources that take it (dnsmasq lines carry no year; default: this
        year in ``tz``); ignored by the others.
    tz
        The zone of timestamps that carry none (dnsmasq's; UTC by default; a live gateway's
        log is in its local time).
    stop
        Ends a followed or live source.
    poll_s
        How often a followed source looks for new data.

    Raises
    ------
    ConfigError
        Neither or both of ``path`` and ``interface``, a missing file (``path``), an unknown
        source or one of the other medium (``kind``), following a capture (``follow``).
    """
    if (path is None) == (interface is None):
        raise ConfigError("path", "give a path to read or an interface to capture on, not both")
    reading = Reading(follow, stop, poll_s, tz)
    options = {} if year is None else {"year": year}
    if interface is not None:
        source = _pick(kind, Medium.INTERFACE, f"interface {interface}")
        stats = SourceStats(source.name)
        return source(params_for(source, options)).open(interface, reading, stats), stats
    assert path is not None
    if not follow and not path.exists():
        raise ConfigError("path", f"{path} does not exist")
    if path.is_file():
        _check_content(path, _head(path), follow)
    if kind == AUTO:
        # a followed log may not exist yet: nothing to sniff, the fallback format it is
        kind = sniff_format(path) if path.exists() else _sniffed(b"", str(path))
    source = _pick(kind, Medium.FILE, f"the file {path}")
    stats = SourceStats(source.name)
    return source(params_for(source, options)).open(path, reading, stats), stats
