"""Live sources: a followed log file, a polled FTL database, and a real capture on loopback."""

from __future__ import annotations

import os
import re
import socket
import sqlite3
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from itertools import islice
from pathlib import Path

import pytest
from iot_frames import dns

from phloem.iot.events import events_from_packets
from phloem.iot.live import (
    CapturePermissionError,
    LiveCaptureError,
    LiveSourceError,
    _link_type,
    can_capture,
    capture_interface,
    follow_ftl,
    follow_lines,
)
from phloem.iot.logs import LogStats, read_dnsmasq
from phloem.iot.packets import LinkType
from phloem.iot.pcap import RawPacket

POLL_S = 0.02


def _append(path: Path, data: str | bytes) -> None:
    raw = data.encode() if isinstance(data, str) else data
    with path.open("ab") as f:
        f.write(raw)


# ---- follow_lines -----------------------------------------------------------------------


def test_follows_a_writer_thread_and_holds_partial_lines(tmp_path: Path) -> None:
    log = tmp_path / "dnsmasq.log"
    log.write_text("already there\n")
    chunks: list[str | bytes] = [
        "Nov 25 10:00:01 dnsmasq[812]: query[A] time.example.com from 192.168.1.23\n",
        "second\r\n",
        "par",  # one line in two writes, a few polls apart
        "tial\nthird\n",
        b"caf\xc3\xa9 \xff\n",
    ]

    def writer() -> None:
        for chunk in chunks:
            time.sleep(5 * POLL_S)
            _append(log, chunk)

    lines = follow_lines(log, poll_s=POLL_S, idle_timeout_s=3.0)
    thread = threading.Thread(target=writer)
    thread.start()
    got = list(islice(lines, 5))
    thread.join()
    assert got == [
        "Nov 25 10:00:01 dnsmasq[812]: query[A] time.example.com from 192.168.1.23",
        "second",
        "partial",
        "third",
        "café \ufffd",
    ]
    (query,) = read_dnsmasq(got, year=2026)
    assert query.name == "time.example.com"


