"""PcapReader: classic pcap in both byte orders and resolutions, pcapng, damage counted."""

from __future__ import annotations

import io
import math
import struct
from pathlib import Path

import pytest

from phloem.core.errors import PhloemError
from phloem.iot.pcap import (
    CAPTURE_MAGICS,
    CaptureFormat,
    CaptureFormatError,
    PcapReader,
    RawPacket,
    looks_like_capture,
)

FRAMES = [b"\x01" * 14, b"hello world, frame two", b""]
TIMES_US = [(1_700_000_000, 123_456), (1_700_000_001, 0), (1_700_000_002, 999_999)]


def pcap_bytes(endian: str, nano: bool, records: list[tuple[int, int, bytes]], link: int = 1):
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    out = struct.pack(endian + "IHHiIII", magic, 2, 4, 0, 0, 65535, link)
    for sec, frac, data in records:
        out += struct.pack(endian + "IIII", sec, frac, len(data), len(data)) + data
    return out


def block(endian: str, btype: int, body: bytes) -> bytes:
    body += b"\x00" * (-len(body) % 4)
    total = len(body) + 12
    return struct.pack(endian + "II", btype, total) + body + struct.pack(endian + "I", total)


def option(endian: str, code: int, value: bytes) -> bytes:
    return struct.pack(endian + "HH", code, len(value)) + value + b"\x00" * (-len(value) % 4)


def shb(endian: str) -> bytes:
    return block(endian, 0x0A0D0D0A, struct.pack(endian + "IHHq", 0x1A2B3C4D, 1, 0, -1))


def idb(endian: str, link: int, tsresol: int | None = None, snaplen: int = 0) -> bytes:
    opts = b""
    if tsresol is not None:
        opts = option(endian, 9, bytes([tsresol])) + option(endian, 0, b"")
    return block(endian, 1, struct.pack(endian + "HHI", link, 0, snaplen) + opts)


def epb(endian: str, iface: int, ticks: int, data: bytes) -> bytes:
    head = struct.pack(
        endian + "IIIII", iface, ticks >> 32, ticks & 0xFFFFFFFF, len(data), len(data)
    )
    return block(endian, 6, head + data)


def read_all(blob: bytes) -> tuple[list[RawPacket], PcapReader]:
    reader = PcapReader(io.BytesIO(blob), name="test.pcap")
    return list(reader), reader


@pytest.mark.parametrize("endian", ["<", ">"])
@pytest.mark.parametrize("nano", [False, True])
def test_classic_pcap_round_trip(endian: str, nano: bool) -> None:
    scale = 1000 if nano else 1
    records = [(s, f * scale, d) for (s, f), d in zip(TIMES_US, FRAMES, strict=True)]
    packets, reader = read_all(pcap_bytes(endian, nano, records, link=113))
    assert reader.format is CaptureFormat.PCAP
    assert [p.data for p in packets] == FRAMES
    assert all(p.link_type == 113 and p.interface == 0 for p in packets)
    for p, (sec, us) in zip(packets, TIMES_US, strict=True):
        assert p.ts == pytest.approx(sec + us * 1e-6, abs=1e-7)
    assert (reader.stats.packets, reader.stats.malformed, reader.stats.truncated) == (3, 0, 0)


def test_classic_pcap_from_path(tmp_path: Path) -> None:
    path = tmp_path / "a.pcap"
    path.write_bytes(pcap_bytes("<", False, [(1, 2, b"x")]))
    with PcapReader(path) as reader:
        assert [p.data for p in reader] == [b"x"]


@pytest.mark.parametrize("cut", [1, 10, 16, 20])
def test_truncated_last_record_is_counted(cut: int) -> None:
    blob = pcap_bytes("<", False, [(1, 0, b"a" * 8), (2, 0, b"b" * 8)])
    packets, reader = read_all(blob[: len(blob) - 24 + cut])
    assert [p.data for p in packets] == [b"a" * 8]
    assert reader.stats.truncated == 1


def test_absurd_record_length_stops_without_raising() -> None:
    blob = pcap_bytes("<", False, [(1, 0, b"ok")]) + struct.pack("<IIII", 1, 0, 2**31, 10)
    packets, reader = read_all(blob)
    assert len(packets) == 1 and reader.stats.malformed == 1


def test_bad_fraction_is_skipped() -> None:
    blob = pcap_bytes("<", False, [(1, 2_000_000, b"bad"), (1, 5, b"good")])
    packets, reader = read_all(blob)
    assert [p.data for p in packets] == [b"good"] and reader.stats.malformed == 1


