"""Streaming reader of classic pcap and pcapng captures, in pure Python.

Formats: classic pcap (both byte orders, micro- and nanosecond magic) and pcapng
(draft-ietf-opsawg-pcapng: SHB in either byte order, IDB with ``if_tsresol`` and
``if_tsoffset``, EPB, SPB and the obsolete PB; every other block is skipped and counted).

The reader never loads a whole file: it reads one record or block at a time and only reads
forward, so it works on non-seekable streams such as ``tarfile`` members in ``"r|gz"`` mode.
Damaged records are counted in :class:`ReadStats` and skipped; only a file that is not a
capture at all raises :class:`CaptureFormatError`.
"""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from types import TracebackType
from typing import IO

from phloem.core.errors import PhloemError

__all__ = [
    "CAPTURE_MAGICS",
    "CaptureFormat",
    "CaptureFormatError",
    "PcapReader",
    "RawPacket",
    "ReadStats",
    "looks_like_capture",
]

# A record or block larger than this is taken as corruption, not as data (largest real
# snaplen is 262144; pcapng blocks carry options on top).
_MAX_RECORD_BYTES = 16 * 1024 * 1024

_PCAPNG_SHB = 0x0A0D0D0A
_PCAPNG_BOM = 0x1A2B3C4D
# the SHB block type is a palindrome: the same four bytes open a section in either byte order
_SHB_MAGIC = struct.pack("<I", _PCAPNG_SHB)
# the section's byte order, by how its byte-order magic reads
_BOM_ENDIAN = {struct.pack(e + "I", _PCAPNG_BOM): e for e in "<>"}
_BLOCK_IDB = 1
_BLOCK_PB = 2
_BLOCK_SPB = 3
_BLOCK_EPB = 6
_OPT_END = 0
_OPT_TSRESOL = 9
_OPT_TSOFFSET = 14

# (endianness prefix, fractional-second divisor) by the first four bytes of a classic pcap
_PCAP_MAGICS: dict[bytes, tuple[str, int]] = {
    b"\xd4\xc3\xb2\xa1": ("<", 1_000_000),
    b"\xa1\xb2\xc3\xd4": (">", 1_000_000),
    b"\x4d\x3c\xb2\xa1": ("<", 1_000_000_000),
    b"\xa1\xb2\x3c\x4d": (">", 1_000_000_000),
}

CAPTURE_MAGICS: frozenset[bytes] = frozenset({*_PCAP_MAGICS, _SHB_MAGIC})
"""The first four bytes of every capture :class:`PcapReader` reads: classic pcap in both byte
orders and resolutions, and pcapng."""


def looks_like_capture(head: bytes) -> bool:
    """Whether bytes starting a file (at least its first four) are a pcap or pcapng magic."""
    return head[:4] in CAPTURE_MAGICS


class CaptureFormatError(PhloemError, ValueError):
    """A file is not a pcap or pcapng capture (or its file header is cut short)."""

    def __init__(self, name: str, problem: str) -> None:
        self.name = name
        self.problem = problem
        super().__init__(
            f"{name}: {problem}. Expected a classic pcap or pcapng capture "
            "(e.g. written by tcpdump or Wireshark); decompress .gz/.tar files first."
        )


class CaptureFormat(Enum):
    """Container format of a capture file."""

    PCAP = "pcap"
    PCAPNG = "pcapng"


@dataclass(frozen=True, slots=True)
class RawPacket:
    """One captured frame, before any decoding.

    Attributes
    ----------
    ts
        Capture time, UTC epoch seconds. ``nan`` for pcapng Simple Packet Blocks, which carry
        no timestamp.
    link_type
        LINKTYPE_* value of the interface (e.g. 1 Ethernet, 113 Linux SLL, 101 raw IP).
    data
        Captured bytes (possibly shorter than the frame on the wire, by the snap length).
    interface
        Interface index within the pcapng section; always 0 for classic pcap.
    """

    ts: float
    link_type: int
    data: bytes
    interface: int


