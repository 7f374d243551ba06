"""Live inputs for the identifier: a growing resolver log, Pi-hole's FTL database, an interface.

A home gateway runs the identifier continuously, so the offline readers of
:mod:`phloem.iot.logs` and :mod:`phloem.iot.pcap` get live counterparts here:

- :func:`follow_lines` follows a text log like ``tail -F`` (survives logrotate's rename and
  copytruncate); feed its lines to :func:`~phloem.iot.logs.read_dnsmasq` or
  :func:`~phloem.iot.logs.read_unbound`.
- :func:`follow_ftl` polls Pi-hole FTL's SQLite ``queries`` table, read-only, for new rows.
- :func:`capture_interface` captures frames on a Linux interface with an ``AF_PACKET`` raw
  socket and yields :class:`~phloem.iot.pcap.RawPacket` s for
  :func:`~phloem.iot.events.events_from_packets`.

All three poll or time out at a fixed period instead of spinning, and stop when a
:class:`threading.Event` is set (or, for the followers, after a quiet period).
"""

from __future__ import annotations

import math
import os
import socket
import sqlite3
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from phloem.core.errors import PhloemError
from phloem.iot.logs import LogQuery, LogStats, ftl_macs, ftl_record
from phloem.iot.packets import LinkType
from phloem.iot.pcap import RawPacket

__all__ = [
    "CapturePermissionError",
    "CaptureStats",
    "LiveCapture",
    "LiveCaptureError",
    "LiveSourceError",
    "can_capture",
    "capture_interface",
    "follow_ftl",
    "follow_lines",
]

_CHUNK_BYTES = 64 * 1024
# a "line" this long without a newline is not a log line; hand it over rather than grow forever
_MAX_LINE_BYTES = 1024 * 1024
_FTL_BATCH_ROWS = 5000
# SQLite messages that mean "try again later", not "this is the wrong file"
_FTL_TRANSIENT = ("database is locked", "database is busy", "unable to open database file")

_ETH_P_ALL = 0x0003
_PACKET_OUTGOING = 4  # socket.PACKET_OUTGOING, spelled out: absent on non-Linux builds
_ARPHRD_LOOPBACK = 772
# hardware types whose devices have no link header: SOCK_RAW data starts at the IP header
_ARPHRD_RAW_IP = frozenset({512, 519, 0xFFFE})  # PPP, RAWIP, NONE (tun, WireGuard)
# advice, not a parameter of this module: it names the command that follows a log
_FOLLOW_HINT = (
    "follow a dnsmasq/Pi-hole/unbound log or Pi-hole's FTL database instead "
    "(`phloem iot monitor --follow LOG`)"
)


class LiveSourceError(PhloemError):
    """A live log or database cannot be followed (e.g. it is not a Pi-hole FTL database)."""


class LiveCaptureError(PhloemError):
    """Live capture cannot start or stopped on an error; the message says why and what to do."""


class CapturePermissionError(LiveCaptureError, PermissionError):
    """Live capture needs the ``CAP_NET_RAW`` capability that this process lacks."""


# ---- shared polling helpers -------------------------------------------------------------


def _check_timing(poll_s: float, idle_timeout_s: float | None) -> None:
    if not (math.isfinite(poll_s) and poll_s > 0):
        raise ValueError(f"poll_s must be a positive number of seconds, got {poll_s!r}")
    if idle_timeout_s is not None and not idle_timeout_s >= 0:
        raise ValueError(f"idle_timeout_s must be None or >= 0 seconds, got {idle_timeout_s!r}")


def _stopped(stop: threading.Event | None) -> bool:
    return stop is not None and stop.is_set()


def _pause(
    poll_s: float, stop: threading.Event | None, idle_timeout_s: float | None, last_data: float
) -> bool:
    """Sleep until the next poll; ``False`` when following should end (stop set, or idle)."""
    wait = poll_s
    if idle_timeout_s is not None:
        left = last_data + idle_timeout_s - time.monotonic()
        if left <= 0:
            return False
        wait = min(wait, left)  # wake at the deadline for one last poll
    if stop is None:
        time.sleep(wait)
        return True
    return not stop.wait(wait)


# ---- follow_lines -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Start:
    """Where following starts: this inode, at this offset (the end of the file at the call)."""

    ident: tuple[int, int]
    offset: int


def _decode_line(raw: bytes) -> str:
    if raw.endswith(b"\r"):
        raw = raw[:-1]
    return raw.decode("utf-8", errors="replace")


