"""The federated-optimisation simulator (after FL_PyTorch).

Build a :class:`Problem`, pick an :class:`Algorithm` (with a local solver, a compressor and a
server optimiser) and a client sampler, and call :func:`simulate`::

    from phloem.fl import Diana, FullParticipation, RandK, ServerSGD, simulate
    result = simulate(problem, Diana(compressor=RandK(10), server_opt=ServerSGD(0.1)),
                      FullParticipation(), rounds=100)

Or from a config: :func:`phloem.fl.experiment.run_experiment`. Every part is registered by
name (:mod:`phloem.fl.registries`). The names below are imported on first use, so that
``import phloem.fl.config`` (the command line) costs no torch.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from phloem.fl.aggregation import Aggregation, DropoutModel, PlainAggregation
    from phloem.fl.algorithms import (
        DCGD,
        EF21,
        Algorithm,
        Diana,
        FedAvg,
        FedDyn,
        FedNova,
        FedProx,
        GradSkip,
        Marina,
        ProxSkip,
        Scaffold,
    )
    from phloem.fl.algorithms.base import Aggregate, ClientRng, Cohort, Message, Uplink
    from phloem.fl.backends import Backend, ProcessBackend, SerialBackend
    from phloem.fl.compressors import (
        QSGD,
        Bernoulli,
        Compressor,
        Identity,
        Natural,
        RandK,
        Scaled,
        TopK,
    )
    from phloem.fl.experiment import build_experiment, run_experiment
    from phloem.fl.local import FullGradient, LocalSolver, MinibatchSGD
    from phloem.fl.models import FlatModule, build_model, cnn28, cnn32, linear_model, mlp, seeded
    from phloem.fl.privacy import GaussianMechanism, PrivacyLedger, PrivateAggregation
    from phloem.fl.problem import ClientOracle, ModelProblem, Problem, QuadraticProblem
    from phloem.fl.ray_backend import RayBackend
    from phloem.fl.sampling import (
        ClientSampler,
        FixedSchedule,
        FullParticipation,
        Poisson,
        UniformCohort,
    )
    from phloem.fl.schedules import LrSchedules, Schedule
    from phloem.fl.secure import SecAgg, SecAggPlus, SecureAggregation
    from phloem.fl.server_opt import (
        ServerAdagrad,
        ServerAdam,
        ServerOptimizer,
        ServerSGD,
        ServerYogi,
    )
    from phloem.fl.simulate import TIMING_KEYS, Checkpoint, SimulationResult, simulate
    from phloem.fl.vectorised import VectorisedBackend

#: public name -> the module that defines it
_WHERE = {
    **dict.fromkeys(["Aggregation", "DropoutModel", "PlainAggregation"], "aggregation"),
    **dict.fromkeys(
        [
            *["DCGD", "EF21", "Algorithm", "Diana", "FedAvg", "FedProx", "Marina", "Scaffold"],
            *["FedDyn", "FedNova", "GradSkip", "ProxSkip"],
        ],
        "algorithms",
    ),
    **dict.fromkeys(["Aggregate", "ClientRng", "Cohort", "Message", "Uplink"], "algorithms.base"),
    **dict.fromkeys(["Backend", "ProcessBackend", "SerialBackend"], "backends"),
    "VectorisedBackend": "vectorised",
    **dict.fromkeys(
        ["QSGD", "Bernoulli", "Compressor", "Identity", "Natural", "RandK", "Scaled", "TopK"],
        "compressors",
    ),
    **dict.fromkeys(["build_experiment", "run_experiment"], "experiment"),
    **dict.fromkeys(["FullGradient", "LocalSolver", "MinibatchSGD"], "local"),
    **dict.fromkeys(
        ["FlatModule", "build_model", "cnn28", "cnn32", "linear_model", "mlp", "seeded"], "models"
    ),
    **dict.fromkeys(["GaussianMechanism", "PrivacyLedger", "PrivateAggregation"], "privacy"),
    **dict.fromkeys(["ClientOracle", "ModelProblem", "Problem", "QuadraticProblem"], "problem"),
    **dict.fromkeys(
        ["ClientSampler", "FixedSchedule", "FullParticipation", "Poisson", "UniformCohort"],
        "sampling",
    ),
    "RayBackend": "ray_backend",
    **dict.fromkeys(["SecAgg", "SecAggPlus", "SecureAggregation"], "secure"),
    **dict.fromkeys(["LrSchedules", "Schedule"], "schedules"),
    **dict.fromkeys(
        ["ServerAdagrad", "ServerAdam", "ServerOptimizer", "ServerSGD", "ServerYogi"], "server_opt"
    ),
    **dict.fromkeys(["TIMING_KEYS", "Checkpoint", "SimulationResult", "simulate"], "simulate"),
}

__all__ = [
    "DCGD",
    "EF21",
    "QSGD",
    "TIMING_KEYS",
    "Aggregate",
    "Aggregation",
    "Algorithm",
    "Backend",
    "Bernoulli",
    "Checkpoint",
    "ClientOracle",
    "ClientRng",
    "ClientSampler",
    "Cohort",
    "Compressor",
    "Diana",
    "DropoutModel",
    "FedAvg",
    "FedDyn",
    "FedNova",
    "FedProx",
    "FixedSchedule",
    "FlatModule",
    "FullGradient",
    "FullParticipation",
    "GaussianMechanism",
    "GradSkip",
    "Identity",
    "LocalSolver",
    "LrSchedules",
    "Marina",
    "Message",
    "MinibatchSGD",
    "ModelProblem",
    "Natural",
    "PlainAggregation",
    "Poisson",
    "PrivacyLedger",
    "PrivateAggregation",
    "Problem",
    "ProcessBackend",
    "ProxSkip",
    "QuadraticProblem",
    "RandK",
    "RayBackend",
    "Scaffold",
    "Scaled",
    "Schedule",
    "SecAgg",
    "SecAggPlus",
    "SecureAggregation",
    "SerialBackend",
    "ServerAdagrad",
    "ServerAdam",
    "ServerOptimizer",
    "ServerSGD",
    "ServerYogi",
    "SimulationResult",
    "TopK",
    "UniformCohort",
    "Uplink",
    "VectorisedBackend",
    "build_experiment",
    "build_model",
    "cnn28",
    "cnn32",
    "linear_model",
    "mlp",
    "run_experiment",
    "seeded",
    "simulate",
]


class _Package(types.ModuleType):
    """Keeps an exported name bound to its object when its submodule shares the name.

    Importing ``phloem.fl.simulate`` makes Python bind the submodule to ``phloem.fl.simulate``,
    which would shadow the function ``simulate`` exported here; this binds the function.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        submodule = isinstance(value, types.ModuleType) and value.__name__ == f"{__name__}.{name}"
        if submodule and _WHERE.get(name) == name and hasattr(value, name):
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'phloem.fl' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"phloem.fl.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])
