"""Build everything :func:`phloem.fl.simulate` needs from an :class:`ExperimentConfig`.

Every part comes from its registry (the config holds each part's name and validated
parameters); errors name the config field at fault. :func:`run_experiment` builds and runs a
config in a run folder.
"""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from phloem.core.config import load_toml, to_dict, to_toml
from phloem.core.errors import ConfigError
from phloem.core.rng import SeedStreams, Stage
from phloem.core.rundir import RunDir
from phloem.data.dataset import TrainTest
from phloem.data.loaders import default_cache_dir
from phloem.data.registries import DATASETS, PARTITIONS
from phloem.data.synthetic import QuadraticData
from phloem.fl.aggregation import Aggregation, DropoutModel
from phloem.fl.algorithms.base import Algorithm
from phloem.fl.backends import Backend, ProcessBackend, SerialBackend
from phloem.fl.compressors import Compressor, Scaled
from phloem.fl.config import (
    BackendName,
    DtypeName,
    ExperimentConfig,
    LrRule,
    PrivacyMechanism,
    load_config,
)
from phloem.fl.local import LocalSolver
from phloem.fl.models import seeded
from phloem.fl.privacy import PrivacyLedger, make_private
from phloem.fl.problem import ModelProblem, Problem, QuadraticProblem, Task
from phloem.fl.registries import (
    AGGREGATIONS,
    ALGORITHMS,
    COMPRESSORS,
    LOCAL_SOLVERS,
    MODELS,
    SAMPLERS,
    SCHEDULES,
    SERVER_OPTIMIZERS,
)
from phloem.fl.sampling import ClientSampler
from phloem.fl.schedules import LrSchedules
from phloem.fl.server_opt import ServerOptimizer, ServerSGD
from phloem.fl.simulate import SimulationResult, simulate
from phloem.fl.theory import contraction

__all__ = [
    "RESUMABLE",
    "Experiment",
    "TheoryReport",
    "build_aggregation",
    "build_algorithm",
    "build_compressor",
    "build_downlink",
    "build_experiment",
    "build_problem",
    "build_schedules",
    "check_resumable",
    "resolve_device",
    "resume_experiment",
    "run_experiment",
    "theory_report",
    "theory_step",
]

_DTYPES = {DtypeName.FLOAT32: torch.float32, DtypeName.FLOAT64: torch.float64}


@dataclass(frozen=True)
class Experiment:
    """Everything :func:`phloem.fl.simulate` needs, built from a config."""

    config: ExperimentConfig
    problem: Problem
    algorithm: Algorithm[Any, Any, Any]
    sampler: ClientSampler
    backend: Backend
    streams: SeedStreams
    aggregator: Aggregation
    #: the ``[privacy]`` ledger (``None``: no privacy mechanism)
    privacy: PrivacyLedger | None = None


def build_problem(cfg: ExperimentConfig, streams: SeedStreams) -> Problem:
    """The federated problem of ``cfg`` (data loaded, partitioned, model initialised)."""
    d = cfg.data
    dataset = DATASETS.get(d.dataset)
    try:
        data = dataset.load(
            d.dataset_params, num_clients=d.num_clients, rng=streams.numpy(Stage.DATA)
        )
    except ValueError as e:  # a malformed file of the user's own (its line named)
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"data.dataset ({d.dataset})", str(e)) from None
    if isinstance(data, QuadraticData):
        return QuadraticProblem(data.A, data.b, data.weights)
    return _model_problem(cfg, data, streams)


def resolve_device(name: str) -> torch.device:
    """The torch device of ``run.device``, refused with the allowed ones when absent.

    Raises
    ------
    ConfigError
        Naming ``run.device`` when CUDA is asked for and torch sees no such GPU.
    """
    if name == "cpu":
        return torch.device("cpu")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    allowed = ["cpu", *(["cuda"] if count else []), *(f"cuda:{i}" for i in range(count))]
    index = int(name.split(":")[1]) if ":" in name else 0
    if count == 0:
        raise ConfigError("run.device", f"= {name} but torch sees no GPU", allowed)
    if index >= count:
        raise ConfigError("run.device", f"= {name} but torch sees {count} GPU(s)", allowed)
    return torch.device("cuda", index)


