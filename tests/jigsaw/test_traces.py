"""Trace readers: the shared traces, a user's CSV, and what careless or damaged files do."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from phloem.core.errors import ConfigError, DataNotFoundError
from phloem.jigsaw.apps import load_throughput
from phloem.jigsaw.registries import TRACES

MODEL = load_throughput()


def reader(name: str, **params: object):  # type: ignore[no-untyped-def]
    cls = TRACES.get(name)
    return cls(cls.Params(**params))


def test_the_bundled_pollux_workload_needs_no_data_folder() -> None:
    t = reader("pollux").read(None, MODEL)
    assert len(t) == 160 and t.jobs[0].arrival_s == 0.0
    assert {j.app for j in t.jobs} <= set(MODEL.apps)
    with pytest.raises(DataNotFoundError, match="PHLOEM_DATA_DIR"):
        reader("pollux", load="2", workload=3).read(None, MODEL)


def test_every_pollux_workload_reads(data_file) -> None:  # type: ignore[no-untyped-def]
    root = data_file("traces/pollux/workloads/workload-1.csv").parents[2]
    for load in ("0.5", "1", "1.5", "2", "realistic"):
        for w in range(1, 9):
            t = reader("pollux", load=load, workload=w).read(root.parent, MODEL)
            assert len(t) >= 80 and not t.skipped


def test_pollux_params_are_checked() -> None:
    with pytest.raises(ConfigError, match="load"):
        reader("pollux", load="3")
    with pytest.raises(ConfigError, match="workload"):
        reader("pollux", workload=9)


def test_the_whole_philly_trace_reads(data_file) -> None:  # type: ignore[no-untyped-def]
    root = data_file("traces/pollux/traces/philly.csv").parents[3]
    t = reader("philly").read(root, MODEL)
    assert len(t) == 82_247 and not t.skipped
    gpus = sorted({j.num_gpus for j in t.jobs})
    assert gpus[0] == 1 and gpus[-1] == 128
    # each job runs its trace duration alone, packed: work / rate at 4 GPUs per node
    j = t.jobs[100]
    place = (4,) * (j.num_gpus // 4) + ((j.num_gpus % 4,) if j.num_gpus % 4 else ())
    assert j.work / MODEL.solo_rate(j.app, place, j.batch_size) > 0


def test_alibaba_pods_become_fractional_jobs(data_file) -> None:  # type: ignore[no-untyped-def]
    root = data_file("traces/alibaba/openb_pod_list_default.csv").parents[2]
    t = reader("alibaba").read(root, MODEL)
    assert len(t) > 1000
    assert t.skipped["num_gpu: none or fractional"] > 0  # CPU-only pods
    assert any(j.gpu_fraction < 1 for j in t.jobs)
    assert all(0 < j.gpu_fraction <= 1 for j in t.jobs)


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "trace.csv"
    p.write_text(text, encoding="utf-8")
    return p


def test_a_user_csv_with_damage_is_read_and_counted(tmp_path: Path) -> None:
    p = write(tmp_path, "\n".join([
        "name,time,num_gpus,duration,application,spb,gpu_fraction,batch_size",
        "a,100,2,3600,cifar10,1,,",
        "b,160,1,600,,0,0.5,",
        "c,nan,1,600,,,,",              # time not a number we accept
        "d,200,0,600,,,,",              # no GPUs
        "e,210,1,-5,,,,",               # negative duration
        "f,220,1,600,gpt5,,,",          # unknown application
        "g,230,1,600,,maybe,,",         # spb not a boolean
        "h,240,1.5,600,,,,",            # fractional GPUs
        "i,250,1,600,,,2,",             # gpu_fraction above 1
        "j,260,4,,imagenet,,,800",      # no duration: the application's own work
        "k,1e999,1,60,,,,",             # infinite time
        "l,270,1,0,,,,",                # zero duration
    ]) + "\n")  # fmt: skip
    t = reader("csv", path=str(p)).read(None, MODEL)
    assert [j.name for j in t.jobs] == ["a", "b", "j"]
    assert t.jobs[0].arrival_s == 0.0 and t.jobs[1].arrival_s == 60.0  # shifted to start at 0
    assert t.jobs[0].spb and not t.jobs[1].spb and t.jobs[1].gpu_fraction == 0.5
    assert t.jobs[2].work == MODEL.apps["imagenet"].work and t.jobs[2].batch_size == 800
    assert dict(t.skipped) == {
        "time: not finite": 2, "num_gpus: below 1": 1, "duration: below 0": 1,
        "application: unknown": 1, "spb: not a boolean": 1,
        "num_gpus: fractional or absurd": 1, "gpu_fraction: outside (0, 1]": 1,
        "duration: zero": 1,
    }  # fmt: skip
    # duration: the job runs that long alone on its GPUs, packed
    a = t.jobs[0]
    assert a.work / MODEL.solo_rate("cifar10", (2,), a.batch_size) == pytest.approx(3600.0)


def test_a_user_csv_without_required_columns_says_which(tmp_path: Path) -> None:
    p = write(tmp_path, "name,when,gpus\na,1,1\n")
    with pytest.raises(ConfigError, match=r"lacks the column\(s\) time, num_gpus"):
        reader("csv", path=str(p)).read(None, MODEL)


@pytest.mark.parametrize("content", [b"", b"\x00\xff\xfe garbage \x81", b"\x1f\x8b\x08\x00"])
def test_a_file_that_is_not_a_csv_is_a_clear_error(tmp_path: Path, content: bytes) -> None:
    p = tmp_path / "bad.csv"
    p.write_bytes(content)
    with pytest.raises(ConfigError, match="trace"):
        reader("csv", path=str(p)).read(None, MODEL)


def test_a_missing_user_file_says_where(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match=r"nope\.csv"):
        reader("csv", path=str(tmp_path / "nope.csv")).read(None, MODEL)
    with pytest.raises(ConfigError, match="path"):
        reader("csv")


def test_philly_rows_with_flipped_bits_are_skipped(tmp_path: Path) -> None:
    p = write(tmp_path, "\n".join([
        "timestamp,duration,num_gpus,gpu_time,cluster",
        "2017-10-09 07:01:55,66.0,1,66.0,x",
        "2017-13-09 07:01:55,66.0,1,66.0,x",      # month 13
        "9999999-10-09 07:01:55,66.0,1,66.0,x",   # year out of range
        "2017-10-09 07:01:55,inf,1,66.0,x",
        "2017-10-09 07:01:55,66.0,2048,66.0,x",   # above max_gpus
        "2017-10-09 08:01:55,10.0,4,40.0,x",
    ]) + "\n")  # fmt: skip
    t = reader("philly", path=str(p)).read(None, MODEL)
    assert len(t) == 2 and t.jobs[1].arrival_s == 3600.0
    assert t.skipped["timestamp: unreadable"] == 2
    assert t.skipped["duration: not finite"] == 1
    assert t.skipped["num_gpus: above max_gpus or fractional"] == 1
    assert all(math.isfinite(j.work) and j.work > 0 for j in t.jobs)


def test_rows_too_large_to_simulate_are_counted_not_run(tmp_path: Path) -> None:
    p = write(tmp_path, "name,time,num_gpus,duration,batch_size\n"
                        "a,0,2,1e308,\nb,10,1,600,\nc,20,1,600,1e300\n")  # fmt: skip
    t = reader("csv", path=str(p)).read(None, MODEL)
    assert "a" not in [j.name for j in t.jobs] and "b" in [j.name for j in t.jobs]
    assert all(math.isfinite(j.work) and j.work > 0 for j in t.jobs)
    assert sum(v for k, v in t.skipped.items() if k.startswith("work:")) >= 1
