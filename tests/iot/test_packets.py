"""decode / extract_dns / extract_dhcp on hand-built frames, and end to end on real captures."""

from __future__ import annotations

import socket
import struct
import tarfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from phloem.iot.dns import QTYPE, DnsParseError, parse_dns
from phloem.iot.packets import (
    DecodeStats,
    DnsTransport,
    IpProto,
    LinkType,
    decode,
    extract_dhcp,
    extract_dns,
)
from phloem.iot.pcap import PcapReader, RawPacket

MAC_A = bytes.fromhex("0c8b95a0e2cc")
MAC_B = bytes.fromhex("28e3478ecfa8")
DNS_QUERY = (
    struct.pack("!HHHHHH", 7, 0x0100, 1, 0, 0, 0) + b"\x03api\x06amazon\x03com\x00\x00\x01\x00\x01"
)


def udp(sport: int, dport: int, payload: bytes) -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def tcp(sport: int, dport: int, payload: bytes, flags: int = 0x18) -> bytes:
    return struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, flags, 65535, 0, 0) + payload


def ipv4(proto: int, body: bytes, src: str = "10.10.0.247", dst: str = "8.8.8.8", frag: int = 0):
    return (
        struct.pack("!BBHHHBBH", 0x45, 0, 20 + len(body), 0, frag, 64, proto, 0)
        + socket.inet_aton(src)
        + socket.inet_aton(dst)
        + body
    )


def ipv6(nxt: int, body: bytes, src: str = "fe80::1", dst: str = "2001:db8::53") -> bytes:
    return (
        struct.pack("!IHBB", 6 << 28, len(body), nxt, 64)
        + socket.inet_pton(socket.AF_INET6, src)
        + socket.inet_pton(socket.AF_INET6, dst)
        + body
    )


def eth(payload: bytes, ethertype: int = 0x0800, vlans: int = 0) -> bytes:
    tags = b"".join(struct.pack("!HH", 0x8100, 10 + i) for i in range(vlans))
    return MAC_B + MAC_A + tags + struct.pack("!H", ethertype) + payload


def raw(link: int, data: bytes) -> RawPacket:
    return RawPacket(1.5, link, data, 0)


def test_ethernet_udp_dns_query() -> None:
    stats = DecodeStats()
    d = decode(raw(1, eth(ipv4(17, udp(45773, 53, DNS_QUERY))) + b"\x00" * 6), stats)
    assert d is not None and stats.decoded == 1
    assert (d.src_mac, d.dst_mac) == ("0c:8b:95:a0:e2:cc", "28:e3:47:8e:cf:a8")
    assert (d.src_ip, d.dst_ip, d.ip_version) == ("10.10.0.247", "8.8.8.8", 4)
    assert (d.protocol, d.src_port, d.dst_port) == (IpProto.UDP, 45773, 53)
    assert d.payload == DNS_QUERY  # Ethernet padding trimmed
    assert d.ttl == 64 and d.tcp_flags is None
    dns = extract_dns(d)
    assert dns is not None and dns.transport is DnsTransport.UDP and dns.is_query_direction
    assert parse_dns(dns.message).questions[0].name == "api.amazon.com"


@pytest.mark.parametrize(
    ("link", "frame", "src_mac"),
    [
        (LinkType.ETHERNET, eth(ipv4(17, udp(1, 53, DNS_QUERY)), vlans=2), "0c:8b:95:a0:e2:cc"),
        (
            LinkType.LINUX_SLL,
            struct.pack("!HHH", 4, 1, 6) + MAC_A + b"\x00\x00" + b"\x08\x00"
            + ipv4(17, udp(1, 53, DNS_QUERY)),
            "0c:8b:95:a0:e2:cc",
        ),
        (
            LinkType.LINUX_SLL2,
            struct.pack("!HHIHBB", 0x0800, 0, 2, 1, 0, 6) + MAC_A + b"\x00\x00"
            + ipv4(17, udp(1, 53, DNS_QUERY)),
            "0c:8b:95:a0:e2:cc",
        ),
        (LinkType.RAW, ipv4(17, udp(1, 53, DNS_QUERY)), None),
        (LinkType.IPV4, ipv4(17, udp(1, 53, DNS_QUERY)), None),
        (LinkType.IPV6, ipv6(17, udp(1, 53, DNS_QUERY)), None),
        (LinkType.NULL, struct.pack("<I", 2) + ipv4(17, udp(1, 53, DNS_QUERY)), None),
        (LinkType.NULL, struct.pack(">I", 30) + ipv6(17, udp(1, 53, DNS_QUERY)), None),
    ],
)  # fmt: skip
def test_link_layers(link: int, frame: bytes, src_mac: str | None) -> None:
    d = decode(raw(link, frame))
    assert d is not None and d.src_mac == src_mac and d.payload == DNS_QUERY
    assert (d.src_port, d.dst_port) == (1, 53)


