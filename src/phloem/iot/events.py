"""Events: the DNS queries of one device from its connection anchor onwards.

An :class:`Event` is what the identifier classifies: one device (keyed by MAC where layer 2
is visible, else by IP) from its anchor (a DHCP event, or its first query) to the end of the
observation, each query timed in seconds since the anchor. :meth:`Event.window` cuts it at
``T`` seconds, the "first seconds" of the paper.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Literal

from phloem.iot.dns import DnsMessage, DnsParseError, parse_dns
from phloem.iot.packets import (
    Decoded,
    DecodeStats,
    DnsTransport,
    IpProto,
    decode,
    extract_dhcp,
    extract_dns,
)
from phloem.iot.pcap import RawPacket

__all__ = [
    "ANCHOR_MODES",
    "Anchor",
    "AnchorMode",
    "Event",
    "EventStats",
    "Observation",
    "Query",
    "events_from_observations",
    "events_from_packets",
    "main_resolvers",
    "observe_packets",
    "resolvers_used",
    "stack_fingerprint",
    "uses_external_resolver",
]


@dataclass(frozen=True)
class Query:
    """One DNS query sent by the device."""

    t: float  # seconds since the event's anchor (>= 0)
    name: str  # query name, lower case, no trailing dot
    qtype: int  # 1 = A, 28 = AAAA, ... (phloem.iot.dns.QTYPE)
    resolver: str  # destination IP of the query
    stack: str = ""  # the sender's stack fingerprint (:func:`stack_fingerprint`); "" if unseen


@dataclass(frozen=True)
class Event:
    """One device's queries after its anchor."""

    key: str  # client MAC ("aa:bb:..") or IP when layer 2 is not visible
    anchor_utc: float  # epoch seconds of the anchor
    queries: tuple[Query, ...]  # sorted by t
    device: str | None = None  # ground-truth device label, when known
    experiment: str = ""  # where it came from (capture id, log name)
    day: str = ""  # ISO date of the anchor for temporal splits (UTC; doh_iot: its folder day)

    def window(self, seconds: float) -> tuple[Query, ...]:
        """The queries within ``seconds`` of the anchor (``t <= seconds``)."""
        return tuple(q for q in self.queries if q.t <= seconds)

    @property
    def has_dns(self) -> bool:
        return bool(self.queries)


class Anchor(StrEnum):
    """How an event's anchor (t = 0) is chosen; see :func:`events_from_packets`."""

    FIRST_QUERY = "first-query"
    DHCP = "dhcp"
    DHCP_OR_FIRST_QUERY = "dhcp-or-first-query"
    CAPTURE_START = "capture-start"


AnchorMode = Anchor | Literal["first-query", "dhcp", "dhcp-or-first-query", "capture-start"]
"""An :class:`Anchor`, or its name."""

ANCHOR_MODES: tuple[str, ...] = tuple(a.value for a in Anchor)
_DHCP_CLIENT_TYPES = frozenset({None, 1, 3})  # BOOTP, DISCOVER, REQUEST


@dataclass(slots=True)
class EventStats:
    """What :func:`events_from_packets` met; pass one object to accumulate over many calls.

    Attributes
    ----------
    packets
        Packets read.
    decode
        Per-packet decode counters (``decode.malformed``: frames cut short or inconsistent).
    queries
        DNS query messages taken (client -> port 53, QR = 0).
    responses
        DNS messages on the query path with QR = 1, or sent from port 53 (ignored).
    mdns
        mDNS messages (ignored: link-local service discovery, not resolution).
    malformed_dns
        DNS payloads that :func:`~phloem.iot.dns.parse_dns` rejected (skipped).
    empty_queries
        Queries with no question (skipped).
    dhcp_anchors
        Events anchored at a DHCP DISCOVER/REQUEST.
    fallback_anchors
        Keys of clients that ``anchor="dhcp"`` had to anchor at their first query because no
        DHCP message of theirs was seen.
    before_anchor
        Queries dropped because they came before their client's anchor.
    known_skipped
        Clients that were already in ``known`` and therefore started no event.
    bad_timestamps
        Packets whose time is outside :data:`EARLIEST_TS` .. :data:`LATEST_TS` (a flipped
        bit, a wild ``if_tsoffset``): skipped.
    start_ts
        Epoch seconds of the earliest timestamped packet of the stream that
        :func:`observe_packets` read last (``None`` before any; untimed pcapng Simple Packet
        Blocks are ignored). Each packet stream sets it afresh: it is where
        ``anchor="capture-start"`` puts ``t = 0``.
    """

    packets: int = 0
    decode: DecodeStats = field(default_factory=DecodeStats)
    queries: int = 0
    responses: int = 0
    mdns: int = 0
    malformed_dns: int = 0
    empty_queries: int = 0
    dhcp_anchors: int = 0
    fallback_anchors: list[str] = field(default_factory=list)
    before_anchor: int = 0
    known_skipped: int = 0
    start_ts: float | None = None
    bad_timestamps: int = 0