class _LineTail:
    """One followed path: the open file, its identity, and the unfinished last line."""

    def __init__(self, path: Path, start: _Start | None) -> None:
        self.path = path
        self._start = start
        self._file: IO[bytes] | None = None
        self._ident = (0, 0)
        self._partial = b""

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def poll(self) -> list[str] | None:
        """Complete lines read now; ``None`` when nothing happened (time to sleep)."""
        if self._file is None and not self._open():
            return None
        assert self._file is not None
        chunk = self._file.read(_CHUNK_BYTES)
        if chunk:
            return self._split(chunk)
        return self._at_end()

    def _open(self) -> bool:
        try:
            f = self.path.open("rb")
        except FileNotFoundError:
            return False  # not created yet (or between rotation steps): wait for it
        st = os.fstat(f.fileno())
        self._ident = (st.st_dev, st.st_ino)
        start, self._start = self._start, None  # only the first file honours the start point
        if start is not None and start.ident == self._ident and st.st_size >= start.offset:
            f.seek(start.offset)
        self._file = f
        return True

    def _split(self, chunk: bytes) -> list[str]:
        # split bytes, not text: b"\n" never occurs inside a multi-byte UTF-8 sequence
        *complete, self._partial = (self._partial + chunk).split(b"\n")
        lines = [_decode_line(raw) for raw in complete]
        if len(self._partial) > _MAX_LINE_BYTES:
            lines.append(_decode_line(self._partial))
            self._partial = b""
        return lines

    def _at_end(self) -> list[str] | None:
        """At end of file: notice rotation or truncation, else report that nothing happened."""
        assert self._file is not None
        try:
            st = os.stat(self.path)
        except OSError:
            return None  # renamed away and not recreated yet: the old file may still grow
        if (st.st_dev, st.st_ino) != self._ident:
            if st.st_size == 0:
                # logrotate creates the new file before the writer reopens its log; until the
                # writer writes there, its lines still land in the old file
                return None
            lines = self._split(self._file.read())
            if self._partial:
                lines.append(_decode_line(self._partial))  # the old file is finished
                self._partial = b""
            self.close()
            self._open()
            return lines
        if os.fstat(self._file.fileno()).st_size < self._file.tell():
            # copytruncate: start again at the top; a held partial line is kept, since an
            # appending writer continues it at the new end of the file
            self._file.seek(0)
            return []
        return None


def follow_lines(
    path: str | os.PathLike[str],
    *,
    poll_s: float = 0.5,
    from_start: bool = False,
    stop: threading.Event | None = None,
    idle_timeout_s: float | None = None,
) -> Iterator[str]:
    """Follow a growing text file like ``tail -F``, yielding each complete line.

    Parameters
    ----------
    path
        The log file. It may not exist yet (it is waited for, then read from its start), but
        its folder must.
    poll_s
        Seconds to sleep when no new data is available.
    from_start
        Read the lines already in the file first. By default following starts at the end of
        the file as it is when this function is called (so lines appended after the call,
        even before iteration starts, are yielded).
    stop
        Following ends, at the latest ``poll_s`` later, once this event is set.
    idle_timeout_s
        Following ends when no new data came for this many seconds (``None``: never).

    Yields
    ------
    str
        One line, without its ``\\n`` (or ``\\r\\n``), decoded as UTF-8 with undecodable
        bytes replaced by U+FFFD. A partial last line is held until its newline arrives, and
        is dropped when following ends.

    Raises
    ------
    FileNotFoundError
        At call time, when the folder of ``path`` does not exist.
    IsADirectoryError
        At call time, when ``path`` is a folder.
    ValueError
        ``poll_s`` is not positive or ``idle_timeout_s`` is negative.

    Notes
    -----
    Rotation by renaming (logrotate's default ``create``): once ``path`` names a different,
    non-empty file, the rest of the old file is read (a partial last line of it is yielded
    as is) and the new file is followed from its start. While the new file is still empty
    the old one is kept, because the writer keeps appending there until it reopens its log.
    Rotation by copying (``copytruncate``): when the file becomes shorter than the read
    offset it is read again from its start. Like ``tail``, a truncation that is refilled
    past the old offset between two polls goes unnoticed.
    """
    _check_timing(poll_s, idle_timeout_s)
    p = Path(path)
    parent = p.parent
    if not parent.is_dir():
        raise FileNotFoundError(
            f"cannot follow {p}: its folder {parent} does not exist (the log file itself may "
            "appear later, but its folder must exist); check the path"
        )
    if p.is_dir():
        raise IsADirectoryError(f"cannot follow {p}: it is a folder, not a log file")
    start: _Start | None = None
    if not from_start:
        try:
            st = p.stat()
        except FileNotFoundError:
            pass  # created later: all of it is new
        else:
            start = _Start((st.st_dev, st.st_ino), st.st_size)
    return _follow_lines(_LineTail(p, start), poll_s, stop, idle_timeout_s)