def test_ipv6_extension_headers_skipped() -> None:
    hop_by_hop = bytes([60, 0]) + b"\x00" * 6  # -> destination options
    dest_opts = bytes([44, 0]) + b"\x00" * 6  # -> fragment
    fragment = bytes([17, 0, 0, 0]) + b"\x00" * 4  # atomic fragment: offset 0, M clear
    d = decode(
        raw(1, eth(ipv6(0, hop_by_hop + dest_opts + fragment + udp(5353, 5353, DNS_QUERY)), 0x86DD))
    )
    assert d is not None and d.ip_version == 6 and d.dst_ip == "2001:db8::53"
    dns = extract_dns(d)
    assert dns is not None and dns.transport is DnsTransport.MDNS


def test_dns_over_tcp_single_segment_and_incomplete() -> None:
    framed = struct.pack("!H", len(DNS_QUERY)) + DNS_QUERY
    stats = DecodeStats()
    d = decode(raw(101, ipv4(6, tcp(40000, 53, framed))), stats)
    assert d is not None and d.protocol is IpProto.TCP and d.tcp_flags == 0x18
    dns = extract_dns(d, stats)
    assert dns is not None and dns.transport is DnsTransport.TCP and dns.message == DNS_QUERY
    partial = decode(raw(101, ipv4(6, tcp(40000, 53, framed[:10]))), stats)
    assert partial is not None and extract_dns(partial, stats) is None
    ack = decode(raw(101, ipv4(6, tcp(53, 40000, b"", flags=0x10))), stats)
    assert ack is not None and extract_dns(ack, stats) is None
    assert stats.dns_tcp_incomplete == 1


def test_non_dns_udp_is_not_dns() -> None:
    d = decode(raw(101, ipv4(17, udp(123, 123, b"ntp"))))
    assert d is not None and extract_dns(d) is None and extract_dhcp(d) is None


def dhcp_request(hostname: bytes, cut: bool = False) -> bytes:
    fixed = struct.pack("!BBBBIHH", 1, 1, 6, 0, 0xDEADBEEF, 0, 0) + b"\x00" * 16
    fixed += MAC_A + b"\x00" * 10 + b"\x00" * 192 + b"\x63\x82\x53\x63"
    opts = bytes([53, 1, 3, 0, 12, len(hostname)]) + hostname
    opts += bytes([50, 4, 192, 168, 1, 20, 60, 4]) + b"udhc" + b"\xff"
    return fixed + (opts[:-8] if cut else opts)


def test_dhcp_request_gives_mac_type_hostname() -> None:
    frame = eth(ipv4(17, udp(68, 67, dhcp_request(b"kettle")), "0.0.0.0", "255.255.255.255"))
    d = decode(raw(1, frame))
    assert d is not None and extract_dns(d) is None
    msg = extract_dhcp(d)
    assert msg is not None and msg.is_request
    assert (msg.client_mac, msg.message_type, msg.hostname) == ("0c:8b:95:a0:e2:cc", 3, "kettle")
    assert (msg.vendor_class, msg.requested_ip, msg.xid) == ("udhc", "192.168.1.20", 0xDEADBEEF)
    cut = decode(raw(1, eth(ipv4(17, udp(68, 67, dhcp_request(b"kettle", cut=True))))))
    assert cut is not None and extract_dhcp(cut) is None


