"""Each policy against hand-worked small cases, through the same contract the simulator uses."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from phloem.core.errors import ConfigError
from phloem.jigsaw.apps import IterTime, load_colocation, load_throughput
from phloem.jigsaw.cluster import ClusterSpec
from phloem.jigsaw.jobs import Job, Trace
from phloem.jigsaw.policies.base import Allocation, ClusterState, JobStatus
from phloem.jigsaw.policies.gavel import max_min_shares
from phloem.jigsaw.rates import Estimate, RateModel
from phloem.jigsaw.registries import POLICIES
from phloem.jigsaw.simulator import SimOptions, simulate
from phloem.jigsaw.spbmodel import SpbFactors

MODEL = load_throughput()
COLOC = load_colocation()


class FakeOracle:
    """Hand-set compute and sync shares per job."""

    def __init__(self, shares: dict[int, tuple[float, float]], spb: dict[int, int] | None = None,
                 memory: float = 4.0, overhead: float = 0.0) -> None:  # fmt: skip
        self.shares, self.spb, self.memory, self.overhead = shares, spb or {}, memory, overhead

    def estimate(
        self, index: int, gpus: tuple[int, ...], shallow: frozenset[int] = frozenset()
    ) -> Estimate:
        u, v = self.shares[index]
        return Estimate(IterTime(u, v, 1), 1.0, u, u * 0.5, v)

    def pair_factors(self, a: int, b: int) -> tuple[float, float] | None:
        return (0.7, 0.6)

    def memory_gb(self, index: int) -> float:
        return self.memory

    def shallow_count(self, index: int) -> int:
        return self.spb.get(index, 0)

    def unit_rate(self, index: int) -> float:
        return 1.0

    def interleave_speeds(
        self, parts: Sequence[tuple[Estimate, bool]], *, host_first: bool = False
    ) -> list[float]:
        rates = RateModel((), MODEL, None, ClusterSpec(), SpbFactors(), overhead=self.overhead)
        return rates.interleave_speeds(parts, host_first=host_first)


def status(i: int, gpus: int, *, held: tuple[int, ...] = (), service: float = 0.0,
           arrival: float | None = None, spb: bool = False) -> JobStatus:  # fmt: skip
    job = Job(f"j{i}", float(i) if arrival is None else arrival, "cifar10", gpus, 128 * gpus,
              1e6, spb)  # fmt: skip
    return JobStatus(i, job, service / max(gpus, 1), service, held)


def state(jobs: list[JobStatus], gpus: int = 4, per_node: int = 4, now: float = 100.0,
          oracle: object | None = None) -> ClusterState:  # fmt: skip
    cluster = ClusterSpec(nodes=gpus // per_node, gpus_per_node=per_node, gpu_memory_gb=16.0)
    return ClusterState(
        now, cluster, jobs, oracle or FakeOracle({s.index: (0.9, 0.1) for s in jobs})
    )  # type: ignore[arg-type]


def policy(name: str, **params: object):  # type: ignore[no-untyped-def]
    cls = POLICIES.get(name)
    return cls(cls.Params(**params))


# FIFO ------------------------------------------------------------------------------------------


def test_strict_fifo_blocks_behind_the_head_and_backfill_does_not() -> None:
    jobs = [status(0, 3, held=(0, 1, 2)), status(1, 2), status(2, 1)]
    a = policy("fifo").allocate(state(jobs))
    assert a.gpus == {0: (0, 1, 2)}  # 2 waits for 2 GPUs; 3 may not pass it
    b = policy("fifo", backfill=True).allocate(state(jobs))
    assert b.gpus == {0: (0, 1, 2), 2: (3,)}


def test_fifo_never_preempts_and_places_on_the_fullest_free_node() -> None:
    jobs = [status(0, 1, held=(5,)), status(1, 4), status(2, 2)]
    a = policy("fifo").allocate(state(jobs, gpus=8))
    assert a.gpus[0] == (5,)
    assert a.gpus[1] == (0, 1, 2, 3)  # node 0 has 4 free, node 1 has 3
    assert a.gpus[2] == (4, 6)


# Tiresias ---------------------------------------------------------------------------------------


def test_tiresias_demotes_past_the_threshold_and_a_newcomer_preempts() -> None:
    t = policy("tiresias", thresholds_gpu_s=(100.0,))
    old = status(0, 4, held=(0, 1, 2, 3), service=50.0, arrival=0.0)
    a = t.allocate(state([old], now=10.0))
    assert a.gpus == {0: (0, 1, 2, 3)}
    assert a.review_at_s == pytest.approx(10.0 + 50.0 / 4)  # when it crosses 100 GPU-s
    old = status(0, 4, held=(0, 1, 2, 3), service=100.0, arrival=0.0)
    new = status(1, 2, arrival=20.0)
    b = t.allocate(state([old, new], now=22.5))
    assert b.gpus == {1: (0, 1)}  # the demoted job is preempted for the new one


def test_tiresias_orders_by_queue_then_entry_and_skips_jobs_that_do_not_fit() -> None:
    t = policy("tiresias", thresholds_gpu_s=(100.0,))
    jobs = [status(0, 3, service=500.0), status(1, 4, arrival=1.0), status(2, 1, arrival=2.0)]
    a = t.allocate(state(jobs))
    # queue 0: job 1 (4 GPUs) then job 2 (1); job 1 fits, job 2 does not, job 0 (queue 1) neither
    assert a.gpus == {1: (0, 1, 2, 3)}


@pytest.mark.parametrize(("factor", "queue"), [(2.0, 0), (0.0, 1)])
def test_tiresias_starvation_promotes_a_long_waiting_job(factor: float, queue: int) -> None:
    t = policy("tiresias", thresholds_gpu_s=(100.0,), starvation_factor=factor)
    t.allocate(state([status(0, 4, arrival=0.0)], now=40.0))  # starts at 40
    running = status(0, 4, held=(0, 1, 2, 3), service=200.0, arrival=0.0)
    a = t.allocate(state([running, status(1, 4, arrival=45.0)], now=50.0))
    assert a.gpus == {1: (0, 1, 2, 3)}  # demoted, preempted after a 10 s run
    waiting = status(0, 4, service=200.0, arrival=0.0)
    t.allocate(state([waiting, status(1, 4, held=(0, 1, 2, 3), arrival=45.0)], now=75.0))
    assert t._jobs[0].queue == queue  # waited 25 s >= 2 x its 10 s run: back to queue 0


def test_tiresias_rejects_unsorted_thresholds() -> None:
    with pytest.raises(ConfigError, match="thresholds_gpu_s"):
        policy("tiresias", thresholds_gpu_s=(10.0, 5.0))


# Gavel ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sizes", "gpus", "want"),
    [
        ((1, 1), 1, [0.5, 0.5]),
        ((2, 1), 2, [2 / 3, 2 / 3]),
        ((4, 1), 4, [0.8, 0.8]),
        ((1, 1, 1), 4, [1.0, 1.0, 1.0]),
        ((4, 4, 1), 5, [5 / 9] * 3),
    ],
)
def test_gavel_max_min_shares(sizes: tuple[int, ...], gpus: int, want: list[float]) -> None:
    np.testing.assert_allclose(max_min_shares(sizes, gpus), want, atol=1e-6)


def test_gavel_lp_equals_the_closed_form_on_one_gpu_type() -> None:
    # on one resource max-min fairness is water-filling: X = min(1, G / sum of sizes)
    rng = np.random.default_rng(0)
    for _ in range(30):
        sizes = tuple(int(x) for x in rng.choice([1, 2, 4, 8], size=int(rng.integers(1, 12))))
        gpus = int(rng.integers(8, 40))
        x = max_min_shares(sizes, gpus)
        np.testing.assert_allclose(x, min(1.0, gpus / sum(sizes)), atol=1e-6)
        assert float(np.dot(x, sizes)) <= gpus + 1e-6


def test_gavel_rounds_favour_jobs_behind_their_share() -> None:
    g = policy("gavel", round_s=360.0)
    ahead = status(0, 4, held=(0, 1, 2, 3), arrival=0.0)
    ahead = JobStatus(0, ahead.job, 90.0, 360.0, ahead.gpus)  # ran 90 of 100 s
    behind = JobStatus(1, status(1, 4, arrival=0.0).job, 10.0, 40.0, ())  # ran 10 of 100 s
    a = g.allocate(state([ahead, behind]))
    assert a.gpus == {1: (0, 1, 2, 3)}
    assert a.review_at_s == pytest.approx(100.0 + 360.0)


# Gandiva and Muri -------------------------------------------------------------------------------


def test_gandiva_packs_same_size_jobs_when_the_pair_pays() -> None:
    jobs = [status(0, 4, held=(0, 1, 2, 3)), status(1, 4), status(2, 2)]
    a = policy("gandiva", margin=0.1).allocate(state(jobs))  # pair factors 0.7 + 0.6 = 1.3
    assert a.gpus == {0: (0, 1, 2, 3), 1: (0, 1, 2, 3)}  # job 2 has no same-size host
    b = policy("gandiva", margin=0.4).allocate(state(jobs))
    assert b.gpus == {0: (0, 1, 2, 3)}


def test_gandiva_unpacks_when_gpus_free_up() -> None:
    jobs = [status(0, 4, held=(0, 1, 2, 3)), status(1, 4, held=(0, 1, 2, 3))]
    a = policy("gandiva").allocate(state(jobs, gpus=8))
    assert a.gpus == {0: (0, 1, 2, 3), 1: (4, 5, 6, 7)}


def test_gandiva_respects_memory() -> None:
    jobs = [status(0, 4, held=(0, 1, 2, 3)), status(1, 4)]
    oracle = FakeOracle({0: (0.9, 0.1), 1: (0.9, 0.1)}, memory=9.0)
    assert policy("gandiva").allocate(state(jobs, oracle=oracle)).gpus == {0: (0, 1, 2, 3)}


def test_muri_interleaves_complementary_jobs_only() -> None:
    host = status(0, 4, held=(0, 1, 2, 3))
    # compute-light guest: 0.5 + 0.3 compute, 0.5 + 0.6 sync -> speed 1/1.1 >= 0.75
    oracle = FakeOracle({0: (0.5, 0.5), 1: (0.3, 0.6)})
    a = policy("muri").allocate(state([host, status(1, 4)], oracle=oracle))
    assert a.gpus == {0: (0, 1, 2, 3), 1: (0, 1, 2, 3)}
    # two compute-bound jobs would both halve: not paired
    oracle = FakeOracle({0: (0.9, 0.1), 1: (0.9, 0.1)})
    assert policy("muri").allocate(state([host, status(1, 4)], oracle=oracle)).gpus == {
        0: (0, 1, 2, 3)
    }


# Jigsaw -----------------------------------------------------------------------------------------


def test_jigsaw_lends_shallow_gpus_of_spb_hosts_only() -> None:
    host = status(0, 4, held=(0, 1, 2, 3), spb=True)
    guest = status(1, 2)
    oracle = FakeOracle({0: (0.8, 0.2), 1: (0.5, 0.1)}, spb={0: 2})
    a = policy("jigsaw").allocate(state([host, guest], oracle=oracle))
    assert a.gpus == {0: (0, 1, 2, 3), 1: (2, 3)}  # the host's last two GPUs run shallow
    assert a.shallow == {0: frozenset({2, 3})}
    # the same without SPB: the base policy's answer
    oracle = FakeOracle({0: (0.8, 0.2), 1: (0.5, 0.1)})
    b = policy("jigsaw").allocate(state([host, guest], oracle=oracle))
    assert b.gpus == {0: (0, 1, 2, 3)} and not b.shallow


def test_jigsaw_refuses_a_guest_that_would_crawl() -> None:
    host = status(0, 4, held=(0, 1, 2, 3), spb=True)
    # shallow host uses 0.45 of the GPU; a 0.9-compute guest gets 0.55/0.9 = 0.61 of its speed
    oracle = FakeOracle({0: (0.9, 0.1), 1: (0.9, 0.1)}, spb={0: 2})
    assert (
        1
        in policy("jigsaw", min_guest_speed=0.5)
        .allocate(state([host, status(1, 2)], oracle=oracle))
        .gpus
    )
    assert (
        1
        not in policy("jigsaw", min_guest_speed=0.7)
        .allocate(state([host, status(1, 2)], oracle=oracle))
        .gpus
    )


def test_jigsaw_base_must_not_share_itself() -> None:
    with pytest.raises(ConfigError, match="base"):
        policy("jigsaw", base="muri")
    with pytest.raises(ConfigError, match="base"):
        policy("jigsaw", base="nope")


@pytest.mark.parametrize("base", ["tiresias", "fifo", "gavel"])
def test_jigsaw_without_spb_is_its_base_policy(base: str) -> None:
    rng = np.random.default_rng(0)
    jobs = []
    for i in range(40):
        app = ["cifar10", "ncf", "bert", "yolov3"][i % 4]
        g = int(rng.choice([1, 2, 4, 8]))
        b = MODEL.default_batch(app, g)
        jobs.append(Job(f"j{i}", float(rng.uniform(0, 3600)), app, g, b,
                        float(rng.uniform(600, 7200)) * MODEL.solo_rate(app, (1,), b)))  # fmt: skip
    trace = Trace(tuple(jobs))
    cluster = ClusterSpec(nodes=2, gpus_per_node=4)
    runs = []
    for name, params in ((base, {}), ("jigsaw", {"base": base})):
        rates = RateModel(trace.jobs, MODEL, COLOC, cluster, SpbFactors())
        runs.append(simulate(trace, cluster, policy(name, **params), rates, SimOptions()))
    np.testing.assert_array_equal(runs[0].finish_s, runs[1].finish_s)
    np.testing.assert_array_equal(runs[0].gpu_s, runs[1].gpu_s)
    assert runs[0].timeline == runs[1].timeline
    assert runs[1].spb_s.sum() == 0.0


def test_jigsaw_with_spb_moves_work_into_slack() -> None:
    rng = np.random.default_rng(1)
    jobs = []
    for i in range(60):
        app = ["cifar10", "bert", "deepspeech2", "yolov3"][i % 4]
        g = int(rng.choice([2, 4]))
        b = MODEL.default_batch(app, g)
        jobs.append(Job(f"j{i}", float(rng.uniform(0, 1800)), app, g, b,
                        float(rng.uniform(1800, 7200)) * MODEL.solo_rate(app, (g,), b),
                        spb=True))  # fmt: skip
    trace = Trace(tuple(jobs))
    cluster = ClusterSpec(nodes=2, gpus_per_node=4)
    rates = RateModel(trace.jobs, MODEL, COLOC, cluster, SpbFactors())
    res = simulate(trace, cluster, policy("jigsaw"), rates, SimOptions())
    assert res.spb_s.sum() > 0  # some hosts lent their slack
    lent = [s for s in res.segments if s.shallow]
    assert lent and all(s.shallow <= set(s.gpus) for s in lent)
    assert not np.isnan(res.finish_s).any()


def test_allocation_defaults() -> None:
    a = Allocation({})
    assert a.shallow == {} and a.review_at_s is None
