"""The registries of the SPB area (cheap to import).

A part registers itself in its module; the modules named in ``populate`` are imported on the
first lookup, so adding a part is one new module plus one line here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from phloem.core.registry import Registry

if TYPE_CHECKING:
    from phloem.spb.models import BlockModel
    from phloem.spb.plans.base import DepthPlan
    from phloem.spb.sync import SyncMethod

__all__ = ["DEPTH_PLANS", "MODELS", "SYNC_METHODS"]

#: ``[spb] plan``: how deep each worker backpropagates (:class:`~.plans.base.DepthPlan`)
DEPTH_PLANS: Registry[type[DepthPlan]] = Registry(
    "depth plan", "spb.plan", populate=["phloem.spb.plans"]
)
#: ``[spb] sync``: how ranks outside a block's member set receive its update
#: (:class:`~.sync.SyncMethod`)
SYNC_METHODS: Registry[type[SyncMethod]] = Registry(
    "sync method", "spb.sync", populate=["phloem.spb.sync"]
)
#: ``[model] name``: a network as an ordered list of blocks (:class:`~.models.BlockModel`)
MODELS: Registry[type[BlockModel]] = Registry("model", "model.name", populate=["phloem.spb.models"])
