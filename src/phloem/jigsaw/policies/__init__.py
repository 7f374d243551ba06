"""Scheduling policies: one module each, registered in
:data:`~phloem.jigsaw.registries.POLICIES`.

- ``fifo``: arrival order, non-preemptive;
- ``tiresias``: discretised 2D-LAS (Gu et al., NSDI 2019);
- ``gavel``: max-min fair time shares from an LP, round-based (Narayanan et al., OSDI 2020);
- ``gandiva``: FIFO admission with packing of same-size jobs (Xiao et al., OSDI 2018);
- ``muri``: 2D-LAS with phase-interleaved pairs (Zhao et al., SIGCOMM 2022);
- ``jigsaw``: a base policy plus guests in SPB hosts' slack (Kumar et al., DistributedML 2021).
"""

from phloem.jigsaw.policies import fifo, gandiva, gavel, jigsaw, muri, tiresias
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
    "gandiva",
    "gavel",
    "jigsaw",
    "muri",
    "tiresias",
]