@dataclass(slots=True)
class ReadStats:
    """Counters kept while reading; read them after (or during) iteration.

    Attributes
    ----------
    packets
        Packets yielded.
    malformed
        Records or blocks whose fields are inconsistent (bad lengths, unknown interface).
    truncated
        Records or blocks cut short by the end of the file (at most 1 per file).
    skipped_blocks
        pcapng blocks of types this reader does not use (statistics, name resolution, ...).
    """

    packets: int = 0
    malformed: int = 0
    truncated: int = 0
    skipped_blocks: int = 0


@dataclass(slots=True)
class _Interface:
    link_type: int
    snaplen: int
    # timestamp unit: ts = ticks / divisor when decimal, ticks * 2**-shift when binary
    divisor: int
    shift: int
    offset_s: int


class PcapReader:
    """Iterate over the packets of a pcap or pcapng file, counting damage instead of failing.

    Parameters
    ----------
    source
        A path, or a binary file object opened for reading (only ``read`` is used, so
        non-seekable streams work). A path is opened and closed by the reader; a file object
        is left open.
    name
        Name used in error messages; defaults to the path or the file object's ``name``.

    Raises
    ------
    CaptureFormatError
        If the file does not start with a pcap or pcapng header.

    Examples
    --------
    >>> with PcapReader("capture.pcap") as reader:  # doctest: +SKIP
    ...     for packet in reader:
    ...         ...
    ...     print(reader.stats.malformed)
    """

    def __init__(self, source: str | os.PathLike[str] | IO[bytes], *, name: str | None = None):
        self.stats = ReadStats()
        if isinstance(source, str | os.PathLike):
            self._file: IO[bytes] = Path(source).open("rb")  # noqa: SIM115 (closed by close())
            self._owns = True
            self.name = name or str(source)
        else:
            self._file = source
            self._owns = False
            self.name = name or str(getattr(source, "name", "<stream>"))
        try:
            self._head = self._file.read(4)
            self.format = self._detect()
        except BaseException:
            self.close()
            raise
        self._started = False

    def _detect(self) -> CaptureFormat:
        if len(self._head) < 4:
            raise CaptureFormatError(self.name, "file is empty or shorter than a capture header")
        if self._head in _PCAP_MAGICS:
            return CaptureFormat.PCAP
        if self._head == _SHB_MAGIC:
            return CaptureFormat.PCAPNG
        raise CaptureFormatError(self.name, f"unknown magic number 0x{self._head.hex()}")

    def __iter__(self) -> Iterator[RawPacket]:
        if self._started:
            raise RuntimeError(f"{self.name}: a PcapReader can be iterated only once")
        self._started = True
        if self.format is CaptureFormat.PCAP:
            return self._iter_pcap()
        return self._iter_pcapng()

    def close(self) -> None:
        """Close the file if the reader opened it."""
        if self._owns:
            self._file.close()

    def __enter__(self) -> PcapReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ---- classic pcap -------------------------------------------------------------------

    def _iter_pcap(self) -> Iterator[RawPacket]:
        endian, divisor = _PCAP_MAGICS[self._head]
        rest = self._file.read(20)
        if len(rest) < 20:
            raise CaptureFormatError(self.name, "pcap file header is cut short")
        network = struct.unpack(endian + "HHiIII", rest)[5]
        link_type = network & 0xFFFF  # upper bits may carry FCS information
        record = struct.Struct(endian + "IIII")
        read = self._file.read
        stats = self.stats
        while True:
            header = read(16)
            if not header:
                return
            if len(header) < 16:
                stats.truncated += 1
                return
            sec, frac, incl_len, _orig_len = record.unpack(header)
            if incl_len > _MAX_RECORD_BYTES:
                # no record boundary to resynchronise on: the rest of the file is lost
                stats.malformed += 1
                return
            data = read(incl_len)
            if len(data) < incl_len:
                stats.truncated += 1
                return
            if frac >= divisor:
                stats.malformed += 1
                continue
            stats.packets += 1
            yield RawPacket(sec + frac / divisor, link_type, data, 0)

    # ---- pcapng -------------------------------------------------------------------------

    def _iter_pcapng(self) -> Iterator[RawPacket]:
        read = self._file.read
        stats = self.stats
        endian = "<"
        interfaces: list[_Interface] = []
        head = self._head
        while True:
            head += read(8 - len(head))
            if not head:
                return
            if len(head) < 8:
                stats.truncated += 1
                return
            if head[:4] == _SHB_MAGIC:
                bom = read(4)
                if len(bom) < 4:
                    stats.truncated += 1
                    return
                if bom not in _BOM_ENDIAN:
                    stats.malformed += 1
                    return
                endian = _BOM_ENDIAN[bom]
                interfaces = []
                consumed = 12
            else:
                consumed = 8
            block_type, total = struct.unpack(endian + "II", head)
            head = b""
            if total < 12 or total % 4 or total > _MAX_RECORD_BYTES:
                stats.malformed += 1  # cannot find the next block boundary
                return
            body = read(total - consumed)
            if len(body) < total - consumed:
                stats.truncated += 1
                return
            if struct.unpack(endian + "I", body[-4:])[0] != total:
                stats.malformed += 1
                continue
            body = body[: total - consumed - 4]
            if block_type == _PCAPNG_SHB:
                continue  # version and section length are not needed to read forward
            if block_type == _BLOCK_IDB:
                iface = _parse_idb(body, endian)
                if iface is None:
                    stats.malformed += 1
                    # keep indices aligned: later packets on it are then counted malformed
                    iface = _Interface(-1, 0, 1, 0, 0)
                interfaces.append(iface)
                continue
            if block_type in (_BLOCK_EPB, _BLOCK_PB, _BLOCK_SPB):
                packet = _parse_packet_block(block_type, body, endian, interfaces)
                if packet is None:
                    stats.malformed += 1
                else:
                    stats.packets += 1
                    yield packet
                continue
            stats.skipped_blocks += 1


