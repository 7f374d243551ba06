"""Trace readers: one module each, registered in :data:`~phloem.jigsaw.registries.TRACES`.

- ``pollux``: the Pollux artifact's 160-job workloads at 0.5x to 2x load;
- ``philly``: the Philly-derived trace (82,247 jobs);
- ``alibaba``: Alibaba's 2023 GPU pods, fractional GPUs included;
- ``csv``: your own trace (format in ``docs/jigsaw.md``).
"""

from phloem.jigsaw.traces import alibaba, philly, pollux, user
from phloem.jigsaw.traces.base import TraceReader

__all__ = ["TraceReader", "alibaba", "philly", "pollux", "user"]