def _follow_lines(
    tail: _LineTail, poll_s: float, stop: threading.Event | None, idle_timeout_s: float | None
) -> Iterator[str]:
    last_data = time.monotonic()
    try:
        while not _stopped(stop):
            lines = tail.poll()
            if lines is None:
                if not _pause(poll_s, stop, idle_timeout_s, last_data):
                    return
                continue
            last_data = time.monotonic()
            yield from lines
    finally:
        tail.close()


# ---- follow_ftl -------------------------------------------------------------------------


def _ftl_connect(path: Path, poll_s: float) -> sqlite3.Connection:
    # a short busy timeout: FTL holds its write lock briefly, and a long wait would delay
    # the stop check; a lock that outlasts it is retried at the next poll
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=min(poll_s, 0.25))


def _ftl_fetch(path: Path, poll_s: float, sql: str, args: tuple[Any, ...]) -> list[Any]:
    """Run one read and close the connection before returning.

    Rows are fetched in full and the connection closed so that no read lock is held while
    the caller processes them: FTL cannot write while a reader holds the database.
    """
    con = _ftl_connect(path, poll_s)
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()


def _ftl_error(path: Path, exc: sqlite3.DatabaseError) -> LiveSourceError:
    return LiveSourceError(
        f"{path}: cannot read a Pi-hole FTL 'queries' table ({exc}); is it Pi-hole's "
        "pihole-FTL.db (usually /etc/pihole/pihole-FTL.db)?"
    )


def _ftl_max_id(path: Path, poll_s: float) -> int | None:
    """The largest query id, 0 for an empty table, ``None`` when the database is locked."""
    try:
        rows = _ftl_fetch(path, poll_s, "SELECT max(id) FROM queries", ())
    except sqlite3.OperationalError as exc:
        if any(m in str(exc) for m in _FTL_TRANSIENT):
            return None
        raise _ftl_error(path, exc) from None
    except sqlite3.DatabaseError as exc:
        raise _ftl_error(path, exc) from None
    value = rows[0][0]
    return int(value) if value is not None else 0


def follow_ftl(
    path: str | os.PathLike[str],
    *,
    poll_s: float = 1.0,
    from_start: bool = False,
    stop: threading.Event | None = None,
    idle_timeout_s: float | None = None,
    stats: LogStats | None = None,
) -> Iterator[LogQuery]:
    """Follow Pi-hole FTL's SQLite database, yielding the queries it records from now on.

    Parameters
    ----------
    path
        ``pihole-FTL.db``, opened read-only at each poll.
    poll_s
        Seconds between polls.
    from_start
        Yield the rows already in the table first. By default following starts after the
        largest ``id`` at call time (or at the first poll that finds the database unlocked).
    stop
        Following ends, at the latest ``poll_s`` later, once this event is set.
    idle_timeout_s
        Following ends when no new row came for this many seconds (``None``: never).
    stats
        Counters to update: ``lines`` counts rows, ``malformed`` the rows skipped because
        their domain or client is not text or their timestamp is missing.

    Yields
    ------
    LogQuery
        One per new row of ``queries``, in ``id`` order, with FTL's type code mapped to the
        DNS QTYPE.

    Raises
    ------
    FileNotFoundError
        At call time, when ``path`` does not exist.
    LiveSourceError
        When the file is not a SQLite database with a ``queries`` table (at call time, or
        later should it be replaced by one).
    ValueError
        ``poll_s`` is not positive or ``idle_timeout_s`` is negative.

    Notes
    -----
    A locked or momentarily missing database is retried at the next poll. If the largest
    ``id`` falls below the last one seen, the database was recreated and is read again from
    its first row.
    """
    _check_timing(poll_s, idle_timeout_s)
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(
            f"cannot follow {p}: no such file; Pi-hole keeps its query database at "
            "/etc/pihole/pihole-FTL.db"
        )
    last_id = 0 if from_start else _ftl_max_id(p, poll_s)
    return _follow_ftl(
        p, last_id, poll_s, stop, idle_timeout_s, stats if stats is not None else LogStats()
    )


def _ftl_macs(path: Path, poll_s: float) -> dict[str, str]:
    """:func:`~phloem.iot.logs.ftl_macs` of the database now (empty while it is busy)."""
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=poll_s)
    except sqlite3.Error:
        return {}
    try:
        return ftl_macs(con)
    except sqlite3.Error:
        return {}
    finally:
        con.close()


