"""Tests for phloem.iot.dataset: capture names, labels, streaming the DoH-IoT tarball."""

from __future__ import annotations

import io
import struct
import tarfile
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from phloem.core.errors import DataNotFoundError
from phloem.iot.dataset import (
    CaptureIndex,
    CaptureInfo,
    ScanStats,
    by_experiment,
    index_captures,
    iter_captures,
    load_labels,
    parse_capture_name,
    temporal_split,
)

DataFile = Callable[[str], Path]
PCAPNG_SHB = struct.pack("<IIIHHqI", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1, 28)


# --- file names ---------------------------------------------------------------------------


def test_parse_bst_name() -> None:
    info = parse_capture_name("dns_only/echodot5/2023-10-19/2023-10-19_00:02:55.402s.pcap")
    assert info.device == "echodot5"
    assert info.day == date(2023, 10, 19)
    assert info.start_utc == datetime(2023, 10, 18, 23, 2, 55, tzinfo=UTC)
    assert info.start_utc.tzinfo is not None
    assert info.duration_s == 402.0
    assert info.end_utc == info.start_utc + timedelta(seconds=402)
    assert not info.ambiguous
    assert info.path.endswith(".402s.pcap")


def test_parse_gmt_name() -> None:
    info = parse_capture_name("dns_only/homepod/2023-11-22/2023-11-22_13:45:00.380s.pcap")
    assert info.start_utc == datetime(2023, 11, 22, 13, 45, tzinfo=UTC)


def test_fall_back_day() -> None:
    # 00:30 BST is unambiguous; 03:00 GMT after the change
    early = parse_capture_name("d/x/2023-10-29/2023-10-29_00:30:00.400s.pcap")
    assert early.start_utc == datetime(2023, 10, 28, 23, 30, tzinfo=UTC)
    late = parse_capture_name("d/x/2023-10-29/2023-10-29_03:00:00.400s.pcap")
    assert late.start_utc == datetime(2023, 10, 29, 3, 0, tzinfo=UTC)
    # the repeated hour: BST by default, GMT on request, flagged either way
    rep = parse_capture_name("d/x/2023-10-29/2023-10-29_01:30:00.400s.pcap")
    assert rep.ambiguous
    assert rep.start_utc == datetime(2023, 10, 29, 0, 30, tzinfo=UTC)
    rep1 = parse_capture_name("d/x/2023-10-29/2023-10-29_01:30:00.400s.pcap", fold=1)
    assert rep1.start_utc == datetime(2023, 10, 29, 1, 30, tzinfo=UTC)


def test_negative_suffix_is_wall_clock_length_across_fall_back() -> None:
    # started 01:58 BST (00:58 UTC), ended 01:04:40 GMT: wall-clock difference -3200 s
    info = parse_capture_name("d/x/2023-10-29/2023-10-29_01:58:00.-3200s.pcap", fold=1)
    assert info.start_utc == datetime(2023, 10, 29, 0, 58, tzinfo=UTC)
    assert info.duration_s == 400.0
    assert info.end_utc == datetime(2023, 10, 29, 1, 4, 40, tzinfo=UTC)


def test_spring_forward_gap_is_not_ambiguous() -> None:
    info = parse_capture_name("d/x/2024-03-31/2024-03-31_01:30:00.400s.pcap")
    assert not info.ambiguous


@pytest.mark.parametrize(
    "name",
    [
        "2023-10-19_00:02:55.402s.pcap",  # no device/day directories
        "d/x/2023-10-19/2023-10-19_00:02:55.pcap",
        "d/x/2023-10-19/notes.txt",
        "d/x/2023-10-19/2023-13-19_00:02:55.402s.pcap",
        "d/x/2023-10-19/2023-10-19_25:02:55.402s.pcap",
        "d/x/yesterday/2023-10-19_00:02:55.402s.pcap",
    ],
)
def test_bad_names_raise_value_error(name: str) -> None:
    with pytest.raises(ValueError):
        parse_capture_name(name)


# --- a small synthetic tarball ------------------------------------------------------------


def _tarball(tmp_path: Path, members: dict[str, bytes]) -> Path:
    path = tmp_path / "dns_only_dev.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tar.addfile(ti, io.BytesIO(data))
    return path


