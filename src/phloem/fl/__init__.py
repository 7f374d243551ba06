"""The federated-optimisation simulator (after FL_PyTorch).

Build a :class:`Problem`, pick an :class:`Algorithm` (with a local solver, a compressor and a
server optimiser) and a client sampler, and call :func:`simulate`::

    from phloem.fl import Diana, FullParticipation, RandK, ServerSGD, simulate
    result = simulate(problem, Diana(compressor=RandK(10), server_opt=ServerSGD(0.1)),
                      FullParticipation(), rounds=100)
"""

from phloem.fl.algorithms import DCGD, EF21, Algorithm, Diana, FedAvg, FedProx, Marina, Scaffold
from phloem.fl.algorithms.base import ClientRng, Cohort, Message
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
from phloem.fl.local import FullGradient, LocalSolver, MinibatchSGD
from phloem.fl.models import FlatModule, build_model, cnn28, cnn32, linear_model, mlp, seeded
from phloem.fl.problem import ClientOracle, ModelProblem, Problem, QuadraticProblem
from phloem.fl.sampling import (
    ClientSampler,
    FixedSchedule,
    FullParticipation,
    Poisson,
    UniformCohort,
)
from phloem.fl.server_opt import ServerAdam, ServerOptimizer, ServerSGD
from phloem.fl.simulate import TIMING_KEYS, Checkpoint, SimulationResult, simulate

__all__ = [
    "DCGD",
    "EF21",
    "QSGD",
    "TIMING_KEYS",
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
    "FedAvg",
    "FedProx",
    "FixedSchedule",
    "FlatModule",
    "FullGradient",
    "FullParticipation",
    "Identity",
    "LocalSolver",
    "Marina",
    "Message",
    "MinibatchSGD",
    "ModelProblem",
    "Natural",
    "Poisson",
    "Problem",
    "ProcessBackend",
    "QuadraticProblem",
    "RandK",
    "Scaffold",
    "Scaled",
    "SerialBackend",
    "ServerAdam",
    "ServerOptimizer",
    "ServerSGD",
    "SimulationResult",
    "TopK",
    "UniformCohort",
    "build_model",
    "cnn28",
    "cnn32",
    "linear_model",
    "mlp",
    "seeded",
    "simulate",
]