def _ftl_poll(path: Path, last_id: int, poll_s: float) -> list[Any] | None:
    """The next batch of rows after ``last_id``; ``None`` when the database is busy."""
    try:
        return _ftl_fetch(
            path,
            poll_s,
            "SELECT id, timestamp, type, domain, client FROM queries "
            "WHERE id > ? ORDER BY id LIMIT ?",
            (last_id, _FTL_BATCH_ROWS),
        )
    except sqlite3.OperationalError as exc:
        if any(m in str(exc) for m in _FTL_TRANSIENT):
            return None
        raise _ftl_error(path, exc) from None
    except sqlite3.DatabaseError as exc:
        raise _ftl_error(path, exc) from None


def _follow_ftl(
    path: Path,
    last_id: int | None,
    poll_s: float,
    stop: threading.Event | None,
    idle_timeout_s: float | None,
    st: LogStats,
) -> Iterator[LogQuery]:
    last_data = time.monotonic()
    while not _stopped(stop):
        if last_id is None:  # locked at call time: start after whatever is there now
            last_id = _ftl_max_id(path, poll_s)
            rows = None
        else:
            rows = _ftl_poll(path, last_id, poll_s)
        if not rows:
            if rows is not None and last_id:
                newest = _ftl_max_id(path, poll_s)
                if newest is not None and 0 < newest < last_id:
                    last_id = 0  # recreated database: its ids started again
                    continue
            if not _pause(poll_s, stop, idle_timeout_s, last_data):
                return
            continue
        last_data = time.monotonic()
        macs = _ftl_macs(path, poll_s)  # re-read each batch: new devices join the table
        for row_id, ts, typ, domain, client in rows:
            last_id = int(row_id)
            rec = ftl_record(ts, typ, domain, client, st)
            if rec is not None:
                yield replace(rec, client=macs.get(rec.client, rec.client))


# ---- capture_interface ------------------------------------------------------------------


def _permission_message(interface: str) -> str:
    exe = os.path.realpath(sys.executable)
    return (
        f"capturing on {interface} needs CAP_NET_RAW: run as root, or grant the capability "
        f"to the interpreter with `sudo setcap cap_net_raw,cap_net_admin=eip {exe}`, "
        f"or {_FOLLOW_HINT}"
    )


def _not_linux_message() -> str:
    return (
        f"live capture needs Linux (AF_PACKET sockets); this is {sys.platform}. "
        f"{_FOLLOW_HINT[0].upper()}{_FOLLOW_HINT[1:]}, or capture with tcpdump and read the "
        "pcap file"
    )


def _interfaces() -> str:
    try:
        return ", ".join(name for _, name in socket.if_nameindex()) or "(none)"
    except OSError:
        return "(could not list them)"


def _link_type(hatype: int) -> int:
    """LINKTYPE of the frames an ``AF_PACKET``/``SOCK_RAW`` socket reads on this hardware."""
    if hatype in _ARPHRD_RAW_IP:
        return int(LinkType.RAW)
    # Ethernet, and loopback, whose frames carry an all-zero Ethernet header
    return int(LinkType.ETHERNET)


def can_capture() -> tuple[bool, str]:
    """Whether this process can capture live packets (opens and closes a raw socket).

    Returns
    -------
    tuple of (bool, str)
        ``(True, reason)`` when an ``AF_PACKET`` raw socket opens, else ``(False, reason)``
        with the reason and the fix in words.
    """
    if not hasattr(socket, "AF_PACKET"):
        return False, _not_linux_message()
    try:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    except PermissionError:
        return False, _permission_message("an interface")
    except OSError as exc:
        return False, f"cannot open an AF_PACKET raw socket: {exc.strerror or exc}"
    sock.close()
    return True, "AF_PACKET raw sockets are available"


@dataclass(slots=True)
class CaptureStats:
    """Counters kept by :class:`LiveCapture`.

    Attributes
    ----------
    packets
        Packets yielded.
    loopback_duplicates
        Outgoing copies skipped on a loopback interface (each packet there is seen twice).
    """

    packets: int = 0
    loopback_duplicates: int = 0


