"""The table where configuration values become classes (the only place that does this)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from phloem.core.errors import ConfigError
from phloem.core.rng import SeedStreams, Stage
from phloem.data import loaders, partition, synthetic
from phloem.data.dataset import Partition, TrainTest
from phloem.fl import theory
from phloem.fl.algorithms.base import Algorithm
from phloem.fl.algorithms.dcgd import DCGD
from phloem.fl.algorithms.diana import Diana
from phloem.fl.algorithms.ef21 import EF21
from phloem.fl.algorithms.fedavg import FedAvg
from phloem.fl.algorithms.fedprox import FedProx
from phloem.fl.algorithms.marina import Marina
from phloem.fl.algorithms.scaffold import Scaffold
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
from phloem.fl.config import (
    AggregationName,
    AlgorithmName,
    BackendName,
    CompressorName,
    DatasetName,
    DtypeName,
    ExperimentConfig,
    LrRule,
    ModelName,
    PartitionScheme,
    SamplingScheme,
    ServerOptName,
    SolverName,
)
from phloem.fl.local import FullGradient, LocalSolver, MinibatchSGD
from phloem.fl.models import build_model, seeded
from phloem.fl.problem import ModelProblem, Problem, QuadraticProblem
from phloem.fl.sampling import ClientSampler, FullParticipation, Poisson, UniformCohort
from phloem.fl.secure import Aggregator, DropoutModel, protocol_of
from phloem.fl.server_opt import ServerAdam, ServerOptimizer, ServerSGD
from phloem.secagg.aggregate import SecAggSettings

__all__ = [
    "ALGORITHMS",
    "COMPRESSORS",
    "DATASETS",
    "Experiment",
    "build_experiment",
    "theory_step",
]

ALGORITHMS: dict[AlgorithmName, type[Algorithm[Any, Any]]] = {
    AlgorithmName.FEDAVG: FedAvg,
    AlgorithmName.FEDPROX: FedProx,
    AlgorithmName.SCAFFOLD: Scaffold,
    AlgorithmName.DCGD: DCGD,
    AlgorithmName.DIANA: Diana,
    AlgorithmName.MARINA: Marina,
    AlgorithmName.EF21: EF21,
}

COMPRESSORS: dict[CompressorName, str] = {
    CompressorName.NONE: "no compression (32-bit floats)",
    CompressorName.IDENTITY: "identity, counted like none",
    CompressorName.RANDK: "Rand-K sparsification, unbiased (k or ratio)",
    CompressorName.TOPK: "Top-K sparsification, contractive (k or ratio)",
    CompressorName.NATURAL: "natural compression, unbiased, 9 bits/entry",
    CompressorName.QSGD: "QSGD with `levels` levels, unbiased",
    CompressorName.BERNOULLI: "Bernoulli / lazy: send with probability p, unbiased",
}

DATASETS: dict[DatasetName, str] = {
    DatasetName.DIGITS: "scikit-learn digits, bundled (1,797 8x8 images, 10 classes)",
    DatasetName.LIBSVM: "LIBSVM file (libsvm_name: a9a, a8a, w8a...) from the data folder",
    DatasetName.MNIST: "MNIST IDX files from <data>/mnist/",
    DatasetName.FEMNIST: "LEAF FEMNIST sample from <data>/femnist/ (natural writer split)",
    DatasetName.CIFAR10: "CIFAR-10 from <data>/cifar10_jpeg/ or python batches",
    DatasetName.QUADRATIC: "generated quadratics with eigenvalues in [mu, L], known optimum",
    DatasetName.SYNTHETIC: "generated FedProx Synthetic(syn_alpha, syn_beta) logistic data",
}

_DTYPES = {DtypeName.FLOAT32: torch.float32, DtypeName.FLOAT64: torch.float64}


@dataclass(frozen=True)
class Experiment:
    """Everything :func:`phloem.fl.simulate` needs, built from a config."""

    config: ExperimentConfig
    problem: Problem
    algorithm: Algorithm[Any, Any]
    sampler: ClientSampler
    backend: Backend
    streams: SeedStreams
    aggregator: Aggregator | None = None


def _load(cfg: ExperimentConfig, rng: np.random.Generator) -> TrainTest:
    d = cfg.data
    match d.dataset:
        case DatasetName.DIGITS:
            return loaders.load_digits(d.test_fraction, rng=rng)
        case DatasetName.LIBSVM:
            try:
                return loaders.load_libsvm_pair(d.libsvm_name, path=d.path)
            except FileNotFoundError:
                return loaders.load_libsvm(
                    d.libsvm_name, path=d.path, test_fraction=d.test_fraction, rng=rng
                )
        case DatasetName.MNIST:
            return loaders.load_mnist(d.path)
        case DatasetName.FEMNIST:
            return loaders.load_femnist(d.path)
        case DatasetName.CIFAR10:
            return loaders.load_cifar10(d.path, limit_train=d.limit_train)
        case DatasetName.SYNTHETIC:
            return synthetic.make_synthetic(
                d.syn_alpha, d.syn_beta, d.num_clients, rng=rng, test_fraction=d.test_fraction
            )
    raise ConfigError("data.dataset", f"{d.dataset} has no loader", list(DatasetName))


def _partition(cfg: ExperimentConfig, data: TrainTest, rng: np.random.Generator) -> Partition:
    d, y = cfg.data, data.train.y
    match d.partition:
        case PartitionScheme.IID:
            return partition.iid(len(y), d.num_clients, rng)
        case PartitionScheme.DIRICHLET:
            return partition.dirichlet(y, d.num_clients, d.alpha, rng, min_size=d.min_client_size)
        case PartitionScheme.SHARDS:
            return partition.shards(y, d.num_clients, d.shards_per_client, rng)
        case PartitionScheme.NATURAL:
            if data.train.groups is None:
                raise ConfigError(
                    "data.partition",
                    f"'natural' needs a data set with natural owners; {d.dataset.value} has none",
                    ["femnist", "synthetic"],
                )
            return partition.natural(data.train.groups)
    raise ConfigError("data.partition", f"unknown scheme {d.partition}", list(PartitionScheme))


def build_problem(cfg: ExperimentConfig, streams: SeedStreams) -> Problem:
    """The federated problem of ``cfg`` (data loaded, partitioned, model initialised)."""
    d = cfg.data
    if d.dataset is DatasetName.QUADRATIC:
        q = synthetic.make_quadratic(
            d.num_clients, d.dim, d.L, d.mu, streams.numpy(Stage.DATA), d.heterogeneity
        )
        return QuadraticProblem(q.A, q.b, q.weights)
    data = _load(cfg, streams.numpy(Stage.DATA))
    try:
        part = _partition(cfg, data, streams.numpy(Stage.PARTITION))
    except ValueError as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"data (partition {d.partition.value})", str(e)) from None
    m = cfg.model
    regression = m.name is ModelName.LINEAR
    outputs = 1 if regression else int(data.train.num_classes or 2)
    shape = data.train.feature_shape
    try:
        module = seeded(
            lambda: build_model(m.name, shape, outputs, m.hidden),
            streams.int_seed(Stage.MODEL_INIT),
        )
    except ValueError as e:
        raise ConfigError("model.name", str(e), [v.value for v in ModelName]) from None
    task = "regression" if regression else "classification"
    try:
        return ModelProblem(
            module, data.train, data.test, part, task=task, l2=m.l2, dtype=_DTYPES[m.dtype]
        )
    except ValueError as e:
        raise ConfigError("data.partition", str(e)) from None


def build_compressor(cfg: ExperimentConfig, dim: int) -> Compressor | None:
    """The uplink compressor for vectors of dimension ``dim`` (``None`` for no compression)."""
    c = cfg.compressor

    def k() -> int:
        if c.k is not None:
            return c.k
        if c.ratio is not None:
            return max(1, math.ceil(c.ratio * dim))
        raise ConfigError("compressor.k", f"{c.name.value} needs compressor.k or compressor.ratio")

    inner: Compressor
    match c.name:
        case CompressorName.NONE:
            return None
        case CompressorName.IDENTITY:
            inner = Identity()
        case CompressorName.RANDK:
            inner = RandK(k())
        case CompressorName.TOPK:
            inner = TopK(k())
        case CompressorName.NATURAL:
            inner = Natural()
        case CompressorName.QSGD:
            inner = QSGD(c.levels)
        case CompressorName.BERNOULLI:
            inner = Bernoulli(c.p)
    if c.scaled:
        if not inner.unbiased:
            raise ConfigError("compressor.scaled", f"{c.name.value} is already contractive")
        return Scaled(inner)
    return inner


def build_local(cfg: ExperimentConfig) -> LocalSolver:
    lc = cfg.local
    if lc.solver is SolverName.FULL:
        return FullGradient(lc.lr, lc.steps or 1)
    return MinibatchSGD(lc.lr, lc.batch_size, lc.epochs, lc.steps)


def build_server(cfg: ExperimentConfig) -> ServerOptimizer:
    s = cfg.server
    if s.optimizer is ServerOptName.ADAM:
        return ServerAdam(s.lr, s.beta1, s.beta2, s.eps)
    return ServerSGD(s.lr, s.momentum)


def theory_step(algorithm: Algorithm[Any, Any], problem: Problem) -> float:
    """The largest step the algorithm's convergence theorem allows on ``problem``.

    Raises
    ------
    ConfigError
        When the problem's smoothness is unknown, or the method has no such rule here.
    """
    s = problem.smoothness()
    if s is None:
        raise ConfigError(
            "server.lr_rule",
            "'theory' needs a problem with known smoothness: "
            "the quadratic, or a linear/logistic model",
        )
    d, c = problem.dim, algorithm.compressor
    omega = 0.0 if c is None else c.omega(d)
    if isinstance(algorithm, (DCGD, Diana, Marina)) and not math.isfinite(omega):
        raise ConfigError(
            "compressor.name",
            f"{algorithm.name} needs an unbiased compressor",
            ["randk", "natural", "qsgd", "bernoulli"],
        )
    if isinstance(algorithm, DCGD):
        return theory.dcgd_step(s, omega)
    if isinstance(algorithm, Diana):
        return theory.diana_step(s, omega)
    if isinstance(algorithm, Marina):
        return theory.marina_step(s, omega, algorithm.sync_probability(d))
    if isinstance(algorithm, EF21):
        alpha = 1.0 if c is None else c.alpha(d)
        if alpha <= 0.0:
            raise ConfigError(
                "compressor",
                f"ef21 needs a contractive compressor; {c.name if c else ''}"
                " is not (use topk, or set compressor.scaled = true)",
            )
        return theory.ef21_step(s, alpha)
    raise ConfigError(
        "server.lr_rule",
        f"no theory step size for {algorithm.name}",
        ["dcgd", "diana", "marina", "ef21"],
    )


def build_algorithm(cfg: ExperimentConfig, problem: Problem) -> Algorithm[Any, Any]:
    """The configured algorithm, with the theory step size applied when asked for."""
    algo = _build_algorithm(cfg, problem.dim)
    if cfg.server.lr_rule is LrRule.THEORY:
        if not isinstance(algo.server_opt, ServerSGD):
            raise ConfigError("server.lr_rule", "'theory' applies to the sgd server optimiser")
        step = cfg.server.lr_scale * theory_step(algo, problem)
        algo = dataclasses.replace(algo, server_opt=dataclasses.replace(algo.server_opt, lr=step))
    return algo


def _build_algorithm(cfg: ExperimentConfig, dim: int) -> Algorithm[Any, Any]:
    a = cfg.algorithm
    common: dict[str, Any] = {
        "compressor": build_compressor(cfg, dim),
        "server_opt": build_server(cfg),
        "local": build_local(cfg),
    }
    match a.name:
        case AlgorithmName.FEDPROX:
            return FedProx(mu=a.mu, **common)
        case AlgorithmName.DIANA:
            return Diana(alpha=a.alpha, **common)
        case AlgorithmName.MARINA:
            return Marina(p=a.p, **common)
    return ALGORITHMS[a.name](**common)


def build_sampler(cfg: ExperimentConfig) -> ClientSampler:
    s = cfg.sampling
    match s.scheme:
        case SamplingScheme.FULL:
            return FullParticipation()
        case SamplingScheme.POISSON:
            return Poisson(s.rate)
    return UniformCohort(s.cohort_size)


def build_backend(cfg: ExperimentConfig) -> Backend:
    r = cfg.run
    if r.backend is BackendName.PROCESS:
        return ProcessBackend(r.workers, r.threads)
    return SerialBackend(r.threads)


def build_aggregator(cfg: ExperimentConfig) -> Aggregator | None:
    """The ``[aggregation]`` section; ``None`` for plain aggregation without dropouts."""
    a = cfg.aggregation
    if a.name is AggregationName.PLAIN and a.dropout == 0.0:
        return None
    settings = SecAggSettings(
        protocol=protocol_of(a.name),
        num_shares=a.num_shares,
        threshold=a.threshold,
        dropout=a.tolerate_dropout,
        corrupt=a.tolerate_corrupt,
        sigma=a.sigma,
        eta=a.eta,
        modulus_bits=a.modulus_bits,
        clip=a.clip,
        levels=a.levels,
        prg=a.prg,
        consistency_check=a.consistency_check,
    )
    if a.name is not AggregationName.PLAIN:
        # fail now, naming the field, rather than in round 1
        n = cfg.sampling.cohort_size if cfg.sampling.scheme is SamplingScheme.UNIFORM else None
        if n is not None:
            try:
                settings.parameters(n)
                settings.quantizer(n)
            except ConfigError as e:
                raise ConfigError(f"aggregation.{e.field}", e.problem, e.allowed) from None
    return Aggregator(a.name, settings, DropoutModel(a.dropout, str(a.dropout_stage)))


def build_experiment(cfg: ExperimentConfig) -> Experiment:
    """Build every part of ``cfg``; errors name the config field at fault."""
    streams = SeedStreams(cfg.run.seed)
    problem = build_problem(cfg, streams)
    if (
        cfg.sampling.scheme is SamplingScheme.UNIFORM
        and cfg.sampling.cohort_size > problem.num_clients
    ):
        raise ConfigError(
            "sampling.cohort_size",
            f"{cfg.sampling.cohort_size} exceeds the {problem.num_clients} clients",
        )
    try:
        algorithm = build_algorithm(cfg, problem)
    except ValueError as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError("algorithm", str(e)) from None
    return Experiment(
        cfg,
        problem,
        algorithm,
        build_sampler(cfg),
        build_backend(cfg),
        streams,
        build_aggregator(cfg),
    )
