"""events_from_packets on hand-built frames: grouping, anchors, known clients, damage counted."""

from __future__ import annotations

import math
import struct

import pytest
from iot_frames import dns, eth, ipv4, udp

from phloem.iot.dns import parse_dns
from phloem.iot.events import (
    ANCHOR_MODES,
    AnchorMode,
    Event,
    EventStats,
    Query,
    events_from_packets,
    main_resolvers,
    resolvers_used,
    stack_fingerprint,
    uses_external_resolver,
)
from phloem.iot.packets import decode, extract_dns
from phloem.iot.pcap import RawPacket

MAC_A = "0c:8b:95:a0:e2:cc"
MAC_B = "28:e3:47:8e:cf:a8"
GW = "02:00:00:00:00:01"
T0 = 1_700_000_000.0


def query(
    t: float, mac: str, ip: str, name: str, resolver: str = "10.0.0.1", qtype: int = 1
) -> RawPacket:
    return RawPacket(
        T0 + t, 1, eth(mac, GW, ipv4(udp(40000, 53, dns(name, qtype)), ip, resolver)), 0
    )


def response(t: float, mac: str, ip: str, name: str, resolver: str = "10.0.0.1") -> RawPacket:
    frame = eth(GW, mac, ipv4(udp(53, 40000, dns(name, response=True)), resolver, ip))
    return RawPacket(T0 + t, 1, frame, 0)


def raw_ip_query(t: float, ip: str, name: str, resolver: str = "10.0.0.1") -> RawPacket:
    return RawPacket(T0 + t, 101, ipv4(udp(40000, 53, dns(name)), ip, resolver), 0)


def dhcp(t: float, mac: str, message_type: int = 3) -> RawPacket:
    fixed = struct.pack("!BBBBIHH", 1, 1, 6, 0, 0xBEEF, 0, 0) + b"\x00" * 16
    fixed += bytes.fromhex(mac.replace(":", "")) + b"\x00" * 10 + b"\x00" * 192
    body = fixed + b"\x63\x82\x53\x63" + bytes([53, 1, message_type, 255])
    frame = eth(mac, "ff:ff:ff:ff:ff:ff", ipv4(udp(68, 67, body), "0.0.0.0", "255.255.255.255"))
    return RawPacket(T0 + t, 1, frame, 0)


def capture() -> list[RawPacket]:
    """Two Ethernet clients; B has a DHCP REQUEST at t=4, before some of its queries."""
    return [
        RawPacket(T0, 1, bytes.fromhex("ff" * 6 + GW.replace(":", "") + "0806") + bytes(28), 0),
        query(2.0, MAC_A, "10.0.0.5", "a.example.com"),
        query(3.0, MAC_B, "10.0.0.6", "early.b.com"),
        response(2.1, MAC_A, "10.0.0.5", "a.example.com"),
        dhcp(4.0, MAC_B),
        query(6.0, MAC_B, "10.0.0.6", "b.example.com", qtype=28),
        query(5.0, MAC_A, "10.0.0.5", "API.Example.com", resolver="8.8.8.8"),
        query(9.0, MAC_B, "10.0.0.7", "c.b.com"),  # new IP, same MAC
    ]


def by_key(events: list[Event]) -> dict[str, Event]:
    return {e.key: e for e in events}


def test_groups_by_mac_and_keeps_only_queries() -> None:
    stats = EventStats()
    events = by_key(events_from_packets(capture(), anchor="first-query", stats=stats))
    assert set(events) == {MAC_A, MAC_B}
    a = events[MAC_A]
    assert a.anchor_utc == T0 + 2.0 and a.day == "2023-11-14"
    assert a.queries == (
        Query(0.0, "a.example.com", 1, "10.0.0.1", "ttl=64"),
        Query(3.0, "api.example.com", 1, "8.8.8.8", "ttl=64"),
    )
    assert [q.name for q in events[MAC_B].queries] == ["early.b.com", "b.example.com", "c.b.com"]
    assert (stats.queries, stats.responses, stats.packets) == (5, 1, 8)
    assert stats.decode.not_ip == 1