def test_iter_and_index_count_bad_members(tmp_path: Path) -> None:
    path = _tarball(
        tmp_path,
        {
            "dns_only/a/2023-10-19/2023-10-19_10:00:00.400s.pcap": PCAPNG_SHB,
            "dns_only/a/2023-10-20/2023-10-20_10:00:00.390s.pcap": PCAPNG_SHB,
            "dns_only/b/2023-10-19/2023-10-19_09:00:00.380s.pcap": PCAPNG_SHB,
            "dns_only/b/2023-10-19/README": b"hello",
            "dns_only/b/2023-10-19/2023-10-19_11:00:00.380s.pcap": b"garbage!",
            "dns_only/b/2023-10-19/2023-10-19_12:00:00.380s.pcap": b"",
        },
    )
    stats = ScanStats()
    got = list(iter_captures(path, stats=stats))
    assert [d for _, d in got] == [PCAPNG_SHB] * 3
    assert stats.members == 6 and stats.captures == 3
    assert stats.unparsed == ["dns_only/b/2023-10-19/README"]
    assert len(stats.corrupt) == 2
    only_b = list(iter_captures(tmp_path, devices=["b"]))  # a folder works too
    assert [i.device for i, _ in only_b] == ["b"]

    index = index_captures(path)
    assert isinstance(index, CaptureIndex)
    assert len(index) == 3 and index.devices == ["a", "b"]
    assert index.days == [date(2023, 10, 19), date(2023, 10, 20)]
    assert index.counts() == {
        ("a", date(2023, 10, 19)): 1,
        ("a", date(2023, 10, 20)): 1,
        ("b", date(2023, 10, 19)): 1,
    }
    assert index.counts_per_device() == {"a": 2, "b": 1}
    assert index.counts_per_day() == {date(2023, 10, 19): 2, date(2023, 10, 20): 1}
    assert index.devices_on(date(2023, 10, 20)) == ["a"]
    assert len(index.unparsed) == 1 and len(index.corrupt) == 2


@pytest.mark.parametrize("endian", ["<", ">"])
@pytest.mark.parametrize("magic", [0xA1B2C3D4, 0xA1B23C4D])  # micro-, nanosecond
def test_every_classic_pcap_magic_is_indexed(tmp_path: Path, endian: str, magic: int) -> None:
    header = struct.pack(endian + "IHHiIII", magic, 2, 4, 0, 0, 65535, 1)
    name = "dns_only/a/2023-10-19/2023-10-19_10:00:00.400s.pcap"
    stats = ScanStats()
    got = list(iter_captures(_tarball(tmp_path, {name: header}), stats=stats))
    assert [(i.path, d) for i, d in got] == [(name, header)]
    assert stats.corrupt == [] and stats.captures == 1


def test_missing_files_raise_data_not_found(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match=r"labels\.csv"):
        load_labels(tmp_path)
    with pytest.raises(DataNotFoundError, match=r"dns_only_dev\.tar\.gz"):
        index_captures(tmp_path / "nope.tar.gz")


def test_load_labels_from_explicit_file(tmp_path: Path) -> None:
    f = tmp_path / "labels.csv"
    f.write_text("device,manufacturer,category\nplug1,Tapo,plug\n\n")
    labels = load_labels(f)
    assert labels["plug1"].manufacturer == "Tapo" and labels["plug1"].category == "plug"
    f.write_text("device,maker\nplug1,Tapo\n")
    with pytest.raises(ValueError, match="missing columns"):
        load_labels(f)
    f.write_text("device,manufacturer,category\na,b,c\na,b,c\n")
    with pytest.raises(ValueError, match="twice"):
        load_labels(f)


# --- splits -------------------------------------------------------------------------------


def _info(device: str, day: int, hour: int = 12) -> CaptureInfo:
    start = datetime(2023, 10, day, hour, tzinfo=UTC)
    return CaptureInfo(device, date(2023, 10, day), start, 400.0, f"{device}/{day}/{hour}")