UNDECODABLE = [
    ("unsupported_link", raw(147, b"\x00" * 40)),
    ("not_ip", raw(1, eth(b"\x00" * 28, ethertype=0x0806))),  # ARP
    ("not_ip", raw(1, MAC_B + MAC_A + b"\x00\x2e" + b"\x00" * 46)),  # 802.3 length
    ("other_transport", raw(1, eth(ipv4(1, b"\x08\x00" + b"\x00" * 6)))),  # ICMP
    ("fragments", raw(101, ipv4(17, udp(1, 53, DNS_QUERY), frag=0x2000))),
    ("fragments", raw(101, ipv4(17, b"\x00" * 16, frag=0x0010))),
    ("malformed", raw(1, MAC_B + MAC_A)),
    ("malformed", raw(1, eth(b"\x45\x00"))),
    ("malformed", raw(1, eth(ipv4(17, b"\x00\x35")))),
    ("malformed", raw(1, eth(ipv4(17, struct.pack("!HHHH", 1, 53, 4, 0))))),
    ("malformed", raw(1, eth(ipv4(6, b"\x00" * 19)))),
    ("malformed", raw(101, ipv4(6, tcp(1, 53, b"")[:12] + b"\xf0" + b"\x00" * 7))),
    ("malformed", raw(101, ipv6(0, b"\x11"))),
    ("malformed", raw(229, b"\x60" + b"\x00" * 10)),
    ("malformed", raw(113, b"\x00" * 10)),
    ("malformed", raw(276, b"\x00" * 10)),
    ("not_ip", raw(101, b"\x20" * 30)),
    ("malformed", raw(0, b"\x02\x00")),
]


@pytest.mark.parametrize(("counter", "packet"), UNDECODABLE)
def test_undecodable_is_counted_not_raised(counter: str, packet: RawPacket) -> None:
    stats = DecodeStats()
    assert decode(packet, stats) is None
    assert getattr(stats, counter) == 1
    assert sum(
        getattr(stats, f) for f in ("decoded", "unsupported_link", "not_ip", "other_transport",
                                    "fragments", "malformed")
    ) == 1  # fmt: skip


def test_every_truncation_of_a_frame_is_counted() -> None:
    frame = eth(ipv6(17, udp(1, 53, DNS_QUERY)), 0x86DD, vlans=1)
    stats = DecodeStats()
    for cut in range(len(frame)):
        decode(raw(1, frame[:cut]), stats)  # must never raise
    assert stats.decoded + stats.malformed == len(frame)


# ---- real data --------------------------------------------------------------------------

KETTLE = "dns_only/alexa_swan_kettle/2023-10-19/2023-10-19_00:02:55.402s.pcap"


def _first_member(tar_path: Path, member: str) -> bytes:
    with tarfile.open(tar_path, "r|gz") as tar:
        for info in tar:
            if info.name == member:
                handle = tar.extractfile(info)
                assert handle is not None
                return handle.read()
    raise AssertionError(f"{member} not in {tar_path}")


@pytest.mark.data
def test_real_capture_parses_cleanly(data_file: Callable[[str], Path]) -> None:
    tar_path = data_file("iot/doh_iot/dns_only_dev.tar.gz")
    with tarfile.open(tar_path, "r|gz") as tar:
        for info in tar:
            if info.name == KETTLE:
                handle = tar.extractfile(info)
                assert handle is not None
                reader = PcapReader(handle, name=info.name)  # streamed, never seeks
                packets = list(reader)
                break
        else:
            raise AssertionError(f"{KETTLE} missing from {tar_path}")
    assert reader.stats.packets == len(packets) > 0
    assert (reader.stats.malformed, reader.stats.truncated) == (0, 0)
    stats = DecodeStats()
    names: Counter[str] = Counter()
    for packet in packets:
        d = decode(packet, stats)
        dns = extract_dns(d) if d is not None else None
        if dns is None:
            continue
        try:
            msg = parse_dns(dns.message)
        except DnsParseError:
            pytest.fail(f"real DNS message did not parse: {dns.message.hex()}")
        names.update(q.name for q in msg.questions if QTYPE.get(q.qtype) in ("A", "AAAA"))
    assert stats.malformed == 0
    assert names, "no DNS questions found"
    assert all("." in n and n == n.lower() and not n.endswith(".") for n in names)
    assert any(n.endswith("amazon.com") for n in names)  # an Alexa kettle talks to Amazon
