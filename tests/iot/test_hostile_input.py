"""Hostile and careless input: every case a user met, kept as a regression, and a fuzz test of
10^4 mutated captures, pcapng options, log lines and FTL rows through ``identify`` and
``monitor`` with zero tracebacks (a :class:`~phloem.core.errors.PhloemError` is a clean error
the command line prints in one line; anything else is a bug)."""

from __future__ import annotations

import gzip
import os
import sqlite3
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from iot_frames import dns, eth, ipv4, udp
from iot_synth import HIERARCHY, corpus
from typer.testing import CliRunner

from phloem.cli.app import app
from phloem.core.errors import PhloemError
from phloem.iot.clients import IdentifyParams, identify_clients
from phloem.iot.identify import Identifier
from phloem.iot.sources import open_observations
from phloem.iot.stream import Tracker

runner = CliRunner()
T0 = 1_700_000_000.0
NAMES = ("pool.ntp.org", "api.plugco.com", "time.plugco.com", "iot.bulbco.io", "ota.bulbco.io")


@pytest.fixture(scope="module")
def identifier() -> Identifier:
    return Identifier.train(corpus(per_day=6), hierarchy=HIERARCHY, checkpoints=(0, 2, 10),
                            target_false_unknown=0.05)  # fmt: skip


@pytest.fixture(scope="module")
def model(identifier: Identifier, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("model") / "m.npz"
    identifier.save(path)
    return path


def frame(name: str, mac: str = "02:00:00:00:00:01", src: str = "192.168.1.9") -> bytes:
    return eth(mac, "02:00:00:00:00:fe", ipv4(udp(40000, 53, dns(name)), src, "8.8.8.8"))


def pcapng(packets: list[tuple[float, bytes]], *, tsoffset: int | None = None,
           tsresol: int | None = None) -> bytes:  # fmt: skip
    """A little-endian pcapng: section header, one Ethernet interface (with the given
    options), one enhanced packet block per packet (microseconds unless ``tsresol``)."""
    shb_body = struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)
    out = struct.pack("<II", 0x0A0D0D0A, len(shb_body) + 12) + shb_body
    out += struct.pack("<I", len(shb_body) + 12)
    opts = b""
    if tsresol is not None:
        opts += struct.pack("<HH", 9, 1) + bytes([tsresol]) + b"\x00\x00\x00"
    if tsoffset is not None:
        opts += struct.pack("<HHq", 14, 8, tsoffset)
    if opts:
        opts += struct.pack("<HH", 0, 0)
    idb_body = struct.pack("<HHI", 1, 0, 65535) + opts
    out += (
        struct.pack("<II", 1, len(idb_body) + 12) + idb_body + struct.pack("<I", len(idb_body) + 12)
    )
    div = 10 ** (tsresol if tsresol is not None and tsresol < 128 else 6)
    for ts, data in packets:
        ticks = round(ts * div) & ((1 << 64) - 1)
        pad = b"\x00" * (-len(data) % 4)
        body = struct.pack("<IIIII", 0, ticks >> 32, ticks & 0xFFFFFFFF, len(data), len(data))
        body += data + pad
        out += struct.pack("<II", 6, len(body) + 12) + body + struct.pack("<I", len(body) + 12)
    return out


def capture(n: int = 6, t0: float = T0) -> bytes:
    return pcapng([(t0 + 1.5 * i, frame(NAMES[i % len(NAMES)])) for i in range(n)])


def cli(*args: str) -> tuple[int, str]:
    res = runner.invoke(app, list(args))
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        raise AssertionError(f"traceback: {type(res.exception).__name__}: {res.exception}")
    return res.exit_code, " ".join(res.output.split())


# ---- regression cases ---------------------------------------------------------------------


def test_a_flipped_bit_in_the_first_timestamp_is_a_counted_damaged_packet(
    model: Path, tmp_path: Path
) -> None:
    data = bytearray(capture())
    first_epb = data.find(struct.pack("<I", 6))
    data[first_epb + 8 + 4 + 3] ^= 0x40  # the high word of its time
    path = tmp_path / "flipped.pcapng"
    path.write_bytes(bytes(data))
    for cmd in ("identify", "monitor"):
        code, out = cli("iot", cmd, str(path), "--model", str(model))
        assert code == 0
        assert "timestamps out of range 1" in out


@pytest.mark.parametrize("offset", [1 << 62, -(1 << 62), (1 << 63) - 1])
def test_a_wild_if_tsoffset_is_counted_not_fatal(model: Path, tmp_path: Path, offset: int) -> None:
    path = tmp_path / "offset.pcapng"
    path.write_bytes(pcapng([(T0, frame("a.io")), (T0 + 1, frame("b.io"))], tsoffset=offset))
    for cmd in ("identify", "monitor"):
        code, out = cli("iot", cmd, str(path), "--model", str(model))
        assert code == 0 and "timestamps out of range 2" in out


