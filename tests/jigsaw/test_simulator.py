"""The event loop: conservation, capacity, ordering, determinism, and FIFO / Tiresias against
a slow, obviously correct reference simulator on random small traces."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jigsaw_reference import reference

from phloem.jigsaw.apps import load_colocation, load_throughput
from phloem.jigsaw.cluster import ClusterSpec
from phloem.jigsaw.jobs import Job, Trace
from phloem.jigsaw.policies.base import Allocation, ClusterState, SchedulingPolicy
from phloem.jigsaw.rates import RateModel
from phloem.jigsaw.registries import POLICIES
from phloem.jigsaw.simulator import AllocationError, SimOptions, simulate
from phloem.jigsaw.spbmodel import SpbFactors

MODEL = load_throughput()
COLOC = load_colocation()
APPS = ("cifar10", "ncf", "bert", "deepspeech2", "yolov3", "imagenet")


def random_trace(seed: int, n: int, *, max_gpus: int = 8, spb: float = 0.0) -> Trace:
    """``n`` jobs over two hours, each 5 minutes to 3 hours long alone."""
    rng = np.random.default_rng(seed)
    jobs = []
    for i in range(n):
        app = APPS[int(rng.integers(len(APPS)))]
        g = int(rng.choice([x for x in (1, 2, 4, 8) if x <= max_gpus]))
        b = MODEL.default_batch(app, g)
        place = (4,) * (g // 4) + ((g % 4,) if g % 4 else ())
        seconds = float(rng.uniform(300, 3 * 3600))
        work = seconds * MODEL.solo_rate(app, place, b)
        t = 0.0 if i == 0 else float(rng.uniform(0, 7200))
        jobs.append(Job(f"j{i}", t, app, g, b, work, bool(rng.random() < spb)))
    return Trace(tuple(jobs))


def run(trace: Trace, policy: str, cluster: ClusterSpec | None = None, **opts: object):  # type: ignore[no-untyped-def]
    cluster = cluster or ClusterSpec(nodes=2, gpus_per_node=4)
    rates = RateModel(trace.jobs, MODEL, COLOC, cluster, SpbFactors())
    return simulate(trace, cluster, POLICIES.get(policy)(), rates, SimOptions(**opts))  # type: ignore[arg-type]


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 14))
@pytest.mark.parametrize(("policy", "ref"), [("fifo", "fifo"), ("tiresias", "tiresias")])
def test_matches_the_reference_simulator(policy: str, ref: str, seed: int, n: int) -> None:
    trace = random_trace(seed, n)
    # a low Tiresias threshold, so that demotions and preemptions happen in two hours
    params = {"thresholds_gpu_s": (1800.0,)} if policy == "tiresias" else {}
    cluster = ClusterSpec(nodes=2, gpus_per_node=4)
    rates = RateModel(trace.jobs, MODEL, COLOC, cluster, SpbFactors())
    pol = POLICIES.get(policy)(POLICIES.get(policy).Params(**params))
    got = simulate(trace, cluster, pol, rates, SimOptions(round_s=60, restart_s=30)).finish_s
    want = reference(trace.jobs, MODEL, nodes=2, per_node=4, policy=ref, round_s=60,
                     restart_s=30, threshold_gpu_s=1800.0)  # fmt: skip
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-6)


def test_strict_fifo_and_backfill_against_the_reference() -> None:
    trace = random_trace(7, 12)
    cluster = ClusterSpec(nodes=2, gpus_per_node=4)
    for backfill, ref in ((False, "fifo"), (True, "fifo-backfill")):
        pol = POLICIES.get("fifo")(POLICIES.get("fifo").Params(backfill=backfill))
        rates = RateModel(trace.jobs, MODEL, COLOC, cluster, SpbFactors())
        got = simulate(trace, cluster, pol, rates, SimOptions()).finish_s
        want = reference(trace.jobs, MODEL, nodes=2, per_node=4, policy=ref, round_s=60,
                         restart_s=30)  # fmt: skip
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-6)


@pytest.mark.parametrize("policy", ["fifo", "tiresias", "gavel", "gandiva", "muri", "jigsaw"])
@pytest.mark.parametrize("round_s", [0.0, 60.0])
def test_conservation_and_capacity(policy: str, round_s: float) -> None:
    trace = random_trace(3, 25, spb=0.5)
    res = run(trace, policy, round_s=round_s)
    arrival = np.array([j.arrival_s for j in trace.jobs])
    assert not np.isnan(res.finish_s).any()  # every job finished
    assert (res.start_s >= arrival - 1e-9).all()  # nobody starts before it arrives
    assert (res.finish_s >= res.start_s + 30.0 - 1e-9).all()  # after its first restart
    # GPU-seconds held by jobs = the segments' GPU-seconds
    seg = sum((s.end_s - s.start_s) * len(s.gpus) for s in res.segments)
    assert seg == pytest.approx(res.gpu_s.sum(), rel=1e-9)
    # no GPU holds more jobs than the policy may put there, at any time
    cap = 1 if POLICIES.get(policy).sharing.value == "none" else 2
    events = sorted({s.start_s for s in res.segments} | {s.end_s for s in res.segments})
    for t0, t1 in itertools.pairwise(events):
        mid = (t0 + t1) / 2
        held: dict[int, int] = {}
        for s in res.segments:
            if s.start_s <= mid < s.end_s:
                for g in s.gpus:
                    held[g] = held.get(g, 0) + 1
        assert max(held.values(), default=0) <= cap
        assert all(0 <= g < 8 for g in held)
    if cap == 1:  # allocated GPU-seconds = the jobs' GPU-seconds when nobody shares
        assert res.busy_gpu_s == pytest.approx(res.gpu_s.sum(), rel=1e-9)
    # every job's work done, and no faster than alone on its best placement
    for i, j in enumerate(trace.jobs):
        assert res.work_done[i] == pytest.approx(j.work)


def test_completions_then_arrivals_then_the_policy_at_one_instant() -> None:
    # job 0 finishes exactly when job 1 arrives: 1 must start at that instant (GPUs free)
    rate = MODEL.solo_rate("cifar10", (4, 4), 1024)
    jobs = (Job("a", 0.0, "cifar10", 8, 1024, rate * 570.0),
            Job("b", 600.0, "cifar10", 8, 1024, rate * 100.0))  # fmt: skip
    res = run(Trace(jobs), "fifo", round_s=0.0, restart_s=30.0)
    assert res.finish_s[0] == pytest.approx(600.0)
    assert res.start_s[1] == pytest.approx(600.0)
    assert res.finish_s[1] == pytest.approx(730.0)


def test_round_grid_delays_arrivals_and_frees_gpus_at_the_next_round() -> None:
    rate = MODEL.solo_rate("cifar10", (4, 4), 1024)
    jobs = (Job("a", 0.0, "cifar10", 8, 1024, rate * 570.0),
            Job("b", 10.0, "cifar10", 8, 1024, rate * 100.0))  # fmt: skip
    res = run(Trace(jobs), "fifo", round_s=60.0, restart_s=30.0)
    assert res.finish_s[0] == pytest.approx(600.0)
    assert res.start_s[1] == pytest.approx(600.0)  # 600 is a round boundary
    jobs2 = (jobs[0], Job("b", 10.0, "cifar10", 8, 1024, rate * 100.0))
    res2 = run(Trace((Job("a", 0.0, "cifar10", 8, 1024, rate * 580.0), jobs2[1])), "fifo")
    assert res2.start_s[1] == pytest.approx(660.0)  # a finished at 610: the next round


def test_deterministic() -> None:
    trace = random_trace(11, 30, spb=0.5)
    a, b = run(trace, "jigsaw"), run(trace, "jigsaw")
    np.testing.assert_array_equal(a.finish_s, b.finish_s)
    np.testing.assert_array_equal(a.useful_gpu_s, b.useful_gpu_s)
    assert a.timeline == b.timeline


def test_jobs_bigger_than_the_cluster_are_refused_and_counted() -> None:
    trace = random_trace(5, 6, max_gpus=4)
    big = Job("huge", 30.0, "cifar10", 64, 8192, 1e6)
    res = run(Trace((*trace.jobs, big)), "tiresias")
    assert res.refused == {"more GPUs than the cluster": 1}
    k = [j.name for j in res.trace.jobs].index("huge")
    assert math.isnan(res.finish_s[k])
    assert np.isnan(res.finish_s).sum() == 1


class _Rogue(SchedulingPolicy):
    name = "rogue"
    description = "gives every job the same GPUs"

    def __init__(self, how: str) -> None:
        super().__init__()
        self.how = how

    def allocate(self, state: ClusterState) -> Allocation:
        if self.how == "overlap":
            return Allocation({s.index: tuple(range(s.job.num_gpus)) for s in state.jobs})
        if self.how == "size":
            return Allocation({s.index: (0,) for s in state.jobs[:1]})
        return Allocation({s.index: (99,) * s.job.num_gpus for s in state.jobs[:1]})


@pytest.mark.parametrize("how", ["overlap", "size", "outside"])
def test_a_policy_that_breaks_the_cluster_is_caught(how: str) -> None:
    jobs = (Job("a", 0.0, "cifar10", 2, 256, 1e6), Job("b", 0.0, "ncf", 2, 512, 1e6))
    cluster = ClusterSpec(nodes=1, gpus_per_node=4)
    rates = RateModel(jobs, MODEL, COLOC, cluster, SpbFactors())
    with pytest.raises(AllocationError):
        simulate(Trace(jobs), cluster, _Rogue(how), rates)


def test_a_policy_that_leaves_jobs_waiting_forever_ends_the_run() -> None:
    class Idle(SchedulingPolicy):
        name = "idle"
        description = "never schedules"

        def allocate(self, state: ClusterState) -> Allocation:
            return Allocation({})

    jobs = (Job("a", 0.0, "cifar10", 1, 128, 1e6),)
    cluster = ClusterSpec(nodes=1, gpus_per_node=4)
    res = simulate(
        Trace(jobs), cluster, Idle(), RateModel(jobs, MODEL, COLOC, cluster, SpbFactors())
    )
    assert math.isnan(res.finish_s[0]) and res.decisions == 1


def test_max_time_stops_with_unfinished_jobs() -> None:
    trace = random_trace(2, 10)
    res = run(trace, "fifo", max_time_s=1800.0)
    assert res.end_s <= 1800.0
    assert np.isnan(res.finish_s).any()
    assert (res.work_done <= np.array([j.work for j in trace.jobs]) + 1e-6).all()


def test_utilisation_stays_within_one_when_jobs_are_left_unfinished() -> None:
    from phloem.jigsaw.metrics import metrics

    trace = random_trace(4, 12)
    cluster = ClusterSpec(nodes=2, gpus_per_node=4)
    rates = RateModel(trace.jobs, MODEL, COLOC, cluster, SpbFactors())
    res = simulate(trace, cluster, POLICIES.get("fifo")(), rates, SimOptions(max_time_s=3000.0))
    m = metrics(res, rates)
    assert m.finished < m.jobs
    assert 0 < m.utilisation <= 1.0 + 1e-9