def _model_problem(cfg: ExperimentConfig, data: TrainTest, streams: SeedStreams) -> ModelProblem:
    d, m = cfg.data, cfg.model
    device = resolve_device(cfg.run.device)
    if device.type != "cpu" and cfg.run.backend is not BackendName.SERIAL:
        raise ConfigError(
            "run.backend",
            f"{cfg.run.backend.value!r} runs clients on the CPU (other processes or batched "
            f"kernels); only 'serial' runs them on {device}",
            ["serial"],
        )
    partitioner = PARTITIONS.get(d.partition)
    if partitioner.needs_owners and data.train.groups is None:
        owners = [n for n in DATASETS.names() if DATASETS.get(n).has_owners]
        raise ConfigError(
            "data.partition",
            f"{d.partition!r} needs a data set with natural owners; {d.dataset} has none",
            owners,
        )
    try:
        part = partitioner.split(
            d.partition_params, data.train, d.num_clients, streams.numpy(Stage.PARTITION)
        )
    except ValueError as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"data (partition {d.partition})", str(e)) from None
    if partitioner.needs_owners and part.num_clients != d.num_clients:
        warnings.warn(
            f"data.num_clients = {d.num_clients} is ignored by the {d.partition!r} partition: "
            f"{part.num_clients} clients, one per owner in {d.dataset}",
            UserWarning,
            stacklevel=2,
        )
    model = MODELS.get(m.name)
    token_data = np.issubdtype(data.train.x.dtype, np.integer)
    if token_data != model.tokens:
        fits = [n for n in MODELS.names() if MODELS.get(n).tokens == token_data]
        what = "windows of token indices" if token_data else "float features"
        raise ConfigError("model.name", f"{m.name!r} cannot learn {d.dataset} ({what})", fits)
    if not model.regression and len(np.unique(data.train.y)) < 2:
        # a classifier on one class: the binary optimum does not exist without l2 and Newton
        # failed with a traceback with it; nothing to learn either way
        raise ConfigError(
            "data.dataset",
            f"the training data of {d.dataset} have a single class; a classifier needs two",
        )
    outputs = 1 if model.regression else int(data.train.num_classes or 2)
    shape = data.train.feature_shape
    try:
        module = seeded(
            lambda: model.build(m.params, shape, outputs), streams.int_seed(Stage.MODEL_INIT)
        )
    except ValueError as e:
        raise ConfigError("model.name", str(e), MODELS.names()) from None
    task = (
        Task.REGRESSION
        if model.regression
        else Task.BINARY
        if model.binary
        else Task.CLASSIFICATION
    )
    try:
        problem = ModelProblem(
            module,
            data.train,
            data.test,
            part,
            task=task,
            l2=m.l2,
            dtype=_DTYPES[m.dtype],
            device=device,
            perplexity=model.tokens,
        )
    except ValueError as e:
        raise ConfigError("data.partition", str(e)) from None
    if task is Task.BINARY and m.l2 > 0:
        # strongly convex: the exact optimum (Newton, float64, a fraction of a second on the
        # LIBSVM sets) lets every evaluation report f - f* and ||x - x*||
        if problem.dim <= AUTO_SOLVE_MAX_DIM:
            problem.solve(cache=default_cache_dir() / "optimum")
        else:
            warnings.warn(
                f"the exact optimum is not solved for every run at d = {problem.dim} > "
                f"{AUTO_SOLVE_MAX_DIM} (Newton forms a d x d Hessian); runs report no "
                "objective_gap / dist_to_opt (`phloem fl optimum CONFIG` computes it)",
                UserWarning,
                stacklevel=2,
            )
    return problem


#: the largest dimension whose exact optimum a run solves by itself (Newton's d x d Hessian:
#: 0.2 GB and about a second per step at 5,000 on a 2-core machine)
AUTO_SOLVE_MAX_DIM = 5000