def test_log_lines_and_ftl_rows_out_of_range_are_counted_by_kind(
    model: Path, tmp_path: Path
) -> None:
    log = tmp_path / "unbound.log"
    log.write_text(
        "[1700000000000] unbound[1:0] info: 192.168.1.5 example.com. A IN\n"  # milliseconds
        "[1700000000] unbound[1:0] info: 192.168.1.5 example.org. A IN\n"
        "[1e300] unbound[1:0] info: 192.168.1.5 example.net. A IN\n"
    )
    code, out = cli("iot", "identify", str(log), "--model", str(model))
    assert code == 0
    assert "queries 1, malformed 2 (timestamp out of range 1, unparsable query line 1)" in out
    db = tmp_path / "pihole-FTL.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE queries (id INTEGER PRIMARY KEY, timestamp INTEGER, type INTEGER, "
                "status INTEGER, domain TEXT, client TEXT)")  # fmt: skip
    rows = [
        (1_700_000_000_000, 1, "a.com"), (1e300, 1, "b.com"), (1_700_000_000, 1, "c.com"),
        ("soon", 1, "d.com"), (1_700_000_001, "A", "e.com"), (1_700_000_002, 1, None),
    ]  # fmt: skip
    con.executemany("INSERT INTO queries (timestamp, type, status, domain, client) "
                    "VALUES (?, ?, 2, ?, '192.168.1.9')", rows)  # fmt: skip
    con.commit()
    con.close()
    code, out = cli("iot", "identify", str(db), "--model", str(model))
    assert code == 0
    assert ("log lines 6, queries 1, malformed 5 (row without domain or client text 1, "
            "timestamp out of range 3, type not an integer 1)") in out  # fmt: skip


def test_sqlite_files_that_are_not_ftl_databases_are_one_line(model: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE x (a)").connection.close()
    code, out = cli("iot", "identify", str(other), "--model", str(model))
    assert code == 2 and "without a `queries` table" in out and "tables: x" in out
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 20)
    code, out = cli("iot", "identify", str(garbage), "--model", str(model))
    assert code == 2 and "not a readable SQLite database" in out
    pcap = tmp_path / "c.pcapng"
    pcap.write_bytes(capture())
    code, out = cli("iot", "identify", str(pcap), "--model", str(model), "--source", "ftl")
    assert code == 2 and "not a readable SQLite database" in out


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"", "is empty"),
        (os.urandom(2000).replace(b"\n", b"x"), "cannot tell the format"),
        (b"\x00" * 100, "cannot tell the format"),
        (gzip.compress(b"0" * 500, mtime=0), "gzip-compressed"),
        (b"BZh91AY&SY" + b"0" * 50, "bzip2-compressed"),
        (b"PK\x03\x04" + b"0" * 50, "zip archive"),
    ],
)
def test_files_that_are_no_input_at_all_are_one_line(
    model: Path, tmp_path: Path, content: bytes, says: str
) -> None:
    path = tmp_path / "input.pcap"
    path.write_bytes(content)
    for cmd in ("identify", "monitor"):
        code, out = cli("iot", cmd, str(path), "--model", str(model))
        assert code == 2 and says in out, out


def test_a_truncated_capture_reports_the_record_cut_short(model: Path, tmp_path: Path) -> None:
    path = tmp_path / "cut.pcapng"
    path.write_bytes(capture()[:-30])
    code, out = cli("iot", "identify", str(path), "--model", str(model))
    assert code == 0 and "cut short 1" in out


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--horizon", "nan"], "--horizon"),
        (["--confidence", "2"], "--confidence"),
        (["--confidence", "nan"], "--confidence"),
        (["--rejoin-after", "-1"], "--rejoin-after"),
    ],
)
def test_monitor_options_are_validated(
    model: Path, tmp_path: Path, args: list[str], says: str
) -> None:
    path = tmp_path / "c.pcapng"
    path.write_bytes(capture())
    code, out = cli("iot", "monitor", str(path), "--model", str(model), *args)
    assert code == 2 and says in out


@pytest.mark.parametrize("window", ["-5", "nan", "inf"])
def test_identify_window_is_validated(model: Path, tmp_path: Path, window: str) -> None:
    path = tmp_path / "c.pcapng"
    path.write_bytes(capture())
    code, out = cli("iot", "identify", str(path), "--model", str(model), "--window", window)
    assert code == 2 and "--window" in out


def test_a_model_that_is_not_a_model_and_a_missing_folder(model: Path, tmp_path: Path) -> None:
    path = tmp_path / "c.pcapng"
    path.write_bytes(capture())
    code, out = cli("iot", "identify", str(path), "--model", str(path))
    assert code != 0 and "phloem iot train" in out
    code, out = cli("iot", "monitor", str(tmp_path / "no" / "x.log"), "--model", str(model),
                    "--follow", "--idle-timeout", "0.2")  # fmt: skip
    assert code == 2 and "does not exist" in out


# ---- fuzzing ------------------------------------------------------------------------------


