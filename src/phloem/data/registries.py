"""The registries of the data layer: data sets and partitioners (cheap to import).

A data set or partitioner registers itself in its module; the modules named in ``populate``
are imported on the first lookup.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from phloem.core.registry import Registry

if TYPE_CHECKING:
    from phloem.data.datasets import Dataset
    from phloem.data.partition import Partitioner

__all__ = ["DATASETS", "PARTITIONS"]

#: ``[data] dataset``: where the rows come from (:class:`phloem.data.datasets.Dataset`)
DATASETS: Registry[type[Dataset]] = Registry(
    "data set", "data.dataset", populate=["phloem.data.datasets", "phloem.data.shakespeare"]
)
#: ``[data] partition``: how training rows are split among clients
PARTITIONS: Registry[type[Partitioner]] = Registry(
    "partition", "data.partition", populate=["phloem.data.partition"]
)