def build_compressor(cfg: ExperimentConfig, dim: int) -> Compressor | None:
    """The uplink compressor for vectors of dimension ``dim`` (``None`` for no compression)."""
    c = cfg.compressor
    inner = COMPRESSORS.get(c.name).from_params(c.params, dim=dim)
    if inner is None or not c.scaled:
        return inner
    if not inner.unbiased:
        raise ConfigError("compressor.scaled", f"{c.name} is already contractive")
    return Scaled(inner)


def build_downlink(cfg: ExperimentConfig, dim: int) -> Compressor | None:
    """The ``[downlink]`` compressor of the server's broadcast (``None``: float32).

    Errors name ``downlink.*``, not the ``compressor.*`` keys the operators speak of.
    """
    c = cfg.downlink
    try:
        inner = COMPRESSORS.get(c.name).from_params(c.params, dim=dim)
    except ConfigError as e:
        key = "downlink." + e.field.rsplit(".", 1)[-1]
        raise ConfigError(key, e.problem.replace("compressor.", "downlink."), e.allowed) from None
    if inner is None or not c.scaled:
        return inner
    if not inner.unbiased:
        raise ConfigError("downlink.scaled", f"{c.name} is already contractive")
    return Scaled(inner)


def build_local(cfg: ExperimentConfig) -> LocalSolver:
    """The clients' local solver."""
    lc = cfg.local
    return LOCAL_SOLVERS.get(lc.solver).from_params(lc.params, lr=lc.lr)


def build_server(cfg: ExperimentConfig) -> ServerOptimizer:
    """The server optimiser."""
    s = cfg.server
    return SERVER_OPTIMIZERS.get(s.optimizer).from_params(s.params, lr=s.lr)


def theory_step(algorithm: Algorithm[Any, Any, Any], problem: Problem) -> float:
    """The largest step the algorithm's convergence theorem allows on ``problem``.

    Raises
    ------
    ConfigError
        When the problem's smoothness is unknown, the method has no such rule, or the
        compressor does not meet the theorem's assumptions.
    """
    s = problem.smoothness()
    if s is None:
        raise ConfigError(
            "server.lr_rule",
            "'theory' needs a problem with known smoothness: "
            "the quadratic, or a linear/logistic model",
        )
    step = algorithm.theory_step(s, problem.dim)
    if step is None:
        with_rule = [n for n in ALGORITHMS.names() if ALGORITHMS.get(n).has_theory_step()]
        raise ConfigError("server.lr_rule", f"no theory step size for {algorithm.name}", with_rule)
    return step


def build_algorithm(cfg: ExperimentConfig, problem: Problem) -> Algorithm[Any, Any, Any]:
    """The configured algorithm, with the theory step size applied when asked for."""
    a = cfg.algorithm
    algo = ALGORITHMS.get(a.name).from_params(
        a.params,
        local=build_local(cfg),
        compressor=build_compressor(cfg, problem.dim),
        server_opt=build_server(cfg),
    )
    downlink = build_downlink(cfg, problem.dim)
    if downlink is not None:
        if "downlink" not in {f.name for f in dataclasses.fields(algo)}:
            with_downlink = [
                n
                for n in ALGORITHMS.names()
                if "downlink" in {f.name for f in dataclasses.fields(ALGORITHMS.get(n))}
            ]
            raise ConfigError(
                "downlink.name", f"{a.name} does not compress its broadcast", with_downlink
            )
        algo = dataclasses.replace(algo, downlink=downlink)  # type: ignore[call-arg]
    if getattr(algo, "contractive_only", False):
        # error feedback with a non-contractive compressor (Rand-K unscaled) diverges at any step
        contraction(algo.compressor, problem.dim, a.name)
        if downlink is not None and downlink.alpha(problem.dim) <= 0.0:
            raise ConfigError(
                "downlink.name",
                f"{a.name} needs a contractive downlink compressor; {downlink.name} is not "
                "(use topk, or set downlink.scaled = true)",
            )
    algo = algo.with_constants(problem.smoothness)
    if cfg.server.lr_rule is LrRule.THEORY:
        algo = algo.with_theory_step(cfg.server.lr_scale * theory_step(algo, problem))
    return dataclasses.replace(algo, lr_schedules=build_schedules(cfg))