def test_temporal_split() -> None:
    infos = [_info("a", d) for d in (19, 20, 21, 22)] + [_info("b", 21), _info("b", 19)]
    train, test = temporal_split(infos, train_days=2)
    assert {i.day.day for i in train} == {19, 20} and {i.day.day for i in test} == {21, 22}
    assert len(train) + len(test) == len(infos)
    assert train == [infos[0], infos[1], infos[5]]  # input order kept
    train_c, test_c = temporal_split(infos, cutoff=date(2023, 10, 21))
    assert train_c == train and test_c == test
    moment = datetime(2023, 10, 21, 13, tzinfo=UTC)
    train_m, test_m = temporal_split(infos, cutoff=moment)
    assert {(i.device, i.day.day) for i in test_m} == {("a", 22)}
    assert len(train_m) == 5
    assert temporal_split(infos, train_days=0) == ([], infos)
    with pytest.raises(ValueError):
        temporal_split(infos)
    with pytest.raises(ValueError):
        temporal_split(infos, cutoff=date(2023, 10, 21), train_days=1)
    with pytest.raises(ValueError):
        temporal_split(infos, cutoff=datetime(2023, 10, 21))
    with pytest.raises(ValueError):
        temporal_split(infos, train_days=-1)


def test_by_experiment() -> None:
    infos = [_info("a", 19), _info("a", 20), _info("b", 19)]
    groups = by_experiment(infos)
    assert list(groups) == [i.experiment_id for i in infos]
    assert groups["a/2023-10-19T12:00:00+00:00"] is infos[0]
    with pytest.raises(ValueError, match="duplicate"):
        by_experiment([*infos, _info("a", 19)])


# --- the real data ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_index(data_file: DataFile) -> CaptureIndex:
    path = data_file("iot/doh_iot/dns_only_dev.tar.gz")
    t0 = time.perf_counter()
    index = index_captures(path)
    print(f"indexed {len(index)} captures in {time.perf_counter() - t0:.2f} s")
    return index


@pytest.mark.data
def test_real_labels_cover_every_device(data_file: DataFile, real_index: CaptureIndex) -> None:
    labels = load_labels(data_file("iot/doh_iot/labels.csv"))
    assert len(labels) == 37
    assert set(real_index.devices) == set(labels)
    assert all(lab.manufacturer and lab.category for lab in labels.values())


@pytest.mark.data
def test_real_counts_match_readme(real_index: CaptureIndex) -> None:
    assert len(real_index) == 12_021
    assert real_index.unparsed == () and real_index.corrupt == ()
    october = [date(2023, 10, d) for d in range(19, 29)]
    november = date(2023, 11, 22)
    assert real_index.days == [*october, november]
    counts = real_index.counts()
    first_run = real_index.devices_on(october[0])
    assert len(first_run) == 22
    for day in october:
        assert real_index.devices_on(day) == first_run
        for device in first_run:
            # 50 a day; echodot5 has one extra experiment on 2023-10-19
            assert counts[device, day] == (51 if (device, day.day) == ("echodot5", 19) else 50)
    second_run = real_index.devices_on(november)
    assert len(second_run) == 34
    assert all(counts[d, november] == 30 for d in second_run)
    assert len(set(first_run) & set(second_run)) == 19
    assert len(by_experiment(real_index.captures)) == len(real_index)


def _packet_times(pcapng: bytes) -> list[float]:
    """Enhanced-packet-block time stamps (microsecond resolution) of a pcapng file."""
    out, off, endian = [], 0, "<"
    while off + 12 <= len(pcapng):
        if pcapng[off : off + 4] == b"\x0a\x0d\x0d\x0a":
            endian = "<" if pcapng[off + 8 : off + 12] == b"\x4d\x3c\x2b\x1a" else ">"
        block_type, length = struct.unpack_from(endian + "II", pcapng, off)
        if block_type == 6:
            hi, lo = struct.unpack_from(endian + "II", pcapng, off + 12)
            out.append(((hi << 32) | lo) * 1e-6)
        if length < 12:
            break
        off += length
    return out


@pytest.mark.data
@pytest.mark.parametrize("day", ["2023-10-28", "2023-11-22"])
def test_real_utc_conversion_across_fall_back(data_file: DataFile, day: str) -> None:
    # 10-28 is BST (UTC+1), 11-22 is GMT: the packets must lie inside [start, start + length]
    path = data_file("iot/doh_iot/dns_only_dev.tar.gz")
    checked = 0
    for info, data in iter_captures(path, devices=["alexa_swan_kettle", "echodot5", "homepod"]):
        if info.day.isoformat() != day:
            continue
        times = _packet_times(data)
        if not times:
            continue
        start = info.start_utc.timestamp()
        assert start <= times[0] and times[-1] <= start + info.duration_s + 1.0, info.path
        checked += 1
    assert checked >= 20
