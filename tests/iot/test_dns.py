"""parse_dns against hand-built messages: round trips, compression, every malformed case."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from phloem.core.errors import PhloemError
from phloem.iot.dns import QTYPE, DnsParseError, parse_dns


def name(text: str) -> bytes:
    out = b""
    for label in text.split(".") if text else []:
        out += bytes([len(label)]) + label.encode()
    return out + b"\x00"


def header(ident: int = 0x1234, flags: int = 0x0100, qd: int = 1, an: int = 0) -> bytes:
    return struct.pack("!HHHHHH", ident, flags, qd, an, 0, 0)


def rr(owner: bytes, rtype: int, ttl: int, rdata: bytes) -> bytes:
    return owner + struct.pack("!HHIH", rtype, 1, ttl, len(rdata)) + rdata


def test_query_round_trip() -> None:
    msg = parse_dns(header() + name("API.Amazon.com") + struct.pack("!HH", 28, 1))
    assert (msg.id, msg.qr, msg.opcode, msg.rd, msg.rcode) == (0x1234, False, 0, True, 0)
    assert len(msg.questions) == 1
    q = msg.questions[0]
    assert (q.name, q.qtype, q.qclass, QTYPE[q.qtype]) == ("api.amazon.com", 28, 1, "AAAA")
    assert msg.answers == ()


def test_response_with_compressed_answers() -> None:
    # question name at offset 12; answers point back at it (0xC00C)
    question = name("www.example.com") + struct.pack("!HH", 1, 1)
    cname_target = b"\x03cdn" + b"\xc0\x10"  # "cdn" + pointer to "example.com" (offset 16)
    body = (
        header(flags=0x8180, an=3)
        + question
        + rr(b"\xc0\x0c", 5, 300, cname_target)
        + rr(b"\xc0\x0c", 1, 60, bytes([93, 184, 216, 34]))
        + rr(b"\xc0\x0c", 28, 60, bytes(range(16)))
    )
    msg = parse_dns(body)
    assert msg.qr and msg.ra and msg.rcode == 0
    assert [(a.name, a.rtype, a.ttl, a.data) for a in msg.answers] == [
        ("www.example.com", 5, 300, "cdn.example.com"),
        ("www.example.com", 1, 60, "93.184.216.34"),
        ("www.example.com", 28, 60, "1:203:405:607:809:a0b:c0d:e0f"),
    ]


def test_flags_and_other_types_kept_raw() -> None:
    flags = 0x8000 | (2 << 11) | 0x0400 | 0x0200 | 3  # QR, opcode 2, AA, TC, NXDOMAIN
    body = header(flags=flags, an=1) + name("") + struct.pack("!HH", 16, 1)
    body += rr(b"\x00", 16, 5, b"\x05hello")
    msg = parse_dns(body)
    assert (msg.qr, msg.opcode, msg.aa, msg.tc, msg.rcode) == (True, 2, True, True, 3)
    assert msg.questions[0].name == ""
    assert msg.answers[0].data == b"\x05hello"


GOOD = (
    header(an=1)
    + name("a.example")
    + struct.pack("!HH", 1, 1)
    + rr(b"\xc0\x0c", 1, 1, b"\x01\x02\x03\x04")
)

QX = name("x") + struct.pack("!HH", 1, 1)

MALFORMED = {
    "short header": b"\x00" * 11,
    "question missing": header(qd=1),
    "question fixed part cut": header() + name("a.b") + b"\x00\x01",
    "label past end": header() + b"\x05ab",
    "pointer loop to itself": header() + b"\xc0\x0c" + struct.pack("!HH", 1, 1),
    "pointer forward": header() + b"\xc0\x20" + b"\x00" * 40,
    "pointer out of range": header() + b"\x01a\xc0\xff",
    "pointer cut": header() + b"\x01a\xc0",
    "two-step loop": header(qd=2) + b"\x01a\x00\x00\x01\x00\x01" + b"\x01b\xc0\x0c" + b"\x00",
    "extended label type": header() + b"\x41abc",
    "name too long": header() + b"\x3f" + b"a" * 63 + (b"\x3f" + b"a" * 63) * 4 + b"\x00",
    "A with 5 bytes": header(an=1) + QX + rr(b"\xc0\x0c", 1, 1, b"12345"),
    "AAAA with 4 bytes": header(an=1) + QX + rr(b"\xc0\x0c", 28, 1, b"1234"),
    "rdata past end": GOOD[:-1],
    "answer missing": header(an=1) + QX,
    "CNAME not filling rdata": header(an=1) + QX + rr(b"\xc0\x0c", 5, 1, b"\xc0\x0c\x00"),
}  # fmt: skip


def test_good_reference_message_parses() -> None:
    assert parse_dns(GOOD).answers[0].data == "1.2.3.4"


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_raises_dns_parse_error(case: str) -> None:
    with pytest.raises(DnsParseError) as info:
        parse_dns(MALFORMED[case])
    assert isinstance(info.value, PhloemError) and "malformed DNS message" in str(info.value)


def test_loop_through_mutual_pointers_rejected() -> None:
    # offset 12: pointer to 14; offset 14: pointer to 12 — must not spin
    with pytest.raises(DnsParseError, match="not backwards"):
        parse_dns(header() + b"\xc0\x0e\xc0\x0c")


@given(st.binary(max_size=300))
def test_arbitrary_bytes_parse_or_raise_dns_parse_error(blob: bytes) -> None:
    with contextlib.suppress(DnsParseError):
        parse_dns(blob)


@given(st.lists(st.from_regex(r"[a-z0-9-]{1,20}", fullmatch=True), min_size=1, max_size=5))
def test_name_round_trip(labels: list[str]) -> None:
    text = ".".join(labels)
    msg = parse_dns(header() + name(text.upper()) + struct.pack("!HH", 65, 1))
    assert msg.questions[0].name == text and QTYPE[msg.questions[0].qtype] == "HTTPS"