def build_schedules(cfg: ExperimentConfig) -> LrSchedules | None:
    """The step-size schedules of ``[local]`` and ``[server]`` (``None``: both constant)."""
    schedules = LrSchedules(
        SCHEDULES.get(cfg.local.schedule).from_params(cfg.local.schedule_params),
        SCHEDULES.get(cfg.server.schedule).from_params(cfg.server.schedule_params),
        cfg.run.rounds,
    )
    return None if schedules.is_constant else schedules


def build_sampler(cfg: ExperimentConfig) -> ClientSampler:
    """The client sampler."""
    s = cfg.sampling
    return SAMPLERS.get(s.scheme).from_params(s.params)


def build_backend(cfg: ExperimentConfig) -> Backend:
    """Where the clients run."""
    r = cfg.run
    if r.backend is BackendName.PROCESS:
        # each worker is a process holding a copy of the problem: workers = 100000 started
        # processes until the run hung (over 10 minutes on a 2-core machine, untouched by ^C)
        most = 4 * (os.cpu_count() or 1)
        if r.workers > most:
            raise ConfigError(
                "run.workers",
                f"the process backend starts one process per worker on this machine; at most "
                f"{most} (4 per core), got {r.workers}",
            )
        return ProcessBackend(r.workers, r.threads)
    if r.backend is BackendName.RAY:
        from phloem.fl.ray_backend import RayBackend  # imports ray only when it opens

        return RayBackend(r.workers, r.threads, r.ray_address)
    if r.backend is BackendName.VECTORISED:
        from phloem.fl.vectorised import VectorisedBackend

        return VectorisedBackend(r.threads)
    return SerialBackend(r.threads)


def build_aggregation(cfg: ExperimentConfig, cohort_size: int | None) -> Aggregation:
    """The ``[aggregation]`` section.

    ``cohort_size``: when every round has the same, settings that cannot serve it are refused
    now, naming the field, rather than in round 1.
    """
    a = cfg.aggregation
    dropout = DropoutModel(a.dropout, a.dropout_stage)
    built = AGGREGATIONS.get(a.name).from_params(a.params, dropout=dropout)
    if cohort_size is not None:
        built.check_cohort(cohort_size)
    return built


def build_experiment(cfg: ExperimentConfig) -> Experiment:
    """Build every part of ``cfg``; errors name the config field at fault."""
    streams = SeedStreams(cfg.run.seed)
    problem = build_problem(cfg, streams)
    sampler = build_sampler(cfg)
    cohort_size = sampler.fixed_size(problem.num_clients)
    try:
        algorithm = build_algorithm(cfg, problem)
    except ValueError as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError("algorithm", str(e)) from None
    own_cohort = getattr(algorithm, "own_cohort", None)  # why the method picks its clients
    if own_cohort and cohort_size != problem.num_clients:
        raise ConfigError("sampling.scheme", f"{algorithm.name} {own_cohort}", ["full"])
    aggregation = build_aggregation(cfg, cohort_size)
    ledger = None
    if cfg.privacy.mechanism is PrivacyMechanism.GAUSSIAN:
        aggregation, ledger = make_private(
            cfg.privacy,
            algorithm=algorithm,
            sampler=sampler,
            aggregation=aggregation,
            weights=problem.weights,
            rounds=cfg.run.rounds,
        )
    backend = build_backend(cfg)
    return Experiment(cfg, problem, algorithm, sampler, backend, streams, aggregation, ledger)


