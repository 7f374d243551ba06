"""open_observations and sniff_format on hand-written captures, resolver logs and an FTL db."""

from __future__ import annotations

import sqlite3
import struct
import threading
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from iot_frames import dns as _dns
from iot_frames import eth as _eth
from iot_frames import ipv4 as _ipv4
from iot_frames import udp as _udp

from phloem.core.errors import ConfigError
from phloem.iot.events import Observation, events_from_observations, events_from_packets
from phloem.iot.pcap import PcapReader
from phloem.iot.sources import SOURCE_KINDS, SourceStats, open_observations, sniff_format

MAC_A = "0c:8b:95:a0:e2:cc"
MAC_B = "28:e3:47:8e:cf:a8"
GW = "02:00:00:00:00:01"
T0 = 1_700_000_000  # 2023-11-14 22:13:20 UTC
POLL_S = 0.02

# ---- frames, built by hand (as in test_events.py) ----------------------------------------


def _query(mac: str, ip: str, name: str, resolver: str, qtype: int = 1, ttl: int = 64) -> bytes:
    return _eth(mac, GW, _ipv4(_udp(40000, 53, _dns(name, qtype)), ip, resolver, ttl=ttl))


def _response(mac: str, ip: str, name: str, resolver: str) -> bytes:
    return _eth(GW, mac, _ipv4(_udp(53, 40000, _dns(name, response=True)), resolver, ip))


def _dhcp_request(mac: str) -> bytes:
    fixed = struct.pack("!BBBBIHH", 1, 1, 6, 0, 0xBEEF, 0, 0) + b"\x00" * 16
    fixed += bytes.fromhex(mac.replace(":", "")) + b"\x00" * 10 + b"\x00" * 192
    body = fixed + b"\x63\x82\x53\x63" + bytes([53, 1, 3, 255])  # option 53 = 3: REQUEST
    return _eth(mac, "ff:ff:ff:ff:ff:ff", _ipv4(_udp(68, 67, body), "0.0.0.0", "255.255.255.255"))


def _pcap(records: list[tuple[float, bytes]]) -> bytes:
    """A classic little-endian microsecond pcap of Ethernet frames."""
    out = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    for ts, data in records:
        sec, usec = int(ts), round((ts - int(ts)) * 1e6)
        out += struct.pack("<IIII", sec, usec, len(data), len(data)) + data
    return out


def _pcapng_header() -> bytes:
    body = struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)
    return struct.pack("<II", 0x0A0D0D0A, len(body) + 12) + body + struct.pack("<I", len(body) + 12)


def _ftl_db(path: Path, rows: list[tuple[int, float | None, int, str | None, str]]) -> Path:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE queries (id INTEGER PRIMARY KEY, timestamp INTEGER, type INTEGER, "
                "status INTEGER, domain TEXT, client TEXT)")  # fmt: skip
    con.executemany("INSERT INTO queries VALUES (?, ?, ?, 2, ?, ?)", rows)
    con.commit()
    con.close()
    return path


DNSMASQ = """\
Nov 25 10:00:05 dnsmasq[812]: query[AAAA] api.plug.io from 192.168.1.23
Nov 25 10:00:05 dnsmasq[812]: forwarded api.plug.io to 1.1.1.1
Nov 25 10:00:01 dnsmasq[812]: query[A] Time.Example.com from 192.168.1.23
Nov 25 10:00:03 dnsmasq[812]: query[A] broken line from
Nov 25 10:00:02 dnsmasq[812]: query[HTTPS] cdn.cam.net from 192.168.1.40
"""

UNBOUND = """\
[1700000002] unbound[321:0] info: 192.168.1.5 x.example. TYPE65 IN
[1700000000] unbound[321:0] info: 192.168.1.5 pool.ntp.org. A IN
[1700000003] unbound[321:0] info: resolving x.example. A IN
"""


