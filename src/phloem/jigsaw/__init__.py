"""Jigsaw: an SPB-aware cluster scheduler, and the trace-driven simulator it is measured in.

A discrete-event simulator of a GPU cluster (:func:`simulate`) runs a trace of jobs
(:mod:`.traces`: the Pollux workloads, the Philly-derived trace, Alibaba's GPU pods, or your
CSV) under a scheduling policy (:mod:`.policies`: FIFO, Tiresias, Gavel, Gandiva, Muri and
Jigsaw, each behind ``allocate(state) -> allocation``), with per-job throughput from the
Pollux artifact's measurements, co-location slowdowns from Gavel's, and SPB's factors from
``phloem spb profile`` tables and accuracy curves. Importing this package is cheap (numpy);
scipy is imported by Gavel's LP and the throughput interpolation when first used.
"""

from phloem.jigsaw.cluster import ClusterSpec
from phloem.jigsaw.config import SimConfig, load_config
from phloem.jigsaw.jobs import Job, Trace
from phloem.jigsaw.metrics import Metrics
from phloem.jigsaw.policies.base import Allocation, ClusterState, SchedulingPolicy, Sharing
from phloem.jigsaw.registries import POLICIES, TRACES
from phloem.jigsaw.run import Comparison, SimReport, compare_policies, run_simulation
from phloem.jigsaw.simulator import SimOptions, SimResult, simulate

__all__ = [
    "POLICIES",
    "TRACES",
    "Allocation",
    "ClusterSpec",
    "ClusterState",
    "Comparison",
    "Job",
    "Metrics",
    "SchedulingPolicy",
    "Sharing",
    "SimConfig",
    "SimOptions",
    "SimReport",
    "SimResult",
    "Trace",
    "compare_policies",
    "load_config",
    "run_simulation",
    "simulate",
]