def test_from_start_reads_existing_lines_and_drops_an_unfinished_one(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_text("one\ntwo\nunfinished")
    assert list(follow_lines(log, poll_s=POLL_S, from_start=True, idle_timeout_s=0.1)) == [
        "one",
        "two",
    ]


def test_lines_appended_after_the_call_but_before_iteration_are_kept(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_text("old\n")
    lines = follow_lines(log, poll_s=POLL_S, idle_timeout_s=0.1)
    _append(log, "new\n")
    assert list(lines) == ["new"]


def test_rotation_by_rename_finishes_the_old_file_first(tmp_path: Path) -> None:
    log, rotated = tmp_path / "pihole.log", tmp_path / "pihole.log.1"
    log.write_text("before\n")
    lines = follow_lines(log, poll_s=POLL_S, idle_timeout_s=2.0)
    _append(log, "a\n")
    assert next(lines) == "a"
    _append(log, "b\n")  # not read yet when the file is renamed
    log.rename(rotated)
    _append(rotated, "c\n")  # the writer has not reopened its log yet
    log.write_text("")  # logrotate's `create`
    _append(rotated, "d")  # an unfinished last line of the old file
    assert list(islice(lines, 2)) == ["b", "c"]
    _append(log, "e\n")  # the writer reopened: the new file has data
    assert list(islice(lines, 2)) == ["d", "e"]
    _append(log, "f\n")
    assert next(lines) == "f"


def test_copytruncate_reads_again_from_the_top(tmp_path: Path) -> None:
    log = tmp_path / "unbound.log"
    log.write_text("")
    lines = follow_lines(log, poll_s=POLL_S, idle_timeout_s=2.0)
    _append(log, "first line\nsecond line\n")
    assert list(islice(lines, 2)) == ["first line", "second line"]
    (tmp_path / "unbound.log.1").write_bytes(log.read_bytes())
    with log.open("r+b") as f:
        f.truncate(0)
    _append(log, "x\n")
    assert next(lines) == "x"


def test_waits_for_a_file_that_does_not_exist_yet(tmp_path: Path) -> None:
    log = tmp_path / "later.log"
    lines = follow_lines(log, poll_s=POLL_S, idle_timeout_s=2.0)
    timer = threading.Timer(0.1, lambda: log.write_text("first\nsecond\n"))
    timer.start()
    assert list(islice(lines, 2)) == ["first", "second"]  # a new file is read from its start
    timer.join()


def test_missing_folder_is_an_error_naming_the_path(tmp_path: Path) -> None:
    log = tmp_path / "no-such-dir" / "x.log"
    with pytest.raises(FileNotFoundError, match=re.escape(str(log.parent))):
        follow_lines(log)
    with pytest.raises(IsADirectoryError):
        follow_lines(tmp_path)
    with pytest.raises(ValueError, match="poll_s"):
        follow_lines(tmp_path / "x.log", poll_s=0)


def test_idle_timeout_ends_without_busy_looping(tmp_path: Path) -> None:
    log = tmp_path / "quiet.log"
    log.write_text("old\n")
    wall, cpu = time.monotonic(), time.process_time()
    assert list(follow_lines(log, poll_s=POLL_S, idle_timeout_s=0.3)) == []
    wall, cpu = time.monotonic() - wall, time.process_time() - cpu
    assert 0.3 <= wall < 1.5
    assert cpu < 0.15  # a spinning loop would burn about `wall` seconds of CPU


def test_stop_event_ends_following_promptly(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_text("")
    stop = threading.Event()
    timer = threading.Timer(0.1, stop.set)
    timer.start()
    t0 = time.monotonic()
    assert list(follow_lines(log, poll_s=5.0, stop=stop)) == []  # the sleep wakes on stop
    assert time.monotonic() - t0 < 2.0
    timer.join()


# ---- follow_ftl -------------------------------------------------------------------------


def _ftl_db(path: Path, rows: list[tuple[int, int, str | None, str | None]]) -> None:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE queries (id INTEGER PRIMARY KEY, timestamp INTEGER, type INTEGER, "
                "status INTEGER, domain TEXT, client TEXT, forward TEXT)")  # fmt: skip
    _insert(con, rows)
    con.close()


#: FTL rows' times are seconds after this (times outside 1980-2100 are damaged rows)
T0 = 1_700_000_000


def _insert(con: sqlite3.Connection, rows: list[tuple[int, int, str | None, str | None]]) -> None:
    con.executemany(
        "INSERT INTO queries (timestamp, type, status, domain, client, forward) "
        "VALUES (?, ?, 2, ?, ?, '1.1.1.1')",
        [(T0 + ts, *rest) for ts, *rest in rows],
    )
    con.commit()


def test_ftl_yields_new_rows_in_id_order_and_counts_malformed(tmp_path: Path) -> None:
    db = tmp_path / "pihole-FTL.db"
    _ftl_db(db, [(100, 1, "old.io", "10.0.0.2")])
    st = LogStats()
    queries = follow_ftl(db, poll_s=POLL_S, idle_timeout_s=2.0, stats=st)
    con = sqlite3.connect(db)
    _insert(con, [(120, 2, "New.Example.com.", "10.0.0.5"), (110, 1, None, "10.0.0.5")])
    _insert(con, [(105, 16, "b.io", "10.0.0.6")])
    got = list(islice(queries, 2))
    assert [(q.ts, q.client, q.name, q.qtype) for q in got] == [
        (T0 + 120.0, "10.0.0.5", "new.example.com", 28),
        (T0 + 105.0, "10.0.0.6", "b.io", 65),
    ]
    assert (st.lines, st.queries, st.malformed) == (3, 2, 1)
    _insert(con, [(130, 1, "later.io", "10.0.0.2")])
    con.close()
    assert [q.name for q in islice(queries, 1)] == ["later.io"]
    everything = follow_ftl(db, poll_s=POLL_S, from_start=True, idle_timeout_s=0.1)
    assert [q.name for q in everything] == [
        "old.io",
        "new.example.com",
        "b.io",
        "later.io",
    ]


def test_ftl_locked_database_is_retried(tmp_path: Path) -> None:
    db = tmp_path / "pihole-FTL.db"
    _ftl_db(db, [])
    queries = follow_ftl(db, poll_s=POLL_S, idle_timeout_s=3.0)
    writer = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    writer.execute("BEGIN EXCLUSIVE")  # readers now get "database is locked"
    writer.execute("INSERT INTO queries (timestamp, type, domain, client) "
                   "VALUES (1700000001, 1, 'locked.io', '10.0.0.9')")  # fmt: skip
    timer = threading.Timer(0.2, lambda: writer.execute("COMMIT"))
    timer.start()
    t0 = time.monotonic()
    (query,) = islice(queries, 1)
    assert query.name == "locked.io" and time.monotonic() - t0 >= 0.15
    timer.join()
    writer.close()


def test_ftl_recreated_database_is_read_from_its_start(tmp_path: Path) -> None:
    db = tmp_path / "pihole-FTL.db"
    _ftl_db(db, [(1, 1, f"n{i}.io", "10.0.0.2") for i in range(5)])
    queries = follow_ftl(db, poll_s=POLL_S, idle_timeout_s=2.0)
    db.unlink()
    _ftl_db(db, [(2, 1, "fresh.io", "10.0.0.3")])
    assert next(queries).name == "fresh.io"


def test_ftl_wrong_file_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=re.escape("nope.db")):
        follow_ftl(tmp_path / "nope.db")
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(LiveSourceError, match="queries"):
        follow_ftl(other)
    text = tmp_path / "text.db"
    text.write_text("not a database at all, just some text that is long enough" * 20)
    with pytest.raises(LiveSourceError):
        follow_ftl(text)


# ---- capture_interface ------------------------------------------------------------------


def _refuse(*args: object, **kwargs: object) -> socket.socket:
    raise PermissionError(1, "Operation not permitted")


def test_permission_error_names_cap_net_raw_and_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "AF_PACKET", getattr(socket, "AF_PACKET", 17), raising=False)
    monkeypatch.setattr(socket, "socket", _refuse)
    with pytest.raises(CapturePermissionError) as info:
        capture_interface("br-lan")
    message = str(info.value)
    assert "CAP_NET_RAW" in message and "br-lan" in message
    assert f"setcap cap_net_raw,cap_net_admin=eip {os.path.realpath(sys.executable)}" in message
    assert "--follow" in message
    assert isinstance(info.value, LiveCaptureError) and isinstance(info.value, PermissionError)
    ok, reason = can_capture()
    assert not ok and "CAP_NET_RAW" in reason


def test_no_af_packet_means_not_linux(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(socket, "AF_PACKET", raising=False)
    with pytest.raises(LiveCaptureError, match="needs Linux"):
        capture_interface("eth0")
    ok, reason = can_capture()
    assert not ok and "--follow" in reason


def test_bad_arguments_and_link_types() -> None:
    with pytest.raises(ValueError, match="snaplen"):
        capture_interface("lo", snaplen=0)
    with pytest.raises(ValueError, match="timeout_s"):
        capture_interface("lo", timeout_s=0)
    assert _link_type(1) == _link_type(772) == LinkType.ETHERNET  # Ethernet, loopback
    assert _link_type(0xFFFE) == LinkType.RAW  # tun / WireGuard: no link header


def test_unknown_interface_lists_the_available_ones() -> None:
    ok, reason = can_capture()
    if not ok:
        pytest.skip(reason)
    with pytest.raises(LiveCaptureError) as info:
        capture_interface("phloem-nope0")
    message = str(info.value)
    assert "phloem-nope0" in message
    assert all(name in message for _, name in socket.if_nameindex())


def _wait_for(packets: list[RawPacket], needle: bytes, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(needle in p.data for p in list(packets)):
            return
        time.sleep(0.01)


def test_real_capture_on_loopback_sees_a_query_once() -> None:
    ok, reason = can_capture()
    if not ok:
        pytest.skip(reason)
    name = f"probe-{uuid.uuid4().hex[:10]}.example.com"
    query = dns(name, ident=0x1234)  # RD, one question, QTYPE A
    stop = threading.Event()
    packets: list[RawPacket] = []

    def consume(capture: Iterator[RawPacket]) -> None:
        for packet in capture:
            packets.append(packet)

    with capture_interface("lo", stop=stop, timeout_s=0.05) as capture:
        thread = threading.Thread(target=consume, args=(capture,))
        thread.start()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.sendto(query, ("127.0.0.1", 53))
        _wait_for(packets, query[12:], timeout_s=3.0)
        time.sleep(0.05)  # let a duplicate, if any, arrive too
        stop.set()
        thread.join(timeout=2.0)
    assert not thread.is_alive()
    assert capture.stats.loopback_duplicates >= 1
    assert all(p.link_type == LinkType.ETHERNET for p in packets)
    events = events_from_packets(packets, anchor="first-query")
    hits = [e for e in events if any(q.name == name for q in e.queries)]
    assert len(hits) == 1
    window = hits[0].window(60.0)
    assert [q.name for q in window].count(name) == 1
    (probe,) = (q for q in window if q.name == name)
    assert probe.qtype == 1 and probe.resolver == "127.0.0.1"