def _two_client_capture() -> list[tuple[float, bytes]]:
    good = _query(MAC_A, "10.0.0.5", "a.example.com", "10.0.0.1")
    return [
        (T0 + 1.0, _dhcp_request(MAC_B)),
        (T0 + 2.0, good),
        (T0 + 2.1, _response(MAC_A, "10.0.0.5", "a.example.com", "10.0.0.1")),
        (T0 + 2.5, good[:20]),  # cut inside the IPv4 header: malformed, skipped
        (T0 + 3.0, _query(MAC_B, "10.0.0.6", "B.Example.com", "8.8.8.8", qtype=28, ttl=255)),
        (T0 + 4.0, b"\x00" * 6),  # garbage shorter than an Ethernet header
        (T0 + 5.0, _query(MAC_A, "10.0.0.5", "api.example.com", "10.0.0.1", ttl=60)),
    ]


# ---- sniff_format -----------------------------------------------------------------------


def test_sniff_format_recognises_each_kind(tmp_path: Path) -> None:
    files = {
        "cap.pcap": _pcap([(T0, b"x")]),
        "cap.pcapng": _pcapng_header(),
        "cap.log": UNBOUND.encode(),
        "pihole.log": DNSMASQ.encode(),
    }
    for name, blob in files.items():
        (tmp_path / name).write_bytes(blob)
    db = _ftl_db(tmp_path / "pihole-FTL.db", [(1, T0, 1, "a.io", "10.0.0.2")])
    got = {name: sniff_format(tmp_path / name) for name in files}
    assert got == {
        "cap.pcap": "pcap",
        "cap.pcapng": "pcap",
        "cap.log": "unbound",
        "pihole.log": "dnsmasq",
    }
    assert sniff_format(db) == "ftl"
    assert set(got.values()) | {"ftl"} == set(SOURCE_KINDS)


def test_sniff_format_of_an_unreadable_path_names_source(tmp_path: Path) -> None:
    # the library names its own parameter; the command line renames it (tests/cli)
    for path in (tmp_path / "missing.log", tmp_path):  # absent; a folder
        with pytest.raises(ConfigError, match="'path'") as info:
            sniff_format(path)
        assert info.value.field == "path" and str(path) in str(info.value)


# ---- open_observations: files read once --------------------------------------------------


def test_pcap_two_clients_dhcp_and_damage_counted(tmp_path: Path) -> None:
    cap = tmp_path / "two.pcap"
    cap.write_bytes(_pcap(_two_client_capture()))
    obs, stats = open_observations(cap)
    got = list(obs)
    assert got == [
        Observation(T0 + 1.0, MAC_B, "dhcp"),
        Observation(T0 + 2.0, MAC_A, "query", "a.example.com", 1, "10.0.0.1", "ttl=64"),
        Observation(T0 + 3.0, MAC_B, "query", "b.example.com", 28, "8.8.8.8", "ttl=255"),
        Observation(T0 + 5.0, MAC_A, "query", "api.example.com", 1, "10.0.0.1", "ttl=64"),
    ]
    assert stats.kind == "pcap"
    ev = stats.events
    assert (ev.packets, ev.queries, ev.responses) == (7, 3, 1)
    assert ev.decode.malformed == 2
    summary = stats.summary()
    assert "packets read 7" in summary and "malformed 2" in summary
    assert "DNS queries 3" in summary


def test_interface_summary_counts_loopback_duplicates() -> None:
    from phloem.iot.live import CaptureStats

    stats = SourceStats("interface", capture=CaptureStats(packets=4, loopback_duplicates=3))
    assert "loopback duplicates skipped 3" in stats.summary()
    assert "loopback" not in SourceStats("pcap").summary()


def test_explicit_kind_reads_the_same_capture(tmp_path: Path) -> None:
    cap = tmp_path / "two.dump"  # no telling suffix
    cap.write_bytes(_pcap(_two_client_capture()))
    obs, stats = open_observations(cap, kind="pcap")
    assert [o.kind for o in obs] == ["dhcp", "query", "query", "query"]
    assert stats.kind == "pcap"


def test_capture_start_of_a_capture_opened_as_observations(tmp_path: Path) -> None:
    """A capture that starts with a non-DNS frame: the observation path (what the CLI reads)
    anchors capture-start events at that frame, as events_from_packets does."""
    arp = bytes.fromhex("ff" * 6 + GW.replace(":", "") + "0806") + bytes(28)
    records = [(T0 + 0.5, arp), *_two_client_capture()]
    cap = tmp_path / "arp_first.pcap"
    cap.write_bytes(_pcap(records))
    obs, stats = open_observations(cap)
    via = events_from_observations(obs, anchor="capture-start", stats=stats.events)
    with PcapReader(cap) as reader:
        direct = events_from_packets(reader, anchor="capture-start")
    assert via == direct
    assert {e.key for e in via} == {MAC_A, MAC_B}
    assert {e.anchor_utc for e in via} == {T0 + 0.5}
    assert stats.events.start_ts == T0 + 0.5
    # the first DNS query (t = 2 s) is timed from the ARP frame, not from itself
    assert next(e for e in via if e.key == MAC_A).queries[0].t == pytest.approx(1.5)


