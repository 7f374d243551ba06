"""The registries of the Jigsaw area (cheap to import).

A part registers itself in its module; the modules named in ``populate`` are imported on the
first lookup, so adding a part is one new module plus one line in its package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from phloem.core.registry import Registry

if TYPE_CHECKING:
    from phloem.jigsaw.policies.base import SchedulingPolicy
    from phloem.jigsaw.traces.base import TraceReader

__all__ = ["POLICIES", "TRACES"]

#: ``[policy] name``: who gets which GPUs (:class:`~.policies.base.SchedulingPolicy`)
POLICIES: Registry[type[SchedulingPolicy]] = Registry(
    "scheduling policy", "policy.name", populate=["phloem.jigsaw.policies"]
)
#: ``[trace] name``: where the jobs come from (:class:`~.traces.base.TraceReader`)
TRACES: Registry[type[TraceReader]] = Registry(
    "trace reader", "trace.name", populate=["phloem.jigsaw.traces"]
)