def run_experiment(
    cfg: ExperimentConfig,
    *,
    run_dir: RunDir | None = None,
    resume: bool = False,
    progress: bool = True,
    root: Path | None = None,
) -> SimulationResult:
    """Build and run ``cfg`` in a (new or resumed) run folder, whose ``config.toml`` it writes."""
    exp = build_experiment(cfg)
    if run_dir is None:
        run_dir = RunDir.create(root or Path(cfg.run.out_dir), cfg.run.name)
    run_dir.write_config(to_toml(to_dict(cfg)))
    r = cfg.run
    return simulate(
        exp.problem,
        exp.algorithm,
        exp.sampler,
        rounds=r.rounds,
        seed=exp.streams,
        backend=exp.backend,
        eval_every=r.eval_every,
        full_eval=r.full_eval,
        run_dir=run_dir,
        checkpoint_every=r.checkpoint_every,
        resume=resume,
        progress=progress,
        aggregator=exp.aggregator,
        divergence_factor=r.divergence_factor,
        privacy=exp.privacy,
    )


#: Settings a resumed run may change: they do not alter the arithmetic of the rounds.
RESUMABLE = frozenset(
    {
        "rounds",
        "eval_every",
        "checkpoint_every",
        "backend",
        "workers",
        "ray_address",
        "divergence_factor",
    }
)


def check_resumable(saved: ExperimentConfig, new: ExperimentConfig) -> None:
    """Refuse overrides that would make a resumed run a different experiment.

    Raises
    ------
    ConfigError
        Naming the first changed key, and listing those that may change.
    """
    if saved.run.rounds != new.run.rounds:
        for section in ("local", "server"):
            sched = getattr(getattr(new, section), "schedule_params", None)
            if getattr(sched, "uses_run_length", False):
                raise ConfigError(
                    "run.rounds",
                    f"cannot change when resuming: the {section} schedule decays over the "
                    f"run's rounds; set {section}.decay_rounds to extend such a run",
                )
    a, b = to_dict(saved), to_dict(new)
    for section in a:
        for key in {**a[section], **b[section]}:
            same = a[section].get(key, "<unset>") == b[section].get(key, "<unset>")
            if not same and not (section == "run" and key in RESUMABLE):
                raise ConfigError(
                    f"{section}.{key}",
                    "cannot change when resuming (it would make a different experiment); "
                    "start a new run instead",
                    sorted(f"run.{k}" for k in RESUMABLE),
                )


def resume_experiment(
    run: Path, overrides: list[str] | None = None, *, progress: bool = True
) -> SimulationResult:
    """Continue the run in folder ``run`` from its checkpoint, with ``run.*`` overrides
    (``run.rounds`` to go further); the continued history equals an uninterrupted one.

    The saved config is read leniently: folders written before each part had its own keys
    still resume.
    """
    rd = RunDir.open(run)
    saved_data = load_toml(rd.path / RunDir.CONFIG)
    saved = load_config(None, [], saved_data, strict=False)
    cfg = load_config(None, overrides or [], saved_data, strict=False)
    check_resumable(saved, cfg)
    if saved.privacy.target_epsilon is not None and cfg.run.rounds != saved.run.rounds:
        raise ConfigError(
            "run.rounds",
            "cannot change when resuming a run whose noise was calibrated to "
            "privacy.target_epsilon over its rounds; start a new run instead",
        )
    return run_experiment(cfg, run_dir=rd, resume=True, progress=progress)


@dataclass(frozen=True)
class TheoryReport:
    """The problem's constants and each method's theoretical step size for a config.

    Attributes
    ----------
    dataset, num_clients, dim
        What the constants are of.
    constants
        ``(name, value)``: ``L``, ``L_max``, ``L_tilde``, ``mu``, ``L / mu``, and the
        compressor's ``omega`` and ``alpha`` when one is configured.
    steps
        ``(method, step size or None, why not)`` for every method that has a theorem.
    """

    dataset: str
    num_clients: int
    dim: int
    constants: tuple[tuple[str, float], ...]
    steps: tuple[tuple[str, float | None, str], ...]