def test_sniff_format_knows_every_pcap_magic(tmp_path: Path) -> None:
    cap = tmp_path / "be_ns.cap"
    cap.write_bytes(struct.pack(">IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 65535, 1))
    assert sniff_format(cap) == "pcap"


def test_dnsmasq_log_uses_the_year_sorts_and_counts_malformed(tmp_path: Path) -> None:
    log = tmp_path / "pihole.log"
    log.write_text(DNSMASQ)
    obs, stats = open_observations(log, year=2021)
    got = list(obs)
    t = datetime(2021, 11, 25, 10, 0, 1, tzinfo=UTC).timestamp()
    assert got == [
        Observation(t, "192.168.1.23", "query", "time.example.com", 1),
        Observation(t + 1, "192.168.1.40", "query", "cdn.cam.net", 65),
        Observation(t + 4, "192.168.1.23", "query", "api.plug.io", 28),
    ]
    assert stats.kind == "dnsmasq"
    assert (stats.log.lines, stats.log.queries, stats.log.malformed) == (5, 3, 1)
    assert stats.summary() == (
        "log lines 5, queries 3, malformed 1 (unparsable query line 1) (skipped)"
    )
    # the clock of the lines: a gateway two hours east of UTC logged them two hours earlier
    obs, _ = open_observations(log, year=2021, tz=timezone(timedelta(hours=2)))
    assert next(iter(obs)).ts == t - 7200


def test_dnsmasq_year_defaults_to_this_year(tmp_path: Path) -> None:
    log = tmp_path / "pihole.log"
    log.write_text("Jan  1 00:00:00 dnsmasq[1]: query[A] a.io from 10.0.0.9\n")
    (ob,) = open_observations(log)[0]
    assert datetime.fromtimestamp(ob.ts, UTC).year == datetime.now(UTC).year


def test_unbound_log(tmp_path: Path) -> None:
    log = tmp_path / "unbound.log"
    log.write_text(UNBOUND)
    obs, stats = open_observations(log)
    assert list(obs) == [
        Observation(1700000000.0, "192.168.1.5", "query", "pool.ntp.org", 1),
        Observation(1700000002.0, "192.168.1.5", "query", "x.example", 65),
    ]
    assert stats.kind == "unbound"
    assert (stats.log.lines, stats.log.queries, stats.log.malformed) == (3, 2, 1)


def test_ftl_database(tmp_path: Path) -> None:
    db = _ftl_db(
        tmp_path / "pihole-FTL.db",
        [(1, T0 + 10, 2, "A.io", "10.0.0.2"), (2, T0, 1, "b.io", "10.0.0.3"),
         (3, T0 + 5, 16, None, "10.0.0.2")],
    )  # fmt: skip
    obs, stats = open_observations(db)
    assert list(obs) == [
        Observation(float(T0), "10.0.0.3", "query", "b.io", 1),
        Observation(float(T0 + 10), "10.0.0.2", "query", "a.io", 28),
    ]
    assert stats.kind == "ftl" and (stats.log.queries, stats.log.malformed) == (2, 1)
    assert "malformed 1" in stats.summary()


def test_ftl_database_streams_in_time_then_insertion_order(tmp_path: Path) -> None:
    db = _ftl_db(
        tmp_path / "pihole-FTL.db",
        [(1, T0 + 1, 1, "late.io", "10.0.0.2"), (2, T0, 1, "z.io", "10.0.0.2"),
         (3, T0, 1, "a.io", "10.0.0.3")],
    )  # fmt: skip
    obs, _ = open_observations(db)
    assert [o.name for o in obs] == ["z.io", "a.io", "late.io"]


# ---- open_observations: errors ----------------------------------------------------------


def test_neither_or_both_path_and_interface(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_text("")
    for path, iface in ((None, None), (log, "lo")):
        with pytest.raises(ConfigError, match="not both") as info:
            open_observations(path, interface=iface)
        assert info.value.field == "path"


def test_a_capture_cannot_be_followed(tmp_path: Path) -> None:
    cap = tmp_path / "a.pcap"
    cap.write_bytes(_pcap(_two_client_capture()))
    with pytest.raises(ConfigError, match="interface") as info:
        open_observations(cap, follow=True)
    assert info.value.field == "follow"


def test_unknown_kind_lists_the_allowed_ones(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_text(DNSMASQ)
    with pytest.raises(ConfigError, match="'syslog'") as info:
        open_observations(log, kind="syslog")
    assert info.value.field == "kind"
    assert info.value.allowed == ("auto", *SOURCE_KINDS)
    for kind in ("auto", *SOURCE_KINDS):
        assert repr(kind) in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pcap"
    with pytest.raises(ConfigError, match="does not exist") as info:
        open_observations(missing)
    assert str(missing) in str(info.value)


# ---- open_observations: following a growing log -----------------------------------------


def _line(ts: datetime, name: str, client: str) -> str:
    return f"{ts:%b} {ts.day:2d} {ts:%H:%M:%S} dnsmasq[812]: query[A] {name} from {client}\n"


def test_follow_a_dnsmasq_log_while_a_thread_appends(tmp_path: Path) -> None:
    log = tmp_path / "pihole.log"
    start = datetime(2024, 3, 9, 8, 0, 0, tzinfo=UTC)
    log.write_text(_line(start, "old.example.com", "10.0.0.9"))  # before following: not read
    stop = threading.Event()
    names = [f"n{i}.example.com" for i in range(5)]

    def writer() -> None:
        for i, name in enumerate(names):
            time.sleep(3 * POLL_S)
            with log.open("a") as fh:
                fh.write(_line(start + timedelta(seconds=i + 1), name, "10.0.0.7"))
                if i == 2:
                    fh.write("Mar  9 08:00:03 dnsmasq[812]: query[A] cut short\n")
        time.sleep(5 * POLL_S)
        stop.set()

    obs, stats = open_observations(log, follow=True, year=2024, stop=stop, poll_s=POLL_S)
    thread = threading.Thread(target=writer)
    began = time.monotonic()
    thread.start()
    got = list(obs)  # ends once the writer sets stop
    thread.join()
    assert time.monotonic() - began < 2.0
    assert [o.name for o in got] == names
    assert [o.ts for o in got] == [(start + timedelta(seconds=i + 1)).timestamp() for i in range(5)]
    assert {o.key for o in got} == {"10.0.0.7"} and stats.kind == "dnsmasq"
    assert (stats.log.queries, stats.log.malformed) == (5, 1)


def test_follow_starts_at_the_call_not_at_the_first_read(tmp_path: Path) -> None:
    """Like follow_lines (and following an FTL db), the end of the log is taken at the call."""
    log = tmp_path / "pihole.log"
    log.write_text("")
    stop = threading.Event()
    obs, _ = open_observations(log, follow=True, year=2024, stop=stop, poll_s=POLL_S)
    log.write_text(
        _line(datetime(2024, 3, 9, 8, 0, 0, tzinfo=UTC), "early.example.com", "10.0.0.7")
    )
    timer = threading.Timer(10 * POLL_S, stop.set)
    timer.start()
    got = [o.name for o in obs]
    timer.join()
    assert got == ["early.example.com"]


def test_follow_an_ftl_database(tmp_path: Path) -> None:
    db = _ftl_db(tmp_path / "pihole-FTL.db", [(1, T0, 1, "old.io", "10.0.0.2")])
    stop = threading.Event()
    obs, stats = open_observations(db, follow=True, stop=stop, poll_s=POLL_S)
    con = sqlite3.connect(db)
    con.execute("INSERT INTO queries VALUES (2, ?, 1, 2, 'new.io', '10.0.0.3')", (T0 + 1,))
    con.commit()
    con.close()
    timer = threading.Timer(10 * POLL_S, stop.set)
    timer.start()
    got = list(obs)
    timer.join()
    assert got == [Observation(float(T0 + 1), "10.0.0.3", "query", "new.io", 1)]
    assert stats.kind == "ftl" and stats.log.queries == 1