class LiveCapture:
    """Frames captured on one interface, as :class:`~phloem.iot.pcap.RawPacket` s.

    Returned by :func:`capture_interface`; iterate it, and close it (or use it as a context
    manager) to release the socket early. Iteration ends when the ``stop`` event is set,
    and the socket is then closed.
    """

    def __init__(
        self,
        sock: socket.socket,
        interface: str,
        stop: threading.Event | None,
        snaplen: int,
    ) -> None:
        self.interface = interface
        self.stats = CaptureStats()
        self._sock: socket.socket | None = sock
        self._stop = stop
        self._snaplen = snaplen

    def __iter__(self) -> LiveCapture:
        return self

    def __next__(self) -> RawPacket:
        sock = self._sock
        if sock is None:
            raise StopIteration
        while not _stopped(self._stop):
            try:
                data, addr = sock.recvfrom(self._snaplen)
            except TimeoutError:
                continue  # the socket timeout exists only to look at ``stop``
            except OSError as exc:
                self.close()
                raise LiveCaptureError(
                    f"capture on {self.interface} stopped: {exc.strerror or exc}"
                ) from None
            ts = time.time()
            # addr = (ifname, ethertype, pkttype, hatype, hwaddr)
            pkttype, hatype = addr[2], addr[3]
            if pkttype == _PACKET_OUTGOING and hatype == _ARPHRD_LOOPBACK:
                self.stats.loopback_duplicates += 1
                continue
            self.stats.packets += 1
            return RawPacket(ts, _link_type(hatype), data, 0)
        self.close()
        raise StopIteration

    def close(self) -> None:
        """Close the socket; iteration then ends."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> LiveCapture:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _open_socket(interface: str) -> socket.socket:
    if not hasattr(socket, "AF_PACKET"):
        raise LiveCaptureError(_not_linux_message())
    try:
        # protocol 0 receives nothing until bind() names the protocol, so no frame from
        # another interface slips in between socket() and bind()
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    except PermissionError:
        raise CapturePermissionError(_permission_message(interface)) from None
    except OSError as exc:
        raise LiveCaptureError(
            f"cannot open a raw socket to capture on {interface}: {exc.strerror or exc}; "
            f"{_FOLLOW_HINT}"
        ) from None
    try:
        sock.bind((interface, _ETH_P_ALL))  # Python converts the protocol to network order
    except (OSError, ValueError) as exc:
        sock.close()
        raise LiveCaptureError(
            f"cannot capture on interface {interface!r}: "
            f"{getattr(exc, 'strerror', None) or exc}; available interfaces: {_interfaces()}"
        ) from None
    return sock


def capture_interface(
    interface: str,
    *,
    stop: threading.Event | None = None,
    snaplen: int = 65535,
    timeout_s: float = 0.5,
) -> LiveCapture:
    """Capture frames live on a Linux network interface.

    The capture is running when this function returns: frames that arrive before iteration
    starts are queued in the socket and yielded first.

    Parameters
    ----------
    interface
        Interface name, e.g. ``"eth0"`` or ``"br-lan"`` (``socket.if_nameindex()`` lists them).
        Promiscuous mode is not enabled: a gateway sees its clients' DNS traffic anyway.
    stop
        Capture ends, at the latest ``timeout_s`` later, once this event is set.
    snaplen
        Bytes kept of each frame.
    timeout_s
        Socket timeout, i.e. how often ``stop`` is checked while no frame arrives.

    Returns
    -------
    LiveCapture
        An iterator of :class:`~phloem.iot.pcap.RawPacket` with ``ts`` from
        :func:`time.time` at reception, ``interface`` 0, and ``link_type``
        :attr:`~phloem.iot.packets.LinkType.ETHERNET` (or ``RAW`` on interfaces without a
        link header, such as tun and WireGuard).

    Raises
    ------
    CapturePermissionError
        The process lacks ``CAP_NET_RAW``; the message gives the ``setcap`` command.
    LiveCaptureError
        Not Linux, or no such interface (the message lists the available ones).
    ValueError
        ``snaplen`` or ``timeout_s`` is not positive.

    Notes
    -----
    An ``AF_PACKET`` socket also sees the packets this host sends. On a loopback interface
    every packet is seen twice, once leaving (``PACKET_OUTGOING``) and once arriving
    (``PACKET_HOST``); the outgoing copy is skipped there (``recvfrom``'s address carries
    the packet type and hardware type) and counted in ``stats.loopback_duplicates``. On
    other interfaces outgoing packets are kept: they are the gateway's own traffic.
    """
    if snaplen <= 0:
        raise ValueError(f"snaplen must be a positive number of bytes, got {snaplen}")
    if not (math.isfinite(timeout_s) and timeout_s > 0):
        raise ValueError(f"timeout_s must be a positive number of seconds, got {timeout_s!r}")
    sock = _open_socket(interface)
    sock.settimeout(timeout_s)
    return LiveCapture(sock, interface, stop, snaplen)
