"""Scheduling policies: one module each, registered in
:data:`~phloem.jigsaw.registries.POLICIES`.

- ``fifo``: arrival order, non-preemptive;
- ``tiresias``: discretised 2D-LAS (Gu et al., NSDI 2019);
"""

from phloem.jigsaw.policies import fifo, tiresias
from phloem.jigsaw.policies.base import (
    Allocation,
    ClusterState,
    JobStatus,
    SchedulingPolicy,
    Sharing,
)

__all__ = [
    "Allocation",
    "ClusterState",
    "JobStatus",
    "SchedulingPolicy",
    "Sharing",
    "fifo",
    "tiresias",
]
