"""Resolver logs as a source of queries: dnsmasq / Pi-hole, unbound, Pi-hole's FTL database.

A home gateway usually has no packet capture but does have its resolver's log. Each reader
yields :class:`LogQuery` records (time, client IP, name, query type); :func:`events_from_log`
groups them into :class:`~phloem.iot.events.Event` s keyed by client IP, anchored at each
client's first query (logs carry no DHCP). Lines that are not queries are ignored; lines that
look like queries but do not parse, or whose time is outside 1980-2100, are counted by why in
:class:`LogStats`, never fatal. A database that is not FTL's is one error naming it.

Formats
-------
- dnsmasq and Pi-hole (``pihole.log``), syslog-style, no year in the line::

      Nov 25 10:00:01 dnsmasq[812]: query[A] time.example.com from 192.168.1.23

- unbound with ``log-queries: yes`` (epoch timestamp)::

      [1700000000] unbound[321:0] info: 192.168.1.23 time.example.com. A IN

- Pi-hole FTL's SQLite ``queries`` table (``timestamp``, ``type``, ``domain``, ``client``),
  read-only, type codes as FTL numbers them.
"""

from __future__ import annotations

import re
import sqlite3
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any

from phloem.core.errors import ConfigError
from phloem.iot.dns import QTYPE
from phloem.iot.events import Event, Observation, events_from_observations, plausible_ts

__all__ = [
    "LogQuery",
    "LogStats",
    "events_from_log",
    "ftl_record",
    "observations_from_log",
    "read_dnsmasq",
    "read_ftl_db",
    "read_unbound",
]

_TYPE_CODE = {name: code for code, name in QTYPE.items()}
#: Pi-hole FTL's query type numbering (FTL's enum query_types)
FTL_TYPES: dict[int, int] = {
    1: 1, 2: 28, 3: 255, 4: 33, 5: 6, 6: 12, 7: 16, 8: 35, 9: 15, 10: 43, 11: 46, 12: 48,
    13: 2, 15: 64, 16: 65,
}  # fmt: skip

_DNSMASQ = re.compile(
    r"^(?P<mon>[A-Z][a-z]{2})\s+(?P<day>\d{1,2}) (?P<time>\d\d:\d\d:\d\d) \S+: "
    r"query\[(?P<type>[A-Za-z0-9]+)\] (?P<name>\S+) from (?P<client>\S+)\s*$"
)
_UNBOUND = re.compile(
    r"^\[(?P<ts>\d+(?:\.\d+)?)\] unbound\[[^\]]*\] info: (?P<client>[0-9A-Fa-f:.]+) "
    r"(?P<name>\S+) "
    r"(?P<type>[A-Za-z0-9]+) IN\s*$"
)


@dataclass(frozen=True)
class LogQuery:
    ts: float  # UTC epoch seconds
    client: str  # client IP as logged (FTL: its MAC where the network table knows it)
    name: str  # lower case, no trailing dot
    qtype: int


@dataclass
class LogStats:
    """Lines (or rows) read, queries taken, and the damaged ones skipped: ``malformed`` in
    all, ``damaged`` by why."""

    lines: int = 0
    queries: int = 0
    malformed: int = 0  # looked like a query line (or was a row) but did not parse
    damaged: Counter[str] = field(default_factory=Counter)

    def skip(self, why: str) -> None:
        """Count one damaged line or row."""
        self.malformed += 1
        self.damaged[why] += 1

    def damage(self) -> str:
        """``why: n, ...`` of the damaged lines, or ``""``."""
        return ", ".join(f"{k} {v}" for k, v in sorted(self.damaged.items()))


def _qtype(token: str) -> int:
    t = token.upper()
    if t.startswith("TYPE") and t[4:].isdigit():
        return int(t[4:])
    return _TYPE_CODE.get(t, 0)


def _name(raw: str) -> str:
    return raw.rstrip(".").lower()


def read_dnsmasq(
    lines: Iterable[str], *, year: int, tz: tzinfo = UTC, stats: LogStats | None = None
) -> Iterator[LogQuery]:
    """Queries from dnsmasq / Pi-hole log lines; ``year`` (and ``tz``) complete the timestamps."""
    st = stats if stats is not None else LogStats()
    for line in lines:
        st.lines += 1
        if "query[" not in line:
            continue
        m = _DNSMASQ.match(line.rstrip("\n"))
        if m is None:
            st.skip("unparsable query line")
            continue
        try:
            when = datetime.strptime(
                f"{year} {m['mon']} {m['day']} {m['time']}", "%Y %b %d %H:%M:%S"
            ).replace(tzinfo=tz)
            ts = when.timestamp()
        except (ValueError, OverflowError):
            st.skip("impossible date")
            continue
        if not plausible_ts(ts):
            st.skip("timestamp out of range")
            continue
        st.queries += 1
        yield LogQuery(ts, m["client"], _name(m["name"]), _qtype(m["type"]))