def _mutate(data: bytes, rng: np.random.Generator) -> bytes:
    b = bytearray(data)
    how = int(rng.integers(5))
    if how == 0 and b:  # flip 1 to 8 bits
        for _ in range(int(rng.integers(1, 9))):
            i = int(rng.integers(len(b)))
            b[i] ^= 1 << int(rng.integers(8))
    elif how == 1 and b:  # overwrite a run with random bytes
        i = int(rng.integers(len(b)))
        n = int(rng.integers(1, 16))
        b[i : i + n] = rng.integers(0, 256, size=n, dtype=np.uint8).tobytes()
    elif how == 2:  # truncate
        b = b[: int(rng.integers(len(b) + 1))]
    elif how == 3 and b:  # splice a chunk elsewhere
        i, j = sorted(int(x) for x in rng.integers(len(b), size=2))
        k = int(rng.integers(len(b)))
        b = b[:k] + b[i:j] + b[k:]
    else:  # a 32-bit field set to an extreme
        if len(b) >= 4:
            i = int(rng.integers(len(b) - 3))
            b[i : i + 4] = struct.pack("<I", int(rng.choice([0, 1, 0x7FFFFFFF, 0xFFFFFFFF])))
    return bytes(b)


def _capture_input(rng: np.random.Generator) -> tuple[str, bytes]:
    base = capture(int(rng.integers(1, 8)), T0 + float(rng.integers(0, 10**6)))
    if rng.random() < 0.3:  # pcapng interface options
        packets = [(T0 + i, frame(NAMES[i % 5])) for i in range(3)]
        offset = int(rng.choice([0, 1 << 62, -(1 << 62), int(rng.integers(-(2**62), 2**62))]))
        base = pcapng(
            packets, tsoffset=offset, tsresol=int(rng.choice([0, 3, 6, 9, 19, 0x80 | 10, 255]))
        )
    return "cap.pcapng", _mutate(base, rng)


def _log_input(rng: np.random.Generator) -> tuple[str, bytes]:
    stamps = ["1700000000", "1700000000000", "1e300", "-5", "nan", "99999999999999999999", "1.5"]
    lines = []
    for i in range(int(rng.integers(1, 6))):
        if rng.random() < 0.5:
            ts = str(rng.choice(stamps))
            lines.append(f"[{ts}] unbound[1:0] info: 192.168.1.{i} {NAMES[i % 5]}. A IN")
        else:
            day = str(rng.choice(["Nov 25", "Feb 30", "Xyz 99", "Jan  1"]))
            lines.append(f"{day} 10:00:0{i} dnsmasq[1]: query[A] {NAMES[i % 5]} from 10.0.0.{i}")
    text = ("\n".join(lines) + "\n").encode()
    name = "unbound.log" if text.startswith(b"[") else "pihole.log"
    return name, _mutate(text, rng) if rng.random() < 0.5 else text


def _ftl_input(rng: np.random.Generator, path: Path) -> None:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE queries (id INTEGER PRIMARY KEY, timestamp, type, status, domain, "
                "client)")  # fmt: skip
    values = [1_700_000_000, 1_700_000_000_000, 1e300, -1.0, "x", b"\x00\x01", None, 2**62, 0.5]
    for i in range(int(rng.integers(1, 6))):
        ts = values[int(rng.integers(len(values)))]
        typ = values[int(rng.integers(len(values)))] if rng.random() < 0.3 else 1
        dom = NAMES[i % 5] if rng.random() < 0.8 else values[int(rng.integers(len(values)))]
        con.execute("INSERT INTO queries (timestamp, type, status, domain, client) "
                    "VALUES (?, ?, 2, ?, '10.0.0.3')", (ts, typ, dom))  # fmt: skip
    con.commit()
    con.close()


def _through_both(identifier: Identifier, path: Path) -> None:
    """``path`` through identify's and monitor's library paths; clean errors are fine."""
    try:
        obs, stats = open_observations(path)
        identify_clients(identifier, obs, IdentifyParams(60.0, 3, "dhcp-or-first-query"),
                         stats=stats.events)  # fmt: skip
        stats.summary()
        obs, stats = open_observations(path)
        for _ in Tracker(identifier, 60.0, None, "dhcp-or-first-query", None, True).run(obs):
            pass
        stats.summary()
    except PhloemError:
        pass


FUZZ_INPUTS = 10_000


def test_fuzz_ten_thousand_hostile_inputs_without_a_traceback(
    identifier: Identifier, tmp_path: Path
) -> None:
    rng = np.random.default_rng(20261206)
    makers: list[Callable[[np.random.Generator], tuple[str, bytes]]] = [_capture_input, _log_input]
    for k in range(FUZZ_INPUTS):
        if k % 20 == 19:  # an FTL database now and then (SQLite files are slower to make)
            path = tmp_path / f"ftl{k}.db"
            _ftl_input(rng, path)
        else:
            name, data = makers[k % 2](rng)
            path = tmp_path / name
            path.write_bytes(data)
        try:
            _through_both(identifier, path)
        except Exception as e:  # a traceback a user would have seen
            raise AssertionError(f"input {k} ({path.name}): {type(e).__name__}: {e}") from e
        if path.suffix == ".db":
            path.unlink()
