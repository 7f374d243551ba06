"""The scheduling-policy contract: ``allocate(state) -> allocation``.

The simulator calls a policy at each decision point (an arrival, a completion, the round the
policy asked to be woken at) with a :class:`ClusterState`: the time, the cluster, the active
jobs with what they have received so far, the current allocation and an oracle of throughput
estimates. The policy answers with an :class:`Allocation`: which GPUs each job holds (a job
absent holds none and waits), which of an SPB job's GPUs run shallow, and when to be asked again
without an event. The simulator checks the answer (capacity, memory, sizes) and never knows
which policy it runs; a policy that shares GPUs says how (:class:`Sharing`).
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Protocol

from phloem.core.registry import Configured
from phloem.jigsaw.cluster import ClusterSpec, FreeGpus
from phloem.jigsaw.jobs import Job

if TYPE_CHECKING:
    from phloem.jigsaw.rates import Estimate

__all__ = ["Allocation", "ClusterState", "JobStatus", "Oracle", "SchedulingPolicy", "Sharing"]


class Sharing(enum.Enum):
    """How jobs on one GPU share it: not at all, by interleaving their iterations' phases
    (Muri, Jigsaw), or concurrently (Gandiva's packing; Gavel's measured pair slowdowns)."""

    NONE = "none"
    INTERLEAVE = "interleave"
    CONCURRENT = "concurrent"


@dataclass(frozen=True)
class JobStatus:
    """An active (arrived, unfinished) job as a policy sees it.

    Attributes
    ----------
    index
        The job's index in the trace (its id in allocations).
    job
        What the trace says.
    attained_s
        Seconds it has held GPUs.
    attained_gpu_s
        GPU-seconds it has held (Tiresias's attained service).
    gpus
        The GPUs it holds now (empty: waiting).
    """

    index: int
    job: Job
    attained_s: float
    attained_gpu_s: float
    gpus: tuple[int, ...]


@dataclass(frozen=True)
class Allocation:
    """A policy's answer.

    Attributes
    ----------
    gpus
        Job index -> the GPU ids it holds (exactly ``num_gpus`` of them); others wait.
    shallow
        SPB host index -> its GPUs that backpropagate partially (their slack is lent).
    review_at_s
        Ask again at this time even if nothing happens (``None``: only on events).
    """

    gpus: Mapping[int, tuple[int, ...]]
    shallow: Mapping[int, frozenset[int]] = field(default_factory=dict)
    review_at_s: float | None = None


class Oracle(Protocol):
    """What a profiling scheduler knows about jobs (the simulator's rate model answers)."""

    def estimate(self, index: int, gpus: tuple[int, ...], shallow: frozenset[int]) -> Estimate:
        """Job ``index`` alone on ``gpus`` (``shallow``: its GPUs running partial backprop)."""
        ...

    def pair_factors(self, a: int, b: int) -> tuple[float, float] | None:
        """Measured speeds of jobs ``a`` and ``b`` sharing a GPU concurrently, each over its
        speed alone (``None``: the pair was not measured or does not fit)."""
        ...

    def memory_gb(self, index: int) -> float:
        """GPU memory one worker of job ``index`` needs."""
        ...

    def shallow_count(self, index: int) -> int:
        """How many of job ``index``'s GPUs may run shallow (0: it does not accept SPB)."""
        ...

    def unit_rate(self, index: int) -> float:
        """Job ``index``'s rate alone on one GPU: the unit that makes different jobs' rates
        comparable (work per second in single-GPU-seconds)."""
        ...

    def interleave_speeds(
        self, parts: Sequence[tuple[Estimate, bool]], *, host_first: bool = False
    ) -> list[float]:
        """Speeds (each over alone) of jobs interleaved on one GPU; each part is a job's
        estimate and whether it is a shallow worker there. ``host_first``: the first part's
        phases go first and the others fill its idle time (Jigsaw); else all slow alike
        (Muri)."""
        ...


class ClusterState:
    """What a policy sees at a decision point (read-only by convention).

    Parameters
    ----------
    now_s
        The time.
    cluster
        The cluster.
    jobs
        The active jobs, in arrival order.
    oracle
        Throughput estimates (what a profiling scheduler knows; Gavel ignores it, Gandiva,
        Muri and Jigsaw use it).
    """

    def __init__(
        self, now_s: float, cluster: ClusterSpec, jobs: Sequence[JobStatus], oracle: Oracle
    ) -> None:
        self.now_s = now_s
        self.cluster = cluster
        self.jobs = jobs
        self.oracle = oracle

    def estimate(
        self, index: int, gpus: tuple[int, ...], shallow: frozenset[int] = frozenset()
    ) -> Estimate:
        return self.oracle.estimate(index, gpus, shallow)

    def pair_factors(self, a: int, b: int) -> tuple[float, float] | None:
        return self.oracle.pair_factors(a, b)

    def memory_gb(self, index: int) -> float:
        return self.oracle.memory_gb(index)

    def free(self, used: Mapping[int, tuple[int, ...]] | None = None) -> FreeGpus:
        """The GPUs not in ``used`` (default: none used)."""
        return FreeGpus(self.cluster, (g for gs in (used or {}).values() for g in gs))


class SchedulingPolicy(Configured, ABC):
    """Decides which jobs hold which GPUs (built from its own ``Params``).

    Policies may keep state between calls (queues, received service); :meth:`reset` clears it
    before a run.
    """

    kind: ClassVar[str] = "scheduling policy"
    #: how jobs placed on the same GPU share it
    sharing: ClassVar[Sharing] = Sharing.NONE

    @abstractmethod
    def allocate(self, state: ClusterState) -> Allocation:
        """The allocation from now until the next decision point."""

    def reset(self) -> None:
        """Forget what earlier runs taught (no-op by default)."""


def keep_or_place(
    state: ClusterState, order: Sequence[JobStatus], *, backfill: bool = True
) -> dict[int, tuple[int, ...]]:
    """Admit jobs in ``order`` while they fit, keeping the GPUs of those that hold some.

    The jobs that fit in ``order`` (all of them when ``backfill``, else up to the first that
    does not) run: those already holding GPUs keep them, the others get free ones.
    """
    left = state.cluster.num_gpus
    chosen: list[JobStatus] = []
    for s in order:
        if s.job.num_gpus <= left:
            chosen.append(s)
            left -= s.job.num_gpus
        elif not backfill:
            break
    out = {s.index: s.gpus for s in chosen if s.gpus}
    free = state.free(out)
    for s in chosen:
        if not s.gpus:
            got = free.take(s.job.num_gpus)
            assert got is not None  # counted above
            out[s.index] = got
    return out


class AlwaysShallow(SchedulingPolicy):
    """Wraps a policy so that every job accepting SPB runs its shallow workers whenever it
    runs, lending them or not (SPB deployed without an SPB-aware scheduler: the slack idles).

    Parameters
    ----------
    inner
        The wrapped policy.
    shallow_count
        How many of a job's GPUs run shallow (the run's SPB factors).
    """

    name: ClassVar[str] = "always-shallow"
    description: ClassVar[str] = "any policy, with SPB jobs always running shallow workers"

    def __init__(self, inner: SchedulingPolicy) -> None:
        super().__init__()
        self.inner = inner
        self.sharing = inner.sharing  # type: ignore[misc]

    def reset(self) -> None:
        self.inner.reset()

    def allocate(self, state: ClusterState) -> Allocation:
        a = self.inner.allocate(state)
        shallow = dict(a.shallow)
        for j, gpus in a.gpus.items():
            k = state.oracle.shallow_count(j)
            if k > 0 and j not in shallow:
                shallow[j] = frozenset(gpus[-k:])
        return Allocation(a.gpus, shallow, a.review_at_s)
