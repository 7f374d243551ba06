"""DNS message parser (RFC 1035 section 4), loop-safe name decompression included.

:func:`parse_dns` reads the header, the question section and the answer section (A, AAAA,
CNAME, PTR, NS and DNAME data decoded; other types kept as raw bytes). Authority and
additional sections are counted but not parsed. Malformed input raises
:class:`DnsParseError`, which callers count and skip.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

from phloem.core.errors import PhloemError

__all__ = ["QTYPE", "DnsMessage", "DnsParseError", "DnsQuestion", "DnsRecord", "parse_dns"]

#: Names of common DNS record types (RFC 1035, 3596, 2782, 6891, 9460, ...).
QTYPE: dict[int, str] = {
    1: "A",
    2: "NS",
    5: "CNAME",
    6: "SOA",
    12: "PTR",
    13: "HINFO",
    15: "MX",
    16: "TXT",
    28: "AAAA",
    33: "SRV",
    35: "NAPTR",
    39: "DNAME",
    41: "OPT",
    43: "DS",
    46: "RRSIG",
    47: "NSEC",
    48: "DNSKEY",
    64: "SVCB",
    65: "HTTPS",
    255: "ANY",
}

_TYPE_A = 1
_TYPE_AAAA = 28
_NAME_TYPES = frozenset({2, 5, 12, 39})  # NS, CNAME, PTR, DNAME: rdata is one domain name
_MAX_NAME = 255
_HEADER = struct.Struct("!HHHHHH")
_QFIXED = struct.Struct("!HH")
_RFIXED = struct.Struct("!HHIH")


class DnsParseError(PhloemError, ValueError):
    """A DNS message is malformed or truncated; ``offset`` is where parsing stopped."""

    def __init__(self, problem: str, offset: int) -> None:
        self.problem = problem
        self.offset = offset
        super().__init__(f"malformed DNS message at byte {offset}: {problem}")


@dataclass(frozen=True, slots=True)
class DnsQuestion:
    """One question: ``name`` lower-cased without the trailing dot (root is ``""``)."""

    name: str
    qtype: int
    qclass: int


@dataclass(frozen=True, slots=True)
class DnsRecord:
    """One resource record of the answer section.

    ``data`` is a dotted/colon address string for A/AAAA, a lower-cased name for
    CNAME/PTR/NS/DNAME, and the raw rdata bytes for every other type.
    """

    name: str
    rtype: int
    rclass: int
    ttl: int
    data: str | bytes


@dataclass(frozen=True, slots=True)
class DnsMessage:
    """A parsed DNS message (header, questions, answers)."""

    id: int
    qr: bool
    opcode: int
    aa: bool
    tc: bool
    rd: bool
    ra: bool
    rcode: int
    questions: tuple[DnsQuestion, ...]
    answers: tuple[DnsRecord, ...]
    authority_count: int
    additional_count: int

    @property
    def is_response(self) -> bool:
        """Whether this is a response (QR bit set)."""
        return self.qr


def _read_name(buf: bytes, pos: int) -> tuple[str, int]:
    """Decode the (possibly compressed) name at ``pos``; return it and the offset after it.

    Loop safety: a compression pointer must point strictly before the label sequence that
    contains it (RFC 1035: "a prior occurrence"), so each jump moves backwards and decoding
    terminates.
    """
    labels: list[bytes] = []
    length = 0
    end = -1  # offset after the name in the original position, set at the first jump
    run_start = pos
    n = len(buf)
    while True:
        if pos >= n:
            raise DnsParseError("name runs past the end of the message", pos)
        size = buf[pos]
        if size == 0:
            pos += 1
            break
        kind = size & 0xC0
        if kind == 0xC0:
            if pos + 1 >= n:
                raise DnsParseError("compression pointer cut short", pos)
            target = ((size & 0x3F) << 8) | buf[pos + 1]
            if target >= run_start:
                raise DnsParseError(f"compression pointer to {target} is not backwards", pos)
            if end < 0:
                end = pos + 2
            pos = run_start = target
            continue
        if kind:
            raise DnsParseError(f"unsupported label type 0x{kind:02x}", pos)
        label = buf[pos + 1 : pos + 1 + size]
        if len(label) < size:
            raise DnsParseError("label runs past the end of the message", pos)
        length += size + 1
        if length > _MAX_NAME:
            raise DnsParseError("name longer than 255 bytes", pos)
        labels.append(label)
        pos += 1 + size
    name = b".".join(labels).lower().decode("utf-8", "backslashreplace")
    return name, (end if end >= 0 else pos)


def _read_record(buf: bytes, pos: int) -> tuple[DnsRecord, int]:
    name, pos = _read_name(buf, pos)
    if pos + 10 > len(buf):
        raise DnsParseError("resource record header cut short", pos)
    rtype, rclass, ttl, rdlength = _RFIXED.unpack_from(buf, pos)
    pos += 10
    end = pos + rdlength
    if end > len(buf):
        raise DnsParseError("rdata runs past the end of the message", pos)
    data: str | bytes
    if rtype == _TYPE_A and rclass == 1:
        if rdlength != 4:
            raise DnsParseError(f"A record with {rdlength} bytes of data", pos)
        data = socket.inet_ntop(socket.AF_INET, buf[pos:end])
    elif rtype == _TYPE_AAAA and rclass == 1:
        if rdlength != 16:
            raise DnsParseError(f"AAAA record with {rdlength} bytes of data", pos)
        data = socket.inet_ntop(socket.AF_INET6, buf[pos:end])
    elif rtype in _NAME_TYPES:
        data, after = _read_name(buf, pos)
        if after != end:
            raise DnsParseError("name in rdata does not fill rdlength", pos)
    else:
        data = buf[pos:end]
    return DnsRecord(name, rtype, rclass, ttl, data), end


def parse_dns(buf: bytes) -> DnsMessage:
    """Parse one DNS message (no TCP length prefix).

    Parameters
    ----------
    buf
        The message, as carried in a UDP payload.

    Returns
    -------
    DnsMessage
        Header flags, questions and answers. Bytes after the answer section are not read.

    Raises
    ------
    DnsParseError
        When the header, a question or an answer is cut short, a compression pointer loops
        or points outside the message, a name exceeds 255 bytes, or A/AAAA data have the
        wrong length.
    """
    if len(buf) < 12:
        raise DnsParseError(f"header needs 12 bytes, got {len(buf)}", 0)
    ident, flags, qdcount, ancount, nscount, arcount = _HEADER.unpack_from(buf)
    pos = 12
    questions = []
    for _ in range(qdcount):
        name, pos = _read_name(buf, pos)
        if pos + 4 > len(buf):
            raise DnsParseError("question cut short", pos)
        qtype, qclass = _QFIXED.unpack_from(buf, pos)
        pos += 4
        questions.append(DnsQuestion(name, qtype, qclass))
    answers = []
    for _ in range(ancount):
        record, pos = _read_record(buf, pos)
        answers.append(record)
    return DnsMessage(
        id=ident,
        qr=bool(flags & 0x8000),
        opcode=(flags >> 11) & 0xF,
        aa=bool(flags & 0x0400),
        tc=bool(flags & 0x0200),
        rd=bool(flags & 0x0100),
        ra=bool(flags & 0x0080),
        rcode=flags & 0xF,
        questions=tuple(questions),
        answers=tuple(answers),
        authority_count=nscount,
        additional_count=arcount,
    )