def theory_report(cfg: ExperimentConfig) -> TheoryReport:
    """Smoothness constants of ``cfg``'s problem and every method's theoretical step size.

    Raises
    ------
    ConfigError
        When the problem's smoothness is not known (a model other than linear/logistic).
    """
    problem = build_problem(cfg, SeedStreams(cfg.run.seed))
    s = problem.smoothness()
    if s is None:
        raise ConfigError(
            "model.name",
            "smoothness is known only for the quadratic and for linear/logistic models",
            ["linear", "logistic"],
        )
    comp = build_compressor(cfg, problem.dim)
    down = build_downlink(cfg, problem.dim)
    constants = [
        ("L", s.L),
        ("L_max (of n w_i f_i)", s.L_max),
        ("L_tilde", s.L_tilde),
        ("mu", s.mu if s.mu is not None else math.nan),
        ("L / mu", s.condition_number),
    ]
    if comp is not None:
        shown = type(comp).__name__
        constants += [
            (f"omega of {shown}", comp.omega(problem.dim)),
            (f"alpha of {shown}", comp.alpha(problem.dim)),
        ]
    steps: list[tuple[str, float | None, str]] = []
    for name in ALGORITHMS.names():
        method = ALGORITHMS.get(name)
        if not method.has_theory_step():
            continue
        label = f"{name} (local lr)" if method.theory_bounds_local_step else name
        try:
            algo = method.from_params(
                method.Params(),
                local=build_local(cfg),
                compressor=comp,
                server_opt=ServerSGD(cfg.server.lr),
            )
            if down is not None and "downlink" in {f.name for f in dataclasses.fields(algo)}:
                algo = dataclasses.replace(algo, downlink=down)  # type: ignore[call-arg]
            steps.append((label, theory_step(algo, problem), ""))
        except ValueError as e:  # a ConfigError, or a method refusing this config's parts
            why = f"{e.field} {e.problem}" if isinstance(e, ConfigError) else str(e)
            steps.append((label, None, why))
    return TheoryReport(cfg.data.dataset, s.n, problem.dim, tuple(constants), tuple(steps))


@dataclass(frozen=True)
class OptimumReport:
    """``phloem fl optimum``: the exact solution of a config's strongly convex problem.

    ``f_star`` and ``grad_norm`` at ``x_star`` (float64, Newton), the ``iterations`` and
    ``seconds`` it took, the problem's ``dim`` and ``num_samples``, its smoothness ``L`` (global
    bound) and ``L_at_opt`` (``lambda_max`` of the Hessian at the optimum), and ``mu``."""

    dataset: str
    dim: int
    num_samples: int
    f_star: float
    grad_norm: float
    iterations: int
    seconds: float
    L: float
    L_at_opt: float
    mu: float
    x_star: tuple[float, ...]
    #: the cache file it was read from (checked: ``grad_norm`` recomputed there), else ``None``
    cached: str | None = None


def optimum_report(cfg: ExperimentConfig) -> OptimumReport:
    """Solve ``cfg``'s binary logistic problem exactly (see :meth:`ModelProblem.solve`), or
    read its checked optimum from the cache (``<cache>/optimum``, see
    :func:`~phloem.data.loaders.default_cache_dir`).

    Raises
    ------
    ConfigError
        Naming ``model.name`` for another model, ``model.l2`` when it is 0.
    """
    problem = build_problem(cfg, SeedStreams(cfg.run.seed))
    if not isinstance(problem, ModelProblem) or problem.task is not Task.BINARY:
        raise ConfigError(
            "model.name", "the exact optimum is computed for binary_logistic", ["binary_logistic"]
        )
    if problem.l2 <= 0:
        raise ConfigError("model.l2", "must be > 0: without it the minimiser may not exist")
    # build_problem solved it already (or read it from the cache), unless d is large
    opt = problem.optimum or problem.solve(cache=default_cache_dir() / "optimum")
    s = problem.smoothness()
    assert s is not None  # a linear model
    return OptimumReport(
        cfg.data.dataset, problem.dim, int(problem.num_samples.sum()), opt.f, opt.grad_norm,
        opt.iterations, opt.seconds, s.L, problem.hessian_norm(opt.x), s.mu or 0.0,
        tuple(float(v) for v in opt.x), None if opt.cached is None else str(opt.cached),
    )  # fmt: skip