#: The plausible range of a record's time (UTC epoch seconds, 1980-01-01 to 2100-01-01):
#: anything outside is a damaged record, counted and skipped
EARLIEST_TS = 315_532_800.0
LATEST_TS = 4_102_444_800.0


def plausible_ts(ts: float) -> bool:
    """Whether ``ts`` is a time a capture or a log could hold (finite, 1980 to 2100)."""
    return EARLIEST_TS <= ts <= LATEST_TS


_INITIAL_TTLS = (32, 64, 128, 255)


def stack_fingerprint(packet: Decoded, message: DnsMessage) -> str:
    """Space-separated traits of the network stack that sent a DNS query.

    Passive OS fingerprinting applied to DNS (after p0f): what the sender's resolver library
    and IP stack choose, and a device keeps across reboots:

    - ``ttl=<n>``: the initial IP TTL / hop limit, rounded up to 32, 64, 128 or 255 (exact on
      the device's own link, where captures are taken);
    - ``v6``: the query went over IPv6; ``tcp``: over TCP;
    - ``rd0``: recursion not desired (stub resolvers set RD);
    - ``edns``: additional records present (an EDNS OPT, in practice);
    - ``id0``: transaction id 0 (some embedded stacks never randomise it);
    - ``qd<n>``: more than one question in the message.

    Resolver logs do not show these; their queries carry an empty fingerprint.
    """
    traits: list[str] = []
    if packet.ttl:
        traits.append(f"ttl={next(t for t in _INITIAL_TTLS if packet.ttl <= t)}")
    if packet.ip_version == 6:
        traits.append("v6")
    if packet.protocol is IpProto.TCP:
        traits.append("tcp")
    if not message.rd:
        traits.append("rd0")
    if message.additional_count:
        traits.append("edns")
    if message.id == 0:
        traits.append("id0")
    if len(message.questions) > 1:
        traits.append(f"qd{len(message.questions)}")
    return " ".join(traits)


