"""build_corpus / load_corpus: one labelled event per capture, on a tiny tarball and real data."""

from __future__ import annotations

import io
import struct
import tarfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path

import pytest
from iot_frames import dns, eth, ipv4, udp

from phloem.iot import corpus as corpus_mod
from phloem.iot.corpus import CorpusStats, build_corpus, corpus_cache_file, load_corpus
from phloem.iot.dataset import index_captures, load_labels, parse_capture_name
from phloem.iot.events import Event
from phloem.iot.pcap import RawPacket

MAC_A = "0c:8b:95:a0:e2:cc"
GW = "02:00:00:00:00:01"
OTHER = "02:00:00:00:00:09"
T0 = 1_700_647_200.0  # 2023-11-22 10:00:00 UTC


def query(t: float, mac: str, ip: str, name: str, resolver: str = "8.8.8.8") -> RawPacket:
    """An Ethernet/IPv4/UDP DNS A query (same frames as tests/iot/test_events.py)."""
    return RawPacket(T0 + t, 1, eth(mac, GW, ipv4(udp(40000, 53, dns(name)), ip, resolver)), 0)


DataFile = Callable[[str], Path]
TARBALL = "iot/doh_iot/dns_only_dev.tar.gz"


def pcap(packets: list[RawPacket]) -> bytes:
    out = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    for p in packets:
        sec = int(p.ts)
        out += struct.pack("<IIII", sec, round((p.ts - sec) * 1e6), len(p.data), len(p.data))
        out += p.data
    return out


