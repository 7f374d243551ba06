"""Jobs as a trace gives them, and a trace as the simulator reads it."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

__all__ = ["Job", "Trace"]


@dataclass(frozen=True)
class Job:
    """One training job.

    Attributes
    ----------
    name
        As the trace names it.
    arrival_s
        Submission time, seconds from the trace's start.
    app
        The application whose throughput tables it runs by (``cifar10``, ``imagenet``, ...).
    num_gpus
        GPUs it asks for (it runs on exactly that many, or waits).
    batch_size
        Global batch size.
    work
        Samples at the application's initial batch size it must process to finish.
    spb
        Whether the job accepts structured partial backpropagation (Jigsaw may then run some
        of its workers shallow and lend their slack).
    gpu_fraction
        The share of each GPU's compute the job uses (Alibaba's fractional pods; 1: a whole
        GPU, as measured).
    """

    name: str
    arrival_s: float
    app: str
    num_gpus: int
    batch_size: int
    work: float
    spb: bool = False
    gpu_fraction: float = 1.0


@dataclass(frozen=True)
class Trace:
    """Jobs sorted by arrival, and the rows a reader skipped, counted by why.

    Attributes
    ----------
    jobs
        Sorted by ``arrival_s`` (ties: trace order); arrivals start at 0. Jobs whose work is
        not a positive finite number (a duration or batch size too large to simulate) are
        dropped and counted in ``skipped``.
    skipped
        ``reason -> count`` of rows that were not jobs (unreadable numbers, no GPUs, ...).
    source
        What was read, in words.
    """

    jobs: tuple[Job, ...]
    skipped: Counter[str] = field(default_factory=Counter)
    source: str = ""

    def __post_init__(self) -> None:
        # whatever the reader: a job that cannot be simulated is skipped and counted here
        kept = [j for j in self.jobs if math.isfinite(j.work) and j.work > 0]
        if len(kept) < len(self.jobs):
            self.skipped["work: not finite or not positive (duration or batch too large)"] += len(
                self.jobs
            ) - len(kept)
        jobs = sorted(kept, key=lambda j: j.arrival_s)
        if jobs and jobs[0].arrival_s != 0.0:
            t0 = jobs[0].arrival_s
            jobs = [replace(j, arrival_s=j.arrival_s - t0) for j in jobs]
        object.__setattr__(self, "jobs", tuple(jobs))

    def __len__(self) -> int:
        return len(self.jobs)

    def with_spb(self, flags: Sequence[bool]) -> Trace:
        """The same trace with each job's ``spb`` set from ``flags``."""
        jobs = tuple(replace(j, spb=bool(f)) for j, f in zip(self.jobs, flags, strict=True))
        return Trace(jobs, Counter(self.skipped), self.source)
