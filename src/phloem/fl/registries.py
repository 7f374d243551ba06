"""The registries of the federated simulator (cheap to import: no torch).

Every interchangeable part of an experiment registers itself here from its own module; the
modules named in ``populate`` are imported on the first lookup. A config section picks a part
by name and carries that part's own keys (see :mod:`phloem.fl.config`); ``phloem fl list``
prints these registries.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from phloem.core.registry import Registry

if TYPE_CHECKING:
    from phloem.fl.aggregation import Aggregation
    from phloem.fl.algorithms.base import Algorithm
    from phloem.fl.compressors.base import CompressorFactory
    from phloem.fl.local import LocalSolver
    from phloem.fl.models import Model
    from phloem.fl.sampling import ClientSampler
    from phloem.fl.schedules import Schedule
    from phloem.fl.server_opt import ServerOptimizer

__all__ = [
    "AGGREGATIONS",
    "ALGORITHMS",
    "COMPRESSORS",
    "LOCAL_SOLVERS",
    "MODELS",
    "SAMPLERS",
    "SCHEDULES",
    "SERVER_OPTIMIZERS",
]

#: ``[algorithm] name``: federated methods, one module per paper
ALGORITHMS: Registry[type[Algorithm]] = Registry(  # type: ignore[type-arg]
    "algorithm", "algorithm.name", populate=["phloem.fl.algorithms"]
)
#: ``[compressor] name``: uplink compression operators (``none`` sends float32 vectors)
COMPRESSORS: Registry[type[CompressorFactory]] = Registry(
    "compressor", "compressor.name", populate=["phloem.fl.compressors"]
)
#: ``[sampling] scheme``: which clients take part in a round
SAMPLERS: Registry[type[ClientSampler]] = Registry(
    "sampler", "sampling.scheme", populate=["phloem.fl.sampling"]
)
#: ``[server] optimizer``: how the server steps along the aggregated direction
SERVER_OPTIMIZERS: Registry[type[ServerOptimizer]] = Registry(
    "server optimiser", "server.optimizer", populate=["phloem.fl.server_opt"]
)
#: ``[local] solver``: what a client does between two communications
LOCAL_SOLVERS: Registry[type[LocalSolver]] = Registry(
    "local solver", "local.solver", populate=["phloem.fl.local"]
)
#: ``[model] name``: the model a data set is learnt with
MODELS: Registry[type[Model]] = Registry(
    "model", "model.name", populate=["phloem.fl.models", "phloem.fl.archs"]
)
#: ``[aggregation] name``: how the server receives the cohort's updates
AGGREGATIONS: Registry[type[Aggregation]] = Registry(
    "aggregation", "aggregation.name", populate=["phloem.fl.aggregation", "phloem.fl.secure"]
)
#: ``[local] schedule`` and ``[server] schedule``: the step size's multiplier in round k
SCHEDULES: Registry[type[Schedule]] = Registry(
    "schedule", "schedule", populate=["phloem.fl.schedules"]
)
