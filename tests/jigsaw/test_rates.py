"""Rates under sharing, hand-checked, and the SPB factors from phloem.spb's measurements."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from phloem.core.errors import ConfigError
from phloem.jigsaw.apps import IterTime, load_colocation, load_throughput
from phloem.jigsaw.cluster import ClusterSpec
from phloem.jigsaw.jobs import Job
from phloem.jigsaw.policies.base import Sharing
from phloem.jigsaw.rates import Estimate, RateModel
from phloem.jigsaw.spbmodel import (
    SpbFactors,
    epochs_to,
    penalty_from_histories,
    shallow_compute_from_profile,
)

MODEL = load_throughput()
COLOC = load_colocation()
ROOT = Path(__file__).resolve().parents[2]


def est(u: float, v: float, shallow: float | None = None) -> Estimate:
    return Estimate(IterTime(u, v, 1), 1.0, u, u if shallow is None else shallow, v)


def model(**kw: object) -> RateModel:
    return RateModel((), MODEL, COLOC, ClusterSpec(), SpbFactors(), **kw)  # type: ignore[arg-type]


def test_fair_interleaving_slows_both_by_the_busier_resource() -> None:
    m = model(overhead=0.0)
    assert m.interleave_speeds([(est(0.5, 0.5), False), (est(0.4, 0.4), False)]) == [1.0, 1.0]
    assert m.interleave_speeds([(est(0.9, 0.1), False), (est(0.9, 0.1), False)]) == pytest.approx(
        [1 / 1.8] * 2
    )
    assert m.interleave_speeds([(est(0.2, 0.8), False), (est(0.2, 0.6), False)]) == pytest.approx(
        [1 / 1.4] * 2
    )


def test_host_first_interleaving_keeps_the_host_and_fills_its_idle_time() -> None:
    m = model(overhead=0.05)
    host, guest = est(0.9, 0.1, shallow=0.45), est(0.9, 0.1)
    s = m.interleave_speeds([(host, True), (guest, False)], host_first=True)
    assert s[0] == pytest.approx(0.95)
    assert s[1] == pytest.approx(0.95 * 0.55 / 0.9)


def test_an_exclusive_job_runs_at_its_table_rate_and_is_fully_useful() -> None:
    job = Job("a", 0.0, "cifar10", 4, 512, 1e6)
    m = RateModel((job,), MODEL, COLOC, ClusterSpec(), SpbFactors())
    r = m.rates({0: (0, 1, 2, 3)}, {}, Sharing.NONE)[0]
    it = MODEL.iteration("cifar10", (4,), 512)
    assert r.work == pytest.approx(MODEL.solo_rate("cifar10", (4,), 512))
    assert r.useful_gpu == pytest.approx(4 * it.compute_s / it.total_s)
    assert r.network_bytes == 0.0  # one node


def test_concurrent_sharing_uses_gavels_pair_factors() -> None:
    jobs = (Job("a", 0.0, "cifar10", 1, 128, 1e6), Job("b", 0.0, "imagenet", 1, 200, 1e6))
    m = RateModel(jobs, MODEL, COLOC, ClusterSpec(), SpbFactors())
    r = m.rates({0: (0,), 1: (0,)}, {}, Sharing.CONCURRENT)
    fa = COLOC.factor("ResNet-18 (batch size 128)", "ResNet-50 (batch size 64)")
    assert r[0].work == pytest.approx(MODEL.solo_rate("cifar10", (1,), 128) * fa)


def test_spb_hosts_pay_the_penalty_and_lend_slack() -> None:
    jobs = (Job("h", 0.0, "cifar10", 2, 256, 1e6, spb=True), Job("g", 0.0, "ncf", 1, 256, 1e6))
    f = SpbFactors(shallow_compute=0.5, penalty=0.25)
    m = RateModel(jobs, MODEL, COLOC, ClusterSpec(), f, overhead=0.0)
    r = m.rates({0: (0, 1), 1: (1,)}, {0: frozenset({1})}, Sharing.INTERLEAVE)
    alone = MODEL.solo_rate("cifar10", (2,), 256)
    assert r[0].work == pytest.approx(alone / 1.25)
    e = m.estimate(0, (0, 1), frozenset({1}))
    assert e.shallow_share == pytest.approx(0.5 * e.compute_share)
    # without the penalty the host is as fast as alone
    m2 = RateModel(jobs, MODEL, COLOC, ClusterSpec(), f, overhead=0.0, penalty=False)
    assert m2.rates({0: (0, 1), 1: (1,)}, {0: frozenset({1})}, Sharing.INTERLEAVE)[
        0
    ].work == pytest.approx(alone)


def test_epochs_to_and_the_penalty() -> None:
    assert epochs_to(0.5, [0.2, 0.4, 0.6]) == pytest.approx(2.5)
    assert epochs_to(0.1, [0.2, 0.4]) == 1.0
    assert epochs_to(0.9, [0.2, 0.4]) == float("inf")
    assert penalty_from_histories([0.2, 0.4, 0.6], [0.1, 0.3, 0.5, 0.6]) == pytest.approx(
        epochs_to(0.6, [0.1, 0.3, 0.5, 0.6]) / 3 - 1
    )
    assert penalty_from_histories([0.2, 0.4], [0.3, 0.5]) == 0.0  # SPB no later
    with pytest.raises(ValueError, match="curves"):
        penalty_from_histories([], [0.1])


def test_default_penalty_is_the_measured_one() -> None:
    data = json.loads(
        (ROOT / "benchmarks/spb/quality/results/cifar10_resnet20_w8.json").read_text()
    )
    curves: dict[str, list[list[float]]] = {}
    for r in data["runs"]:
        curves.setdefault(r["plan"], []).append([h["test_acc"] for h in r["history"]])
    pens = [
        penalty_from_histories(f, s) for f, s in zip(curves["full"], curves["static"], strict=True)
    ]
    assert SpbFactors().penalty == pytest.approx(sum(pens) / len(pens), abs=0.005)


def test_shallow_compute_from_a_profile(tmp_path: Path) -> None:
    prof = ROOT / "benchmarks/jigsaw/spb_inputs/resnet20_profile.json"
    got = shallow_compute_from_profile(prof, 0.5)
    assert got == pytest.approx(SpbFactors().shallow_compute, abs=5e-4)
    bad = tmp_path / "p.json"
    bad.write_text("{}")
    with pytest.raises(ConfigError, match=r"spb\.profile"):
        shallow_compute_from_profile(bad)
    with pytest.raises(ConfigError, match=r"spb\.profile"):
        shallow_compute_from_profile(tmp_path / "missing.json")
    bad.write_text('{"step_ms": [1, "nan"]}')
    with pytest.raises(ConfigError, match="positive"):
        shallow_compute_from_profile(bad)


def test_shallow_count_keeps_a_deep_worker() -> None:
    f = SpbFactors(shallow_fraction=1.0)
    assert f.shallow_count(4) == 3 and f.shallow_count(1) == 0
    assert SpbFactors(shallow_fraction=0.5).shallow_count(5) == 2


def test_jobs_crossing_a_busy_nic_slow_each_others_sync() -> None:
    jobs = (Job("a", 0.0, "bert", 2, 24, 1e6), Job("b", 0.0, "bert", 2, 24, 1e6))
    cluster = ClusterSpec(nodes=2, gpus_per_node=2, nic_gbps=1.0)
    alloc = {0: (0, 2), 1: (1, 3)}  # both span nodes 0 and 1
    free = RateModel(jobs, MODEL, COLOC, cluster, SpbFactors(), nic_contention=False)
    busy = RateModel(jobs, MODEL, COLOC, cluster, SpbFactors())
    r0 = free.rates(alloc, {}, Sharing.NONE)[0]
    r1 = busy.rates(alloc, {}, Sharing.NONE)[0]
    # each node's NIC carries half of each job's traffic: demand over capacity
    cap = 1e9 / 8
    f = 2 * (r0.network_bytes / 2) / cap
    assert f > 1
    it = MODEL.iteration("bert", (1, 1), 24)
    want = it.total_s / (it.total_s + it.sync_s * (f - 1))
    assert r1.work == pytest.approx(r0.work * want)
    # alone, the job asks half as much of each NIC
    solo = busy.rates({0: (0, 2)}, {}, Sharing.NONE)[0]
    half = max(f / 2, 1.0)
    assert solo.work == pytest.approx(r0.work * it.total_s / (it.total_s + it.sync_s * (half - 1)))