@dataclass(slots=True)
class _Client:
    first_query: float = math.inf
    dhcp: float = math.inf
    queries: list[tuple[float, str, int, str, str]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Observation:
    """One thing a client did that the identifier cares about, in stream order.

    ``kind`` is ``"query"`` (a DNS question: ``name``, ``qtype``, ``resolver`` and ``stack``
    set) or ``"dhcp"`` (a DHCP DISCOVER/REQUEST: the client joined; ``key`` is its MAC).
    """

    ts: float  # epoch seconds
    key: str  # client MAC, else IP
    kind: Literal["query", "dhcp"]
    name: str = ""
    qtype: int = 0
    resolver: str = ""
    stack: str = ""


def observe_packets(packets: Iterable[RawPacket], stats: EventStats) -> Iterator[Observation]:
    """Stream the DNS questions and DHCP client messages of ``packets``, one by one.

    The streaming core of :func:`events_from_packets` and of live monitoring: damaged frames
    and DNS messages are counted in ``stats`` and skipped. ``stats.start_ts`` follows the
    earliest packet time of this stream, whatever the packet carries, so that
    :func:`events_from_observations` given the same ``stats`` anchors ``"capture-start"``
    events at the capture's start rather than at its first DNS or DHCP message.
    """
    start = math.inf
    stats.start_ts = None
    for raw in packets:
        stats.packets += 1
        if not math.isnan(raw.ts) and not plausible_ts(raw.ts):
            stats.bad_timestamps += 1
            continue
        if raw.ts < start:  # nan (pcapng simple packet blocks) compares False
            start = stats.start_ts = raw.ts
        pkt = decode(raw, stats.decode)
        if pkt is None:
            continue
        dhcp = extract_dhcp(pkt)
        if dhcp is not None:
            if dhcp.is_request and dhcp.message_type in _DHCP_CLIENT_TYPES:
                yield Observation(pkt.ts, dhcp.client_mac, "dhcp")
            continue
        dns = extract_dns(pkt, stats.decode)
        if dns is None:
            continue
        if dns.transport is DnsTransport.MDNS:
            stats.mdns += 1
            continue
        if not dns.is_query_direction:
            stats.responses += 1
            continue
        try:
            message = parse_dns(dns.message)
        except DnsParseError:
            stats.malformed_dns += 1
            continue
        if message.qr:
            stats.responses += 1
            continue
        if not message.questions:
            stats.empty_queries += 1
            continue
        stats.queries += 1
        key = pkt.src_mac or pkt.src_ip
        stack = stack_fingerprint(pkt, message)
        for q in message.questions:
            yield Observation(pkt.ts, key, "query", q.name, q.qtype, pkt.dst_ip, stack)


def _collect(observations: Iterable[Observation]) -> tuple[dict[str, _Client], float]:
    """Group DNS queries and DHCP client messages by client key; also the earliest time."""
    clients: dict[str, _Client] = {}
    first_ts = math.inf
    for ob in observations:
        first_ts = min(first_ts, ob.ts)
        client = clients.setdefault(ob.key, _Client())
        if ob.kind == "dhcp":
            client.dhcp = min(client.dhcp, ob.ts)
        else:
            client.first_query = min(client.first_query, ob.ts)
            client.queries.append((ob.ts, ob.name, ob.qtype, ob.resolver, ob.stack))
    return clients, first_ts


def _anchor(key: str, client: _Client, mode: Anchor, first_ts: float, stats: EventStats) -> float:
    """The anchor time (epoch seconds) of one client under ``mode``."""
    if mode is Anchor.CAPTURE_START:
        return first_ts if math.isfinite(first_ts) else client.first_query
    if mode is Anchor.FIRST_QUERY:
        return client.first_query
    if math.isfinite(client.dhcp):
        stats.dhcp_anchors += 1
        return client.dhcp
    if mode is Anchor.DHCP:
        stats.fallback_anchors.append(key)
    return client.first_query


def events_from_packets(
    packets: Iterable[RawPacket],
    *,
    anchor: AnchorMode = "dhcp-or-first-query",
    known: set[str] | None = None,
    stats: EventStats | None = None,
) -> list[Event]:
    """Cut a packet stream into one :class:`Event` per client that sent DNS queries.

    A *query* is a DNS message with QR = 0 sent to port 53 over UDP or TCP; responses,
    mDNS (port 5353) and anything else are ignored. Clients are keyed by source MAC when the
    link layer shows it, else by source IP (so behind a NAT, or on raw-IP captures, one key may
    hide several devices; a device that changes IP between events keeps its MAC key).

    Parameters
    ----------
    packets
        Packets of one capture or one chunk of a live stream, e.g. a
        :class:`~phloem.iot.pcap.PcapReader`.
    anchor
        Where each event's ``t = 0`` is:

        ``"first-query"``
            the client's first query;
        ``"dhcp"``
            its first DHCP DISCOVER/REQUEST (keyed by the DHCP client MAC); a client with no
            DHCP message in the stream is anchored at its first query and its key is listed in
            ``stats.fallback_anchors``;
        ``"dhcp-or-first-query"`` (default)
            the same without the flag;
        ``"capture-start"``
            the first packet of the stream, whatever it carries (for power-cycle experiments
            whose capture starts with the plug).

        In the DHCP modes a client seen only through DHCP yields an event with no queries
        (it joined and stayed silent); queries before the anchor are dropped.
    known
        Keys of clients already seen (e.g. in earlier chunks of a live stream). They start
        no new event: with a live stream, only a client not seen before starts an event, so a
        device that keeps running is not re-anchored. The set is **updated in place** with
        the keys of the events returned, so passing the same set to successive calls gives
        one event per client over the whole stream.
    stats
        Counters to update (malformed frames and DNS messages are counted there and skipped,
        never raised).

    Returns
    -------
    list of Event
        Sorted by anchor time, then key; ``device`` is ``None``, ``experiment`` empty and
        ``day`` the UTC date of the anchor.

    Raises
    ------
    ValueError
        ``anchor`` is not one of :data:`ANCHOR_MODES`.
    """
    stats = stats if stats is not None else EventStats()
    return events_from_observations(
        observe_packets(packets, stats), anchor=anchor, known=known, stats=stats
    )


def events_from_observations(
    observations: Iterable[Observation],
    *,
    anchor: AnchorMode = "dhcp-or-first-query",
    known: set[str] | None = None,
    stats: EventStats | None = None,
) -> list[Event]:
    """:func:`events_from_packets` for a stream of observations (a log, a live source).

    With ``anchor="capture-start"``, the start is ``stats.start_ts`` when set (the first
    packet of a capture, whatever it carries: pass the ``stats`` that :func:`observe_packets`
    filled), else the earliest observation's time (a log has no packets before its queries).
    """
    if anchor not in ANCHOR_MODES:
        raise ValueError(f"anchor must be one of {ANCHOR_MODES}, got {anchor!r}")
    mode = Anchor(anchor)
    stats = stats if stats is not None else EventStats()
    clients, first_ts = _collect(observations)
    if stats.start_ts is not None:  # read after the stream: observe_packets sets it as it goes
        first_ts = stats.start_ts
    return _events(clients, mode, known, stats, first_ts)


def _events(
    clients: dict[str, _Client],
    anchor: Anchor,
    known: set[str] | None,
    stats: EventStats,
    first_ts: float,
) -> list[Event]:
    events: list[Event] = []
    for key, client in clients.items():
        if known is not None and key in known:
            stats.known_skipped += 1
            continue
        if not client.queries and anchor in (Anchor.FIRST_QUERY, Anchor.CAPTURE_START):
            continue  # DHCP-only client: only the DHCP modes report silent clients
        at = _anchor(key, client, anchor, first_ts, stats)
        kept = sorted((q for q in client.queries if q[0] >= at), key=lambda q: q[0])
        stats.before_anchor += len(client.queries) - len(kept)
        queries = tuple(Query(ts - at, name, qtype, dst, fp) for ts, name, qtype, dst, fp in kept)
        day = datetime.fromtimestamp(at, UTC).date().isoformat()
        events.append(Event(key, at, queries, day=day))
    if known is not None:
        known.update(e.key for e in events)
    events.sort(key=lambda e: (e.anchor_utc, e.key))
    return events


def resolvers_used(event: Event) -> dict[str, int]:
    """Number of queries the event sent to each resolver, most used first."""
    return dict(Counter(q.resolver for q in event.queries).most_common())


def main_resolvers(events: Iterable[Event]) -> frozenset[str]:
    """The resolver used by the most clients: the network's own resolver, presumably.

    Each event votes once for every resolver it used; ties on clients are broken by the
    number of queries, and resolvers still tied are all returned. Empty when no event has
    queries. With a single event this is the device's most used resolver.
    """
    clients: Counter[str] = Counter()
    queries: Counter[str] = Counter()
    for event in events:
        used = Counter(q.resolver for q in event.queries)
        clients.update(used.keys())
        queries.update(used)
    if not clients:
        return frozenset()
    top = max((clients[r], queries[r]) for r in clients)
    return frozenset(r for r in clients if (clients[r], queries[r]) == top)


def uses_external_resolver(
    event: Event,
    local_resolvers: Collection[str] | None = None,
    *,
    peers: Iterable[Event] | None = None,
) -> bool:
    """Whether the event sent any query to a resolver outside ``local_resolvers``.

    The "hard-coded external resolver" flag: a device that ignores the resolver its DHCP
    lease names and queries its own (8.8.8.8, 114.114.114.114, ...).

    Parameters
    ----------
    event
        The device's event.
    local_resolvers
        The network's resolvers. By default :func:`main_resolvers` of ``peers``: the resolver
        used by the most clients of the capture, i.e. the gateway's.
    peers
        The events of the same capture or network (default: ``[event]`` alone, which makes
        the device's most used resolver the local one, so the flag marks devices that also
        query a second resolver). Ignored when ``local_resolvers`` is given.
    """
    if local_resolvers is None:
        local_resolvers = main_resolvers(peers if peers is not None else [event])
    local = frozenset(local_resolvers)
    return any(q.resolver not in local for q in event.queries)
