"""Resolver-log readers against hand-written lines and a small FTL-shaped database."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from phloem.iot.logs import (
    LogStats,
    events_from_log,
    read_dnsmasq,
    read_ftl_db,
    read_unbound,
)

DNSMASQ = """\
Nov 25 10:00:01 dnsmasq[812]: query[A] Time.Example.com from 192.168.1.23
Nov 25 10:00:01 dnsmasq[812]: forwarded time.example.com to 1.1.1.1
Nov 25 10:00:02 dnsmasq[812]: reply time.example.com is 93.184.216.34
Nov 25 10:00:03 dnsmasq[812]: query[AAAA] api.plug.io from 192.168.1.23
Nov 25 10:00:04 dnsmasq[812]: query[HTTPS] cdn.cam.net from 192.168.1.40
Nov 25 10:00:05 dnsmasq[812]: query[A] broken line from
Nov 99 10:00:05 dnsmasq[812]: query[A] bad.date.com from 192.168.1.9
"""


def test_dnsmasq_lines_and_counts() -> None:
    st = LogStats()
    recs = list(read_dnsmasq(DNSMASQ.splitlines(), year=2026, stats=st))
    assert [(r.client, r.name, r.qtype) for r in recs] == [
        ("192.168.1.23", "time.example.com", 1),
        ("192.168.1.23", "api.plug.io", 28),
        ("192.168.1.40", "cdn.cam.net", 65),
    ]
    assert st.lines == 7 and st.queries == 3 and st.malformed == 2
    assert recs[1].ts - recs[0].ts == 2.0


def test_unbound_lines() -> None:
    lines = [
        "[1700000000] unbound[321:0] info: 192.168.1.5 pool.ntp.org. A IN",
        "[1700000002] unbound[321:0] info: 192.168.1.5 x.example. TYPE65 IN",
        "[1700000003] unbound[321:0] info: resolving x.example. A IN",
    ]
    st = LogStats()
    recs = list(read_unbound(lines, stats=st))
    assert [(r.ts, r.name, r.qtype) for r in recs] == [
        (1700000000.0, "pool.ntp.org", 1),
        (1700000002.0, "x.example", 65),
    ]
    assert st.malformed == 1


T0 = 1_700_000_000


def test_ftl_database(tmp_path: Path) -> None:
    db = tmp_path / "pihole-FTL.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE queries (id INTEGER, timestamp INTEGER, type INTEGER, status "
                "INTEGER, domain TEXT, client TEXT)")  # fmt: skip
    con.executemany(
        "INSERT INTO queries VALUES (?, ?, ?, 2, ?, ?)",
        [
            (1, T0 + 100, 2, "a.io", "10.0.0.2"),
            (2, T0 + 90, 1, "b.io", "10.0.0.2"),
            (3, T0 + 95, 16, None, "x"),
        ],
    )
    con.commit()
    con.close()
    st = LogStats()
    recs = list(read_ftl_db(db, stats=st))
    assert [(r.ts, r.name, r.qtype) for r in recs] == [
        (T0 + 90.0, "b.io", 1),
        (T0 + 100.0, "a.io", 28),
    ]
    assert st.malformed == 1


def test_events_anchor_at_first_query_and_respect_known() -> None:
    recs = list(read_dnsmasq(DNSMASQ.splitlines(), year=2026))
    known: set[str] = {"192.168.1.40"}
    (ev,) = events_from_log(recs, known=known)
    assert ev.key == "192.168.1.23" and [q.t for q in ev.queries] == [0.0, 2.0]
    assert ev.day == "2026-11-25" and known == {"192.168.1.40", "192.168.1.23"}
    assert events_from_log(recs, known=known) == []


def _network(con: sqlite3.Connection, rows: list[tuple[int, str, str, int]]) -> None:
    """FTL's network tables: (id, hwaddr, ip, lastSeen) rows."""
    con.execute("CREATE TABLE IF NOT EXISTS network (id INTEGER PRIMARY KEY, hwaddr TEXT, "
                "interface TEXT, firstSeen INTEGER, lastQuery INTEGER, numQueries INTEGER, "
                "macVendor TEXT, aliasclient_id INTEGER)")  # fmt: skip
    con.execute("CREATE TABLE IF NOT EXISTS network_addresses (network_id INTEGER, ip TEXT, "
                "lastSeen INTEGER, name TEXT, nameUpdated INTEGER)")  # fmt: skip
    for nid, hwaddr, ip, seen in rows:
        con.execute("INSERT OR IGNORE INTO network (id, hwaddr) VALUES (?, ?)", (nid, hwaddr))
        con.execute("INSERT INTO network_addresses VALUES (?, ?, ?, '', 0)", (nid, ip, seen))
    con.commit()


def test_ftl_keys_clients_by_the_mac_of_its_network_table(tmp_path: Path) -> None:
    db = tmp_path / "pihole-FTL.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE queries (id INTEGER, timestamp INTEGER, type INTEGER, status "
                "INTEGER, domain TEXT, client TEXT)")  # fmt: skip
    con.executemany(
        "INSERT INTO queries VALUES (?, ?, 1, 2, ?, ?)",
        [(1, T0, "a.io", "10.0.0.2"), (2, T0 + 1, "b.io", "10.0.0.3"),
         (3, T0 + 2, "c.io", "10.0.0.4"), (4, T0 + 3, "d.io", "10.0.0.5")],
    )  # fmt: skip
    _network(con, [
        (1, "9C:A2:F4:6E:DE:25", "10.0.0.2", T0),    # the plug
        (2, "ip-10.0.0.3", "10.0.0.3", T0),          # FTL's pseudo address: no MAC known
        (3, "d0:3f:27:82:15:5b", "10.0.0.4", T0),    # a camera had .4 first ...
        (1, "9C:A2:F4:6E:DE:25", "10.0.0.4", T0 + 9),  # ... then the plug took it over
    ])  # fmt: skip
    con.close()
    keys = [r.client for r in read_ftl_db(db)]
    assert keys == ["9c:a2:f4:6e:de:25", "10.0.0.3", "9c:a2:f4:6e:de:25", "10.0.0.5"]


def test_followed_ftl_keys_by_mac_too(tmp_path: Path) -> None:
    from phloem.iot.live import follow_ftl

    db = tmp_path / "pihole-FTL.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE queries (id INTEGER PRIMARY KEY, timestamp INTEGER, type INTEGER, "
                "status INTEGER, domain TEXT, client TEXT)")  # fmt: skip
    con.execute("INSERT INTO queries (timestamp, type, status, domain, client) "
                "VALUES (?, 1, 2, 'a.io', '10.0.0.2')", (T0,))  # fmt: skip
    _network(con, [(1, "9c:a2:f4:6e:de:25", "10.0.0.2", T0)])
    con.close()
    (rec,) = list(follow_ftl(db, poll_s=0.05, from_start=True, idle_timeout_s=0.3))
    assert rec.client == "9c:a2:f4:6e:de:25"