@pytest.mark.parametrize(
    "blob", [b"", b"\xd4\xc3", b"GIF89a not a capture", b"\xd4\xc3\xb2\xa1\x02"]
)
def test_not_a_capture_raises_clear_error(blob: bytes) -> None:
    with pytest.raises(CaptureFormatError, match=r"weird\.bin") as info:
        PcapReader(io.BytesIO(blob), name="weird.bin").__iter__().__next__()
    assert isinstance(info.value, PhloemError) and isinstance(info.value, ValueError)


def test_looks_like_capture_is_what_the_reader_reads() -> None:
    heads = [pcap_bytes(e, nano, []) for e in "<>" for nano in (False, True)]
    heads += [shb("<"), shb(">")]
    assert {h[:4] for h in heads} == CAPTURE_MAGICS
    for head in heads:
        assert looks_like_capture(head)
        assert list(PcapReader(io.BytesIO(head))) == []
    for blob in (b"", b"\xd4\xc3", b"GIF89a not a capture", b"SQLite format 3\x00"):
        assert not looks_like_capture(blob)


@pytest.mark.parametrize("endian", ["<", ">"])
def test_pcapng_blocks(endian: str) -> None:
    spb = block(endian, 3, struct.pack(endian + "I", 5) + b"spb!!")
    old_pb = block(endian, 2, struct.pack(endian + "HHIIII", 1, 0, 0, 1_500_000, 3, 3) + b"old")
    unknown = block(endian, 5, b"statistics")  # ISB: skipped
    blob = (
        shb(endian)
        + idb(endian, 1)  # default resolution: microseconds
        + idb(endian, 101, tsresol=9)  # nanoseconds
        + epb(endian, 0, 1_700_000_000_250_000, b"frame0")
        + unknown
        + epb(endian, 1, 1_700_000_000_000_000_001, b"frame1")
        + spb
        + old_pb
    )
    packets, reader = read_all(blob)
    assert reader.format is CaptureFormat.PCAPNG
    assert [(p.data, p.link_type, p.interface) for p in packets] == [
        (b"frame0", 1, 0),
        (b"frame1", 101, 1),
        (b"spb!!", 1, 0),
        (b"old", 101, 1),
    ]
    assert packets[0].ts == pytest.approx(1_700_000_000.25)
    assert packets[1].ts == pytest.approx(1_700_000_000.000000001, abs=1e-6)
    assert math.isnan(packets[2].ts)
    assert packets[3].ts == pytest.approx(0.0015)  # interface 1 counts nanoseconds
    assert reader.stats.skipped_blocks == 1 and reader.stats.malformed == 0


def test_pcapng_binary_resolution_and_new_section_resets_interfaces() -> None:
    blob = (
        shb("<")
        + idb("<", 1, tsresol=0x80 | 10)  # 2**-10 s
        + epb("<", 0, 2048, b"a")
        + shb(">")  # new section, big-endian: interface 0 must be described again
        + epb(">", 0, 1, b"orphan")
        + idb(">", 228)
        + epb(">", 0, 3_000_000, b"b")
    )
    packets, reader = read_all(blob)
    assert [(p.data, p.ts, p.link_type) for p in packets] == [(b"a", 2.0, 1), (b"b", 3.0, 228)]
    assert reader.stats.malformed == 1


def test_pcapng_damage_is_counted() -> None:
    good = epb("<", 0, 1, b"good")
    bad_caplen = bytearray(epb("<", 0, 1, b"xxxx"))
    struct.pack_into("<I", bad_caplen, 20, 999)  # captured length beyond the block
    bad_trailer = bytearray(epb("<", 0, 1, b"yyyy"))
    struct.pack_into("<I", bad_trailer, len(bad_trailer) - 4, 4)
    blob = shb("<") + idb("<", 1) + bytes(bad_caplen) + bytes(bad_trailer) + good + good[:-3]
    packets, reader = read_all(blob)
    assert [p.data for p in packets] == [b"good"]
    assert (reader.stats.malformed, reader.stats.truncated) == (2, 1)


def test_pcapng_bad_block_length_stops() -> None:
    blob = shb("<") + idb("<", 1) + struct.pack("<II", 6, 13) + b"\x00" * 16
    packets, reader = read_all(blob)
    assert packets == [] and reader.stats.malformed == 1


def test_reader_iterates_once() -> None:
    reader = PcapReader(io.BytesIO(pcap_bytes("<", False, [])))
    assert list(reader) == []
    with pytest.raises(RuntimeError):
        iter(reader)