def make_tarball(path: Path, members: dict[str, list[RawPacket]]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, packets in members.items():
            data = pcap(packets)
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


CAP1 = "dns_only/kettle/2023-11-22/2023-11-22_10:00:00.400s.pcap"
CAP2 = "dns_only/kettle/2023-11-22/2023-11-22_10:10:00.400s.pcap"
CAP3 = "dns_only/plug/2023-11-22/2023-11-22_10:00:00.400s.pcap"
CAP4 = "dns_only/plug/2023-11-22/2023-11-22_11:00:00.400s.pcap"


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    return make_tarball(
        tmp_path / "dns_only_dev.tar.gz",
        {
            # the kettle (MAC_A) is the busier client in CAP1 and sole client in CAP3 ...
            CAP1: [
                query(1.0, MAC_A, "10.0.0.5", "a.com"),
                query(2.0, MAC_A, "10.0.0.5", "b.com"),
                query(3.0, OTHER, "10.0.0.9", "x.com"),
            ],
            # ... and in CAP2 it is quieter than another host but still the one picked
            CAP2: [
                query(1.0, OTHER, "10.0.0.9", "x.com"),
                query(1.5, OTHER, "10.0.0.9", "y.com"),
                query(4.0, MAC_A, "10.0.0.8", "a.com"),
            ],
            CAP3: [query(5.0, GW, "10.0.0.1", "ntp.org")],
            CAP4: [],
        },
    )


def test_one_labelled_event_per_capture(tiny: Path) -> None:
    stats = CorpusStats()
    events = build_corpus(tiny, stats=stats)
    assert [e.experiment for e in events] == [
        parse_capture_name(CAP1).experiment_id,
        parse_capture_name(CAP2).experiment_id,
        parse_capture_name(CAP3).experiment_id,
        parse_capture_name(CAP4).experiment_id,
    ]
    assert [e.device for e in events] == ["kettle", "kettle", "plug", "plug"]
    assert all(e.day == "2023-11-22" for e in events)
    k1, k2, p1, p2 = events
    assert k1.key == k2.key == MAC_A and [q.name for q in k2.queries] == ["a.com"]
    assert [q.name for q in k1.queries] == ["a.com", "b.com"] and k1.queries[1].t == 1.0
    assert p1.key == GW and p1.has_dns
    assert p2.key == GW and not p2.has_dns  # no DNS: the device's usual key, capture start
    assert p2.anchor_utc == T0 + 3600.0
    assert (stats.captures, stats.no_dns, stats.multi_client, stats.off_key) == (4, 1, 2, 0)
    assert stats.device_keys == {"kettle": MAC_A, "plug": GW}
    only = build_corpus(tiny, devices=["plug"])
    assert [e.device for e in only] == ["plug", "plug"]


def test_cache_round_trips_and_is_keyed_by_the_tarball(tiny: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = load_corpus(tiny, cache)
    file = corpus_cache_file(tiny, cache)
    assert file.is_file() and first == build_corpus(tiny)
    assert load_corpus(tiny, cache) == first
    file.write_text("{not json")  # a damaged entry is rebuilt
    assert load_corpus(tiny, cache) == first
    make_tarball(tiny, {CAP1: []})  # replaced tarball: new size, new entry
    assert corpus_cache_file(tiny, cache) != file
    assert [e.has_dns for e in load_corpus(tiny, cache)] == [False]


def test_cache_dir_from_environment(
    tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PHLOEM_CACHE_DIR", str(tmp_path / "env"))
    assert corpus_cache_file(tiny).parent == tmp_path / "env"


# --------------------------------------------------------------------------------------------
# the real captures


@pytest.fixture(scope="module")
def real(data_file: DataFile) -> tuple[list[Event], CorpusStats, float]:
    stats = CorpusStats()
    start = time.perf_counter()
    events = build_corpus(data_file(TARBALL), stats=stats)  # ~5 s for all 12,021 captures
    return events, stats, time.perf_counter() - start


def test_real_subset(data_file: DataFile) -> None:
    devices = ["homepod", "lifx_mini", "yeelight_bulb"]
    stats = CorpusStats()
    events = build_corpus(data_file(TARBALL), devices=devices, stats=stats)
    assert Counter(e.device for e in events) == {d: 30 for d in devices}
    assert stats.multi_client == 0 and stats.off_key == 0
    assert stats.device_keys["lifx_mini"] == "d0:73:d5:5b:c8:23"
    assert sum(not e.has_dns for e in events if e.device == "homepod") == 17


def test_real_one_event_per_capture(
    data_file: DataFile, real: tuple[list[Event], CorpusStats, float]
) -> None:
    events, stats, _ = real
    index = index_captures(data_file(TARBALL))
    assert len(events) == len(index) == 12_021
    assert [e.experiment for e in events] == [c.experiment_id for c in index]
    assert [e.day for e in events] == [c.day.isoformat() for c in index]
    labels = load_labels(data_file("iot/doh_iot/labels.csv"))
    assert all(e.device in labels for e in events)
    # one querying client per capture and one MAC per device, all distinct
    assert stats.multi_client == 0 and stats.off_key == 0 and not stats.unreadable
    keys: defaultdict[str, set[str]] = defaultdict(set)
    for e in events:
        keys[str(e.device)].add(e.key)
    assert all(len(k) == 1 for k in keys.values()) and len(stats.device_keys) == 37
    assert len(set(stats.device_keys.values())) == 37
    assert all(q.t >= 0 for e in events for q in e.queries)
    assert stats.events.malformed_dns == 0 and stats.events.decode.malformed == 0


def test_real_no_dns_share(real: tuple[list[Event], CorpusStats, float]) -> None:
    events, stats, _ = real
    share = sum(not e.has_dns for e in events) / len(events)
    assert stats.no_dns == 1462 and 0.10 < share < 0.13  # README: "about 11%"


def test_real_cache_round_trip(
    data_file: DataFile,
    real: tuple[list[Event], CorpusStats, float],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    events = real[0]
    monkeypatch.setattr(corpus_mod, "build_corpus", lambda path: events)
    assert load_corpus(data_file(TARBALL), tmp_path) is events
    monkeypatch.setattr(corpus_mod, "build_corpus", lambda path: pytest.fail("cache missed"))
    loaded = load_corpus(data_file(TARBALL), tmp_path)
    assert loaded == events  # floats survive JSON exactly