def read_unbound(lines: Iterable[str], *, stats: LogStats | None = None) -> Iterator[LogQuery]:
    """Queries from unbound ``log-queries`` lines."""
    st = stats if stats is not None else LogStats()
    for line in lines:
        st.lines += 1
        if " info: " not in line or " IN" not in line:
            continue
        m = _UNBOUND.match(line.rstrip("\n"))
        if m is None:
            st.skip("unparsable query line")
            continue
        ts = float(m["ts"])
        if not plausible_ts(ts):
            st.skip("timestamp out of range")
            continue
        st.queries += 1
        yield LogQuery(ts, m["client"], _name(m["name"]), _qtype(m["type"]))


def ftl_record(ts: Any, typ: Any, domain: Any, client: Any, stats: LogStats) -> LogQuery | None:
    """One row of FTL's ``queries`` table as a query (``None``, counted malformed, if damaged)."""
    stats.lines += 1
    if not isinstance(domain, str) or not isinstance(client, str):
        stats.skip("row without domain or client text")
        return None
    if isinstance(ts, bool) or not isinstance(ts, int | float) or not plausible_ts(float(ts)):
        stats.skip("timestamp out of range")
        return None
    if typ is not None and (isinstance(typ, bool) or not isinstance(typ, int)):
        stats.skip("type not an integer")
        return None
    stats.queries += 1
    return LogQuery(float(ts), client, _name(domain), FTL_TYPES.get(int(typ or 0), 0))


_MAC_TEXT = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


def ftl_macs(con: sqlite3.Connection) -> dict[str, str]:
    """Client IP -> MAC from FTL's ``network`` and ``network_addresses`` tables (the MAC the
    IP was last seen with); empty when the database has no such tables. FTL's pseudo
    hardware addresses of clients it never saw on the link (``ip-...``) are left out."""
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master")}
    if not {"network", "network_addresses"} <= tables:
        return {}
    try:
        rows = con.execute(
            "SELECT a.ip, n.hwaddr FROM network_addresses a JOIN network n "
            "ON a.network_id = n.id ORDER BY a.lastSeen"
        ).fetchall()
    except sqlite3.Error:
        return {}  # another schema: keep keying clients by IP
    out: dict[str, str] = {}
    for ip, hwaddr in rows:
        if isinstance(ip, str) and isinstance(hwaddr, str):
            mac = hwaddr.strip().lower()
            if _MAC_TEXT.match(mac):
                out[ip.strip()] = mac  # the latest sighting wins (rows come oldest first)
    return out


def read_ftl_db(path: str | Path, *, stats: LogStats | None = None) -> Iterator[LogQuery]:
    """Queries from Pi-hole FTL's SQLite database, opened read-only, in time order.

    Clients are keyed by their MAC where FTL's network table knows it (:func:`ftl_macs`:
    stable across DHCP leases, and its OUI names the vendor), else by IP."""
    st = stats if stats is not None else LogStats()
    path = Path(path)
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as e:
        raise ConfigError("path", f"{path} cannot be opened as an SQLite database ({e})") from None
    try:
        try:
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master")}
            if "queries" not in tables:
                raise ConfigError(
                    "path",
                    f"{path} is an SQLite database without a `queries` table, so not Pi-hole's "
                    f"FTL database (tables: {', '.join(sorted(tables)) or 'none'})",
                )
            macs = ftl_macs(con)
            rows = con.execute(
                "SELECT timestamp, type, domain, client FROM queries ORDER BY timestamp, id"
            )
            for ts, typ, domain, client in rows:
                rec = ftl_record(ts, typ, domain, client, st)
                if rec is not None:
                    yield replace(rec, client=macs.get(rec.client, rec.client))
        except sqlite3.Error as e:
            raise ConfigError(
                "path", f"{path} is not a readable SQLite database (FTL's): {e}"
            ) from None
    finally:
        con.close()


def observations_from_log(
    records: Iterable[LogQuery], *, resolver: str = ""
) -> Iterator[Observation]:
    """Log records as stream observations (no stack traits: a log does not show them)."""
    for r in records:
        yield Observation(r.ts, r.client, "query", r.name, r.qtype, resolver)


def events_from_log(
    records: Iterable[LogQuery], *, known: set[str] | None = None, resolver: str = ""
) -> list[Event]:
    """One event per client not in ``known``, anchored at its first query (``known`` grows).

    ``resolver`` is recorded as every query's resolver (a log is the resolver's own view).
    The grouping is :func:`~phloem.iot.events.events_from_observations` with first-query
    anchors (logs carry no DHCP); events are marked ``experiment="log"``.
    """
    events = events_from_observations(
        observations_from_log(records, resolver=resolver), anchor="first-query", known=known
    )
    return [replace(e, experiment="log") for e in events]