def _parse_idb(body: bytes, endian: str) -> _Interface | None:
    """Interface Description Block body -> interface, or ``None`` when malformed."""
    if len(body) < 8:
        return None
    link_type, _, snaplen = struct.unpack_from(endian + "HHI", body)
    divisor, shift, offset_s = 1_000_000, 0, 0
    pos = 8
    while pos + 4 <= len(body):
        code, length = struct.unpack_from(endian + "HH", body, pos)
        pos += 4
        if code == _OPT_END:
            break
        if pos + length > len(body):
            return None
        if code == _OPT_TSRESOL and length == 1:
            value = body[pos]
            if value & 0x80:
                divisor, shift = 1, value & 0x7F
            else:
                if value > 18:
                    return None
                divisor, shift = 10**value, 0
        elif code == _OPT_TSOFFSET and length == 8:
            offset_s = struct.unpack_from(endian + "q", body, pos)[0]
        pos += (length + 3) & ~3
    return _Interface(link_type, snaplen, divisor, shift, offset_s)


def _parse_packet_block(
    block_type: int, body: bytes, endian: str, interfaces: list[_Interface]
) -> RawPacket | None:
    """EPB, obsolete PB or SPB body -> packet, or ``None`` when malformed."""
    if block_type == _BLOCK_SPB:
        if len(body) < 4 or not interfaces or interfaces[0].link_type < 0:
            return None
        (orig_len,) = struct.unpack_from(endian + "I", body)
        cap_len = min(orig_len, len(body) - 4)
        if interfaces[0].snaplen:
            cap_len = min(cap_len, interfaces[0].snaplen)
        return RawPacket(math.nan, interfaces[0].link_type, body[4 : 4 + cap_len], 0)
    if block_type == _BLOCK_EPB:
        if len(body) < 20:
            return None
        if_id, ts_high, ts_low, cap_len, _ = struct.unpack_from(endian + "IIIII", body)
    else:
        if len(body) < 20:
            return None
        if_id, _, ts_high, ts_low, cap_len, _ = struct.unpack_from(endian + "HHIIII", body)
    if if_id >= len(interfaces) or 20 + cap_len > len(body):
        return None
    iface = interfaces[if_id]
    if iface.link_type < 0:
        return None
    ticks = (ts_high << 32) | ts_low
    if iface.shift:
        ts = math.ldexp(ticks, -iface.shift)
    else:
        # split to keep sub-microsecond digits that one big division would round away
        sec, frac = divmod(ticks, iface.divisor)
        ts = sec + frac / iface.divisor
    return RawPacket(ts + iface.offset_s, iface.link_type, body[20 : 20 + cap_len], if_id)
