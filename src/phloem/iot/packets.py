"""Decode captured frames to IP and UDP/TCP, and pick out DNS, mDNS and DHCP payloads.

Link layers: Ethernet (with any number of 802.1Q / 802.1ad / QinQ tags), Linux cooked
capture SLL (113) and SLL2 (276), raw IP (101, 228, 229, and 12/14 as some BSDs write them)
and BSD loopback/null (0, 108). Network: IPv4, and IPv6 with hop-by-hop, routing,
destination-options, fragment and AH extension headers skipped. Fragmented datagrams are
counted, not reassembled. Transport: UDP and TCP (one segment at a time; no stream
reassembly, so a DNS-over-TCP message must fit in one segment).
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass
from enum import Enum, IntEnum

from phloem.iot.pcap import RawPacket

__all__ = [
    "DecodeStats",
    "Decoded",
    "DhcpMessage",
    "DnsPayload",
    "DnsTransport",
    "IpProto",
    "LinkType",
    "decode",
    "extract_dhcp",
    "extract_dns",
]


class LinkType(IntEnum):
    """LINKTYPE_* values understood by :func:`decode` (tcpdump.org/linktypes.html)."""

    NULL = 0
    ETHERNET = 1
    RAW_BSD = 12
    RAW_BSD14 = 14
    RAW = 101
    LOOP = 108
    LINUX_SLL = 113
    IPV4 = 228
    IPV6 = 229
    LINUX_SLL2 = 276


class IpProto(IntEnum):
    """IP protocol numbers of the transports :func:`decode` returns."""

    TCP = 6
    UDP = 17


class DnsTransport(Enum):
    """How a DNS message travelled."""

    UDP = "udp"
    TCP = "tcp"
    MDNS = "mdns"


@dataclass(slots=True)
class DecodeStats:
    """Why packets did not decode; every packet passed to :func:`decode` lands in one field.

    Attributes
    ----------
    decoded
        UDP or TCP packets returned.
    unsupported_link
        Link type not in :class:`LinkType`.
    not_ip
        Frames carrying something other than IP (ARP, EAPOL, LLDP, 802.3 length frames).
    other_transport
        IP packets carrying neither UDP nor TCP (ICMP, IGMP, ESP, ...).
    fragments
        IP fragments (not reassembled).
    malformed
        Headers cut short or with inconsistent lengths.
    dns_tcp_incomplete
        DNS-over-TCP segments whose message does not fit in the segment (counted by
        :func:`extract_dns`, not part of the per-packet partition above).
    """

    decoded: int = 0
    unsupported_link: int = 0
    not_ip: int = 0
    other_transport: int = 0
    fragments: int = 0
    malformed: int = 0
    dns_tcp_incomplete: int = 0


@dataclass(frozen=True, slots=True)
class Decoded:
    """A UDP or TCP packet with its addresses.

    ``src_mac``/``dst_mac`` are ``"aa:bb:cc:dd:ee:ff"`` when the link layer shows them
    (Ethernet; the source only for SLL/SLL2), else ``None``. ``tcp_flags`` is ``None`` for UDP.
    ``ttl`` is the IPv4 TTL or IPv6 hop limit as captured (0 when unknown): seen on the
    device's own link it is the initial value its network stack sets (64 Linux, 128 Windows,
    255 many embedded stacks), a classic passive OS fingerprint.
    """

    ts: float
    interface: int
    src_mac: str | None
    dst_mac: str | None
    src_ip: str
    dst_ip: str
    ip_version: int
    protocol: IpProto
    src_port: int
    dst_port: int
    payload: bytes
    tcp_flags: int | None = None
    ttl: int = 0


@dataclass(frozen=True, slots=True)
class DnsPayload:
    """One DNS message (TCP length prefix removed) and how it travelled."""

    transport: DnsTransport
    message: bytes
    is_query_direction: bool  # sent to the DNS port, i.e. client -> server


@dataclass(frozen=True, slots=True)
class DhcpMessage:
    """The fields of a DHCP/BOOTP message that tie a client MAC to a device identity.

    ``message_type`` is option 53 (1 DISCOVER, 3 REQUEST, 8 INFORM, ...), ``None`` for plain
    BOOTP; ``hostname`` option 12, ``vendor_class`` option 60, ``requested_ip`` option 50.
    """

    op: int
    xid: int
    client_mac: str
    message_type: int | None
    hostname: str | None
    vendor_class: str | None
    requested_ip: str | None

    @property
    def is_request(self) -> bool:
        """Whether a client sent it (BOOTREQUEST)."""
        return self.op == 1


_ETH_IPV4 = 0x0800
_ETH_IPV6 = 0x86DD
_ETH_VLAN = frozenset({0x8100, 0x88A8, 0x9100})
_V6_SKIP_8 = frozenset({0, 43, 60})  # hop-by-hop, routing, destination options
_V6_FRAGMENT = 44
_V6_AH = 51
_DNS_PORT = 53
_MDNS_PORT = 5353
_DHCP_PORTS = frozenset({67, 68})
_DHCP_COOKIE = b"\x63\x82\x53\x63"


class _SkipError(Exception):
    """Internal: which counter a failed decode goes to."""

    def __init__(self, counter: str) -> None:
        self.counter = counter


def _mac(b: bytes) -> str:
    return b.hex(":")


def _link(link_type: int, data: bytes) -> tuple[str | None, str | None, int, int]:
    """Strip the link layer: (src_mac, dst_mac, ethertype, offset of the network header)."""
    if link_type == LinkType.ETHERNET:
        if len(data) < 14:
            raise _SkipError("malformed")
        (ethertype,) = struct.unpack_from("!H", data, 12)
        off = 14
        while ethertype in _ETH_VLAN:
            if len(data) < off + 4:
                raise _SkipError("malformed")
            (ethertype,) = struct.unpack_from("!H", data, off + 2)
            off += 4
        return _mac(data[6:12]), _mac(data[0:6]), ethertype, off
    if link_type == LinkType.LINUX_SLL:
        if len(data) < 16:
            raise _SkipError("malformed")
        _, arphrd, alen, ethertype = struct.unpack_from("!HHH8xH", data)
        src = _mac(data[6 : 6 + alen]) if arphrd == 1 and alen == 6 else None
        return src, None, ethertype, 16
    if link_type == LinkType.LINUX_SLL2:
        if len(data) < 20:
            raise _SkipError("malformed")
        (ethertype,) = struct.unpack_from("!H", data)
        arphrd, _, alen = struct.unpack_from("!HBB", data, 8)
        src = _mac(data[12 : 12 + alen]) if arphrd == 1 and alen == 6 else None
        return src, None, ethertype, 20
    if link_type in (LinkType.NULL, LinkType.LOOP):
        # the address family is in host byte order of the capturing machine (NULL) and its
        # AF_INET6 value differs across BSDs, so trust the IP version nibble instead
        if len(data) < 5:
            raise _SkipError("malformed")
        return None, None, _version_ethertype(data[4]), 4
    if link_type in (LinkType.RAW, LinkType.RAW_BSD, LinkType.RAW_BSD14):
        if not data:
            raise _SkipError("malformed")
        return None, None, _version_ethertype(data[0]), 0
    if link_type == LinkType.IPV4:
        return None, None, _ETH_IPV4, 0
    if link_type == LinkType.IPV6:
        return None, None, _ETH_IPV6, 0
    raise _SkipError("unsupported_link")


def _version_ethertype(first: int) -> int:
    version = first >> 4
    if version == 4:
        return _ETH_IPV4
    if version == 6:
        return _ETH_IPV6
    raise _SkipError("not_ip")


def _ipv4(data: bytes, off: int) -> tuple[str, str, int, bytes, int]:
    if len(data) < off + 20:
        raise _SkipError("malformed")
    vihl, _, total, _, frag, ttl, proto = struct.unpack_from("!BBHHHBB", data, off)
    ihl = (vihl & 0xF) * 4
    if vihl >> 4 != 4 or ihl < 20 or total < ihl or len(data) < off + ihl:
        raise _SkipError("malformed")
    if frag & 0x3FFF:  # MF set or offset non-zero
        raise _SkipError("fragments")
    src = socket.inet_ntop(socket.AF_INET, data[off + 12 : off + 16])
    dst = socket.inet_ntop(socket.AF_INET, data[off + 16 : off + 20])
    # ``total`` trims Ethernet padding; a snapped capture just ends earlier
    return src, dst, proto, data[off + ihl : off + total], ttl


def _ipv6(data: bytes, off: int) -> tuple[str, str, int, bytes, int]:
    if len(data) < off + 40:
        raise _SkipError("malformed")
    vtf, plen, nxt, hop_limit = struct.unpack_from("!IHBB", data, off)
    if vtf >> 28 != 6:
        raise _SkipError("malformed")
    src = socket.inet_ntop(socket.AF_INET6, data[off + 8 : off + 24])
    dst = socket.inet_ntop(socket.AF_INET6, data[off + 24 : off + 40])
    body = data[off + 40 : off + 40 + plen] if plen else data[off + 40 :]
    pos = 0
    while True:
        if nxt in _V6_SKIP_8 or nxt == _V6_AH:
            if len(body) < pos + 2:
                raise _SkipError("malformed")
            size = (body[pos + 1] + 1) * 8 if nxt != _V6_AH else (body[pos + 1] + 2) * 4
            nxt = body[pos]
            pos += size
        elif nxt == _V6_FRAGMENT:
            if len(body) < pos + 8:
                raise _SkipError("malformed")
            (frag,) = struct.unpack_from("!H", body, pos + 2)
            if frag & 0xFFF9:  # offset non-zero or M flag set
                raise _SkipError("fragments")
            nxt = body[pos]
            pos += 8
        else:
            break
    if pos > len(body):
        raise _SkipError("malformed")
    return src, dst, nxt, body[pos:], hop_limit


def decode(raw: RawPacket, stats: DecodeStats | None = None) -> Decoded | None:
    """Decode one captured frame down to UDP or TCP.

    Parameters
    ----------
    raw
        A packet from :class:`~phloem.iot.pcap.PcapReader`.
    stats
        Counters to update; every call increments exactly one of its per-packet fields.

    Returns
    -------
    Decoded or None
        ``None`` when the frame is not a complete UDP/TCP header over IP; ``stats`` says why.
    """
    try:
        result = _decode(raw)
    except _SkipError as bad:
        if stats is not None:
            setattr(stats, bad.counter, getattr(stats, bad.counter) + 1)
        return None
    if stats is not None:
        stats.decoded += 1
    return result


def _decode(raw: RawPacket) -> Decoded:
    data = raw.data
    src_mac, dst_mac, ethertype, off = _link(raw.link_type, data)
    if ethertype == _ETH_IPV4:
        src, dst, proto, body, ttl = _ipv4(data, off)
        version = 4
    elif ethertype == _ETH_IPV6:
        src, dst, proto, body, ttl = _ipv6(data, off)
        version = 6
    else:
        raise _SkipError("not_ip")
    if proto == IpProto.UDP:
        if len(body) < 8:
            raise _SkipError("malformed")
        sport, dport, ulen = struct.unpack_from("!HHH", body)
        if ulen < 8:
            raise _SkipError("malformed")
        return Decoded(
            raw.ts, raw.interface, src_mac, dst_mac, src, dst, version,
            IpProto.UDP, sport, dport, body[8:ulen], None, ttl,
        )  # fmt: skip
    if proto == IpProto.TCP:
        if len(body) < 20:
            raise _SkipError("malformed")
        sport, dport, doff, flags = struct.unpack_from("!HH8xBB", body)
        hlen = (doff >> 4) * 4
        if hlen < 20 or hlen > len(body):
            raise _SkipError("malformed")
        return Decoded(
            raw.ts, raw.interface, src_mac, dst_mac, src, dst, version,
            IpProto.TCP, sport, dport, body[hlen:], flags, ttl,
        )  # fmt: skip
    raise _SkipError("other_transport")


def extract_dns(packet: Decoded, stats: DecodeStats | None = None) -> DnsPayload | None:
    """The DNS message in a decoded packet, if it carries one.

    UDP to or from port 53 gives :attr:`DnsTransport.UDP`, port 5353 :attr:`DnsTransport.MDNS`;
    TCP port 53 gives the first length-prefixed message of the segment, when it is whole
    (messages split across segments are counted in ``stats.dns_tcp_incomplete`` and
    dropped). The message itself is not parsed; see :func:`phloem.iot.dns.parse_dns`.
    """
    sport, dport = packet.src_port, packet.dst_port
    if packet.protocol == IpProto.UDP:
        if _DNS_PORT in (sport, dport):
            return DnsPayload(DnsTransport.UDP, packet.payload, dport == _DNS_PORT)
        if _MDNS_PORT in (sport, dport):
            return DnsPayload(DnsTransport.MDNS, packet.payload, dport == _MDNS_PORT)
        return None
    if _DNS_PORT not in (sport, dport) or not packet.payload:
        return None
    payload = packet.payload
    if len(payload) < 2 or len(payload) < 2 + ((payload[0] << 8) | payload[1]):
        if stats is not None:
            stats.dns_tcp_incomplete += 1
        return None
    size = (payload[0] << 8) | payload[1]
    return DnsPayload(DnsTransport.TCP, payload[2 : 2 + size], dport == _DNS_PORT)


def extract_dhcp(packet: Decoded) -> DhcpMessage | None:
    """Parse a DHCP/BOOTP message (UDP ports 67/68); ``None`` if not one or malformed."""
    if packet.protocol != IpProto.UDP or not (
        packet.src_port in _DHCP_PORTS and packet.dst_port in _DHCP_PORTS
    ):
        return None
    p = packet.payload
    if len(p) < 240 or p[236:240] != _DHCP_COOKIE:
        return None
    op, htype, hlen = p[0], p[1], p[2]
    if op not in (1, 2) or hlen > 16:
        return None
    (xid,) = struct.unpack_from("!I", p, 4)
    chaddr = p[28 : 28 + hlen]
    client_mac = _mac(chaddr) if htype == 1 and hlen == 6 else chaddr.hex()
    options: dict[int, bytes] = {}
    pos = 240
    while pos < len(p):
        code = p[pos]
        if code == 255:
            break
        if code == 0:
            pos += 1
            continue
        if pos + 2 > len(p) or pos + 2 + p[pos + 1] > len(p):
            return None
        # RFC 3396: a repeated option continues the previous one
        options[code] = options.get(code, b"") + p[pos + 2 : pos + 2 + p[pos + 1]]
        pos += 2 + p[pos + 1]
    mtype = options.get(53, b"")
    requested = options.get(50, b"")
    return DhcpMessage(
        op=op,
        xid=xid,
        client_mac=client_mac,
        message_type=mtype[0] if len(mtype) == 1 else None,
        hostname=_text(options.get(12)),
        vendor_class=_text(options.get(60)),
        requested_ip=socket.inet_ntop(socket.AF_INET, requested) if len(requested) == 4 else None,
    )


def _text(value: bytes | None) -> str | None:
    if value is None:
        return None
    return value.rstrip(b"\x00").decode("utf-8", "backslashreplace")