def test_groups_by_ip_without_link_layer() -> None:
    pkts = [raw_ip_query(1.0, "10.0.0.5", "x.com"), raw_ip_query(2.0, "10.0.0.6", "y.com"),
            raw_ip_query(3.0, "10.0.0.5", "z.com")]  # fmt: skip
    events = by_key(events_from_packets(pkts))
    assert {k: [q.name for q in e.queries] for k, e in events.items()} == {
        "10.0.0.5": ["x.com", "z.com"],
        "10.0.0.6": ["y.com"],
    }
    assert events["10.0.0.5"].queries[1].t == 2.0


@pytest.mark.parametrize(
    ("mode", "anchor_b", "names_b", "fallback"),
    [
        ("first-query", 3.0, ["early.b.com", "b.example.com", "c.b.com"], []),
        ("dhcp", 4.0, ["b.example.com", "c.b.com"], [MAC_A]),
        ("dhcp-or-first-query", 4.0, ["b.example.com", "c.b.com"], []),
        ("capture-start", 0.0, ["early.b.com", "b.example.com", "c.b.com"], []),
    ],
)
def test_anchor_modes(mode: str, anchor_b: float, names_b: list[str], fallback: list[str]) -> None:
    assert mode in ANCHOR_MODES
    stats = EventStats()
    events = by_key(events_from_packets(capture(), anchor=mode, stats=stats))
    b = events[MAC_B]
    assert b.anchor_utc == T0 + anchor_b
    assert [q.name for q in b.queries] == names_b
    assert all(q.t >= 0 for e in events.values() for q in e.queries)
    assert b.queries[-1].t == pytest.approx(9.0 - anchor_b)
    assert stats.fallback_anchors == fallback
    assert stats.before_anchor == 3 - len(names_b)
    a = events[MAC_A]
    assert a.anchor_utc == T0 + (0.0 if mode == "capture-start" else 2.0)


def test_dhcp_only_client_gives_empty_event_in_dhcp_modes() -> None:
    pkts = [dhcp(1.0, MAC_A, 1), dhcp(1.5, MAC_A, 3), query(2.0, MAC_B, "10.0.0.6", "b.com")]
    events = by_key(events_from_packets(pkts))
    assert events[MAC_A].anchor_utc == T0 + 1.0 and not events[MAC_A].has_dns
    assert set(by_key(events_from_packets(pkts, anchor="first-query"))) == {MAC_B}


def test_known_clients_start_no_event_and_set_is_updated() -> None:
    known = {MAC_A}
    stats = EventStats()
    events = events_from_packets(capture(), known=known, stats=stats)
    assert [e.key for e in events] == [MAC_B] and stats.known_skipped == 1
    assert known == {MAC_A, MAC_B}
    assert events_from_packets([query(20.0, MAC_B, "10.0.0.6", "later.com")], known=known) == []


def test_malformed_packets_and_dns_are_counted_not_raised() -> None:
    good = query(1.0, MAC_A, "10.0.0.5", "ok.com")
    cut_frame = RawPacket(T0, 1, good.data[:20], 0)
    bad_dns = RawPacket(
        T0, 1, eth(MAC_A, GW, ipv4(udp(40000, 53, b"\x00\x07\x01"), "10.0.0.5", "10.0.0.1")), 0
    )
    mdns = RawPacket(
        T0, 1, eth(MAC_A, GW, ipv4(udp(5353, 5353, dns("tv.local")), "10.0.0.5", "224.0.0.251")), 0
    )
    stats = EventStats()
    events = events_from_packets([cut_frame, bad_dns, mdns, good], stats=stats)
    assert [e.key for e in events] == [MAC_A] and len(events[0].queries) == 1
    assert (stats.decode.malformed, stats.malformed_dns, stats.mdns, stats.queries) == (1, 1, 1, 1)


def test_bad_anchor_mode_is_rejected() -> None:
    with pytest.raises(ValueError, match="anchor must be one of"):
        events_from_packets([], anchor="boot")  # type: ignore[arg-type]


def test_resolver_flags() -> None:
    events = by_key(events_from_packets(capture(), anchor="first-query"))
    a, b = events[MAC_A], events[MAC_B]
    assert resolvers_used(a) == {"10.0.0.1": 1, "8.8.8.8": 1}
    assert main_resolvers([a, b]) == {"10.0.0.1"}  # used by both clients: the gateway
    assert uses_external_resolver(a, peers=[a, b]) and not uses_external_resolver(b, peers=[a, b])
    assert not uses_external_resolver(a, {"10.0.0.1", "8.8.8.8"})
    lone = Event("k", T0, (Query(0, "x", 1, "8.8.8.8"), Query(1, "y", 1, "8.8.8.8"),
                           Query(2, "z", 1, "8.8.4.4")))  # fmt: skip
    assert main_resolvers([lone]) == {"8.8.8.8"} and uses_external_resolver(lone)
    assert main_resolvers([]) == frozenset()


