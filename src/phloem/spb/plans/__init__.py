"""Depth plans: one module each, registered in :data:`~phloem.spb.registries.DEPTH_PLANS`.

- ``static``: a fixed share of the workers runs a fixed fraction of the blocks;
- ``staircase``: depths fall evenly from the full model on rank 0 to a minimum on the last;
- ``rotating``: the static pattern shifted by one rank every ``period`` steps, so that every
  worker's shard reaches the early blocks over time;
- ``time-varying``: deep early, shallow late (the shallow workers' depth shrinks linearly);
- ``profile``: the shallow ranks' depth chosen from the model's measured backward FLOPs and
  activation bytes;
- ``full``: the plain data-parallel baseline (every worker at full depth);
- ``freezeout``: the FreezeOut baseline, every worker freezing blocks from the input side;
- ``dropbp``: the DropBP baseline, random residual blocks skipping the backward pass.
"""

from phloem.spb.plans import (
    dropbp,
    freezeout,
    full,
    profiled,
    rotating,
    staircase,
    static,
    time_varying,
)
from phloem.spb.plans.base import DepthPlan, members

__all__ = [
    "DepthPlan",
    "dropbp",
    "freezeout",
    "full",
    "members",
    "profiled",
    "rotating",
    "staircase",
    "static",
    "time_varying",
]
