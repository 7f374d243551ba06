"""How fast each job progresses under an allocation.

Alone on its GPUs a job runs as the throughput tables say (:mod:`.apps`). On a GPU it shares:

- **interleave** (Muri, Jigsaw): the jobs take turns by phase; a job's compute occupies a GPU
  for ``u = compute_s / iteration_s`` of its time alone, its synchronisation the link for
  ``v = sync_s / iteration_s``. Under Muri the GPU's jobs all run at
  ``1 / max(1, sum u, sum v)`` of their speed: complementary jobs share for free, two
  compute-bound ones halve. Under Jigsaw the host (the job whose shallow worker lends the GPU)
  goes first and keeps its speed; a guest runs at ``min(1, (1 - u_host) / u_guest, (1 -
  v_host) / v_guest)`` of its speed, in the host's idle time. Both lose a switching
  ``overhead``. A shallow SPB worker's ``u`` is its ``shallow_compute`` share of the full one.
- **concurrent** (Gandiva's packing): each job runs at Gavel's measured pair factor for its
  type next to the other's.

A data-parallel job is as fast as its slowest worker: its factor is the smallest over its GPUs.
Jobs spanning nodes share the nodes' NICs: where the inter-node bytes per second asked of a
node exceed its ``nic_gbps``, the synchronisation of the jobs crossing it stretches by the ratio.
An SPB job's rate is divided by ``1 + penalty`` (extra epochs to the same accuracy).

Useful GPU-seconds are the compute seconds that advance training (the penalty's share
excluded): ``sum over the job's GPUs of u x factor``, per second.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from phloem.jigsaw.apps import Colocation, IterTime, ThroughputModel, placement_of
from phloem.jigsaw.cluster import ClusterSpec
from phloem.jigsaw.jobs import Job
from phloem.jigsaw.policies.base import Sharing
from phloem.jigsaw.spbmodel import SpbFactors

__all__ = ["Estimate", "JobRate", "RateModel"]


@dataclass(frozen=True)
class Estimate:
    """A job alone on some GPUs.

    Attributes
    ----------
    iteration
        Its iteration (compute, sync, samples).
    rate
        Work per second (samples at the initial batch size; SPB penalty applied).
    compute_share
        ``u``: fraction of a full worker's GPU time spent computing.
    shallow_share
        ``u`` of a shallow worker (equal to ``compute_share`` without SPB).
    sync_share
        ``v``: fraction of the time spent synchronising.
    """

    iteration: IterTime
    rate: float
    compute_share: float
    shallow_share: float
    sync_share: float


@dataclass(frozen=True)
class JobRate:
    """A running job's progress per second: ``work`` (samples at the initial batch size),
    ``useful_gpu`` (useful GPU-seconds), ``network_bytes`` (inter-node), ``samples``."""

    work: float
    useful_gpu: float
    network_bytes: float
    samples: float


class RateModel:
    """Rates of jobs under an allocation (see the module docstring).

    Parameters
    ----------
    jobs
        The trace's jobs (indices are allocation keys).
    model, colocation, cluster
        Throughput tables, Gavel's pair factors, the cluster.
    spb
        SPB's factors.
    penalty
        Whether SPB's statistical-efficiency penalty applies.
    overhead
        Switching cost of interleaving, a fraction of speed.
    nic_contention
        Whether jobs sharing a node's NIC beyond its capacity slow each other's
        synchronisation (:meth:`_share_nics`).
    """

    def __init__(
        self,
        jobs: tuple[Job, ...],
        model: ThroughputModel,
        colocation: Colocation | None,
        cluster: ClusterSpec,
        spb: SpbFactors,
        *,
        penalty: bool = True,
        overhead: float = 0.05,
        nic_contention: bool = True,
    ) -> None:
        self.jobs = jobs
        self.model = model
        self.colocation = colocation
        self.cluster = cluster
        self.spb = spb
        self.penalty = spb.penalty if penalty else 0.0
        self.overhead = overhead
        self.nic_contention = nic_contention
        self._estimates: dict[tuple[int, tuple[int, ...], frozenset[int]], Estimate] = {}
        self._alone: dict[tuple[int, tuple[int, ...], frozenset[int]], JobRate] = {}
        self._unit: dict[str, float] = {}

    def estimate(
        self, index: int, gpus: tuple[int, ...], shallow: frozenset[int] = frozenset()
    ) -> Estimate:
        key = (index, gpus, shallow)
        e = self._estimates.get(key)
        if e is None:
            if len(self._estimates) > 200_000:
                self._estimates.clear()
            e = self._estimates[key] = self._estimate(index, gpus, shallow)
        return e

    def _estimate(self, index: int, gpus: tuple[int, ...], shallow: frozenset[int]) -> Estimate:
        job = self.jobs[index]
        placement = placement_of(gpus, self.cluster.gpus_per_node)
        it = self.model.iteration(job.app, placement, job.batch_size)
        eff = self.model.apps[job.app].efficiency(job.batch_size)
        rate = it.samples / it.total_s * eff
        u = it.compute_s / it.total_s * job.gpu_fraction
        us = u
        if shallow:
            rate /= 1.0 + self.penalty
            us = u * self.spb.shallow_compute
        return Estimate(it, rate, u, us, it.sync_s / it.total_s if len(placement) > 1 else 0.0)

    def pair_factors(self, a: int, b: int) -> tuple[float, float] | None:
        if self.colocation is None:
            return None
        ta = self.model.apps[self.jobs[a].app].gavel_type
        tb = self.model.apps[self.jobs[b].app].gavel_type
        fa, fb = self.colocation.factor(ta, tb), self.colocation.factor(tb, ta)
        return (fa, fb) if fa > 0 and fb > 0 else None

    def memory_gb(self, index: int) -> float:
        return self.model.apps[self.jobs[index].app].memory_gb

    def shallow_count(self, index: int) -> int:
        job = self.jobs[index]
        return self.spb.shallow_count(job.num_gpus) if job.spb else 0

    def unit_rate(self, index: int) -> float:
        app = self.jobs[index].app
        r = self._unit.get(app)
        if r is None:
            r = self._unit[app] = self.model.solo_rate(app, (1,), self.model.default_batch(app, 1))
        return r

    def interleave_speeds(
        self, parts: Sequence[tuple[Estimate, bool]], *, host_first: bool = False
    ) -> list[float]:
        if len(parts) < 2:
            return [1.0] * len(parts)
        us = [e.shallow_share if sh else e.compute_share for e, sh in parts]
        vs = [e.sync_share for e, _ in parts]
        keep = 1.0 - self.overhead
        if not host_first:
            return [keep / max(1.0, sum(us), sum(vs))] * len(parts)
        out = []
        left_u, left_v = 1.0, 1.0
        for u, v in zip(us, vs, strict=True):
            s = min(1.0, left_u / u if u > 0 else 1.0, left_v / v if v > 0 else 1.0)
            s = max(s, 0.0)
            out.append(keep * s)
            left_u -= u * s
            left_v -= v * s
        return out

    def rates(
        self,
        gpus: Mapping[int, tuple[int, ...]],
        shallow: Mapping[int, frozenset[int]],
        sharing: Sharing,
    ) -> dict[int, JobRate]:
        """Each running job's rates under the allocation ``gpus`` / ``shallow``."""
        on: dict[int, list[int]] = {}
        if sharing is not Sharing.NONE:
            for j, g in gpus.items():
                for x in g:
                    on.setdefault(x, []).append(j)
        out: dict[int, JobRate] = {}
        shared: list[int] = []
        nothing: frozenset[int] = frozenset()
        for j, g in gpus.items():
            if on and any(len(on[x]) > 1 for x in g):
                shared.append(j)
                continue
            key = (j, g, shallow.get(j, nothing))
            r = self._alone.get(key)
            if r is None:
                if len(self._alone) > 200_000:
                    self._alone.clear()
                r = self._alone[key] = self._rates({j: g}, shallow, sharing, {x: [j] for x in g})[j]
            out[j] = r
        if shared:
            out.update(self._rates({j: gpus[j] for j in shared}, shallow, sharing, on))
        if self.nic_contention:
            self._share_nics(gpus, shallow, out)
        return out

    def _share_nics(
        self,
        gpus: Mapping[int, tuple[int, ...]],
        shallow: Mapping[int, frozenset[int]],
        out: dict[int, JobRate],
    ) -> None:
        """Slow the synchronisation of jobs whose nodes' NICs are asked for more than they
        carry: each node's demand is the inter-node bytes per second of the jobs spanning it
        (a ring between nodes: ``1 / nodes`` of a job's traffic per node); a job's sync time
        stretches by the worst ratio of demand to capacity over its nodes."""
        cap = self.cluster.nic_gbps * 1e9 / 8.0
        spans: dict[int, set[int]] = {}
        demand: dict[int, float] = {}
        for j, g in gpus.items():
            if out[j].network_bytes <= 0:
                continue
            nodes = {self.cluster.node_of(x) for x in g}
            spans[j] = nodes
            for n in nodes:
                demand[n] = demand.get(n, 0.0) + out[j].network_bytes / len(nodes)
        if not demand or max(demand.values()) <= cap:
            return
        for j, nodes in spans.items():
            f = max(demand[n] for n in nodes) / cap
            if f <= 1.0:
                continue
            it = self.estimate(j, gpus[j], shallow.get(j, frozenset())).iteration
            now = it.total_s  # this job's iteration before contention (sharing aside)
            scale = now / (now + it.sync_s * (f - 1.0))
            r = out[j]
            out[j] = JobRate(r.work * scale, r.useful_gpu * scale, r.network_bytes * scale,
                             r.samples * scale)  # fmt: skip

    def _rates(
        self,
        gpus: Mapping[int, tuple[int, ...]],
        shallow: Mapping[int, frozenset[int]],
        sharing: Sharing,
        on: Mapping[int, list[int]],
    ) -> dict[int, JobRate]:
        nothing: frozenset[int] = frozenset()
        holders = {k for g in gpus.values() for x in g for k in on[x]}
        # every job on a shared GPU is itself in ``gpus`` (it shares too)
        est = {k: self.estimate(k, gpus[k], shallow.get(k, nothing)) for k in holders}

        def share(j: int, gpu: int) -> float:
            e = est[j]
            return e.shallow_share if gpu in shallow.get(j, ()) else e.compute_share

        out: dict[int, JobRate] = {}
        for j, g in gpus.items():
            e, job = est[j], self.jobs[j]
            factor = 1.0
            for x in g:
                others = [k for k in on[x] if k != j]
                if not others:
                    continue
                if sharing is Sharing.CONCURRENT and self.colocation is not None:
                    ty = self.model.apps[job.app].gavel_type
                    f = 1.0
                    for k in others:
                        f *= self.colocation.factor(
                            ty, self.model.apps[self.jobs[k].app].gavel_type
                        )
                else:
                    # a host lending this GPU (a shallow worker) goes first; guests fill in
                    ks = sorted(on[x], key=lambda k: x not in shallow.get(k, ()))
                    host_first = x in shallow.get(ks[0], ())
                    speeds = self.interleave_speeds(
                        [(est[k], x in shallow.get(k, ())) for k in ks], host_first=host_first
                    )
                    f = speeds[ks.index(j)]
                factor = min(factor, f)
            u_sum = sum(share(j, x) for x in g)
            useful = u_sum * factor / ((1.0 + self.penalty) if shallow.get(j) else 1.0)
            nodes = len({self.cluster.node_of(x) for x in g})
            iters = factor / e.iteration.total_s
            net = 2.0 * (nodes - 1) * self.model.apps[job.app].model_bytes * iters
            out[j] = JobRate(e.rate * factor, useful, net, e.iteration.samples * iters)
        return out