def _fingerprint(frame: bytes) -> str:
    pkt = decode(RawPacket(T0, 1, frame, 0))
    assert pkt is not None
    payload = extract_dns(pkt)
    assert payload is not None
    return stack_fingerprint(pkt, parse_dns(payload.message))


@pytest.mark.parametrize(
    ("ttl", "expected"), [(1, "ttl=32"), (32, "ttl=32"), (60, "ttl=64"), (64, "ttl=64"),
                          (100, "ttl=128"), (128, "ttl=128"), (200, "ttl=255"), (255, "ttl=255")]
)  # fmt: skip
def test_stack_fingerprint_rounds_ttl_up_to_an_initial_value(ttl: int, expected: str) -> None:
    frame = eth(MAC_A, GW, ipv4(udp(40000, 53, dns("x.com")), "10.0.0.5", "8.8.8.8", ttl=ttl))
    assert _fingerprint(frame) == expected


def test_stack_fingerprint_traits() -> None:
    # id 0, RD clear, one additional record (EDNS OPT), two questions
    labels = b"\x01x\x03com\x00"
    msg = struct.pack("!HHHHHH", 0, 0x0000, 2, 0, 0, 1) + (labels + b"\x00\x01\x00\x01") * 2
    msg += b"\x00" + struct.pack("!HHIH", 41, 1232, 0, 0)  # OPT RR
    frame = eth(MAC_A, GW, ipv4(udp(40000, 53, msg), "10.0.0.5", "8.8.8.8", ttl=255))
    assert _fingerprint(frame) == "ttl=255 rd0 edns id0 qd2"
    # a plain stub query: RD set, random id, no additional records
    assert _fingerprint(eth(MAC_A, GW, ipv4(udp(1, 53, dns("x.com")), "10.0.0.5", "1.1.1.1"))) == (
        "ttl=64"
    )


def test_queries_carry_their_fingerprint_into_events() -> None:
    pkts = [RawPacket(T0, 1, eth(MAC_A, GW, ipv4(udp(1, 53, dns("x.com", ident=0)),
                                                 "10.0.0.5", "8.8.8.8", ttl=255)), 0)]  # fmt: skip
    (event,) = events_from_packets(pkts)
    assert event.queries[0].stack == "ttl=255 id0"


@pytest.mark.parametrize("anchor", ANCHOR_MODES)
def test_events_from_observations_match_events_from_packets(anchor: AnchorMode) -> None:
    from phloem.iot.events import events_from_observations, observe_packets

    # the capture's first packet is an ARP frame: capture-start must anchor there either way,
    # through the start time that observe_packets leaves in the stats
    pkts = capture()
    direct = events_from_packets(pkts, anchor=anchor)
    stats = EventStats()
    via = events_from_observations(observe_packets(pkts, stats), anchor=anchor, stats=stats)
    assert via == direct
    assert stats.start_ts == T0


def test_capture_start_is_each_streams_own_first_packet() -> None:
    """One stats object over several captures (as build_corpus does): each has its start."""
    stats = EventStats()
    first = events_from_packets(capture(), anchor="capture-start", stats=stats)
    assert {e.anchor_utc for e in first} == {T0}
    later = [RawPacket(T0 + 100.0, 1, bytes(14), 0), query(102.0, MAC_A, "10.0.0.5", "x.com")]
    (event,) = events_from_packets(later, anchor="capture-start", stats=stats)
    assert event.anchor_utc == T0 + 100.0 and event.queries[0].t == 2.0
    # untimed packets (pcapng simple packet blocks) do not start a capture
    untimed = [RawPacket(math.nan, 1, bytes(14), 0), query(7.0, MAC_A, "10.0.0.5", "x.com")]
    (event,) = events_from_packets(untimed, anchor="capture-start", stats=stats)
    assert event.anchor_utc == T0 + 7.0 and stats.start_ts == T0 + 7.0
