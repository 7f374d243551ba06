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
from typing import TYPE_CHECKING, ClassVar

from phloem.core.registry import Configured
from phloem.jigsaw.cluster import ClusterSpec, FreeGpus
from phloem.jigsaw.jobs import Job

if TYPE_CHECKING:
    from phloem.jigsaw.rates import Estimate

__all__ = ["Allocation", "ClusterState", "JobStatus", "SchedulingPolicy", "Sharing"]


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
    estimate
        ``estimate(index, gpus, shallow)``: the job's iteration and rate alone on ``gpus``
        (what a profiling scheduler knows; Gavel, Gandiva, Muri and Jigsaw use it).
    """

    def __init__(
        self,
        now_s: float,
        cluster: ClusterSpec,
        jobs: Sequence[JobStatus],
        estimate: object,
    ) -> None:
        self.now_s = now_s
        self.cluster = cluster
        self.jobs = jobs
        self._estimate = estimate

    def estimate(
        self, index: int, gpus: tuple[int, ...], shallow: frozenset[int] = frozenset()
    ) -> Estimate:
        return self._estimate(index, gpus, shallow)  # type: ignore[operator, no-any-return]

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
