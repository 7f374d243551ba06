"""The experiment configuration of ``phloem fl run``: frozen, validated, with units in names.

A TOML file has one table per section below; every key is optional. A section that picks a
registered part (``[algorithm] name``, ``[compressor] name``, ``[data] dataset`` and
``partition``, ``[model] name``, ``[local] solver``, ``[server] optimizer``, ``[sampling]
scheme``, ``[aggregation] name``) also carries that part's own keys, validated against the
part's ``Params``; ``phloem fl list`` shows every part with its keys and defaults. Unknown keys,
keys of a part that is not picked, and values outside a closed choice are rejected with the
allowed ones listed (see :func:`phloem.core.config.from_dict`).

Importing this module is cheap: the registries import their parts (and torch) only when a
config is validated.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

from phloem.core.config import Picks, Section, apply_overrides, from_dict, load_toml
from phloem.core.errors import ConfigError
from phloem.data.registries import DATASETS, PARTITIONS
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
from phloem.secagg.stages import Stage

__all__ = [
    "ANY_STAGE",
    "AggregationConfig",
    "AlgorithmConfig",
    "BackendName",
    "CompressorConfig",
    "DataConfig",
    "DownlinkConfig",
    "DtypeName",
    "ExperimentConfig",
    "LocalConfig",
    "LrRule",
    "ModelConfig",
    "PrivacyAccountantName",
    "PrivacyConfig",
    "PrivacyMechanism",
    "RunConfig",
    "SamplingConfig",
    "ServerConfig",
    "load_config",
    "parse_dropout_stage",
]


class DtypeName(StrEnum):
    FLOAT32 = "float32"
    FLOAT64 = "float64"


class LrRule(StrEnum):
    FIXED = "fixed"
    THEORY = "theory"


class BackendName(StrEnum):
    SERIAL = "serial"
    PROCESS = "process"
    RAY = "ray"
    VECTORISED = "vectorised"


class PrivacyMechanism(StrEnum):
    NONE = "none"
    GAUSSIAN = "gaussian"


class PrivacyAccountantName(StrEnum):
    RDP = "rdp"
    PRV = "prv"


#: the largest ``[privacy] noise_multiplier`` (Opacus's ``MAX_SIGMA``)
MAX_NOISE_MULTIPLIER = 1e6
#: the largest ``[privacy] target_epsilon`` calibrated to
MAX_TARGET_EPSILON = 100.0

#: ``[aggregation] dropout_stage`` for a uniformly random protocol stage
ANY_STAGE = "any"


def parse_dropout_stage(value: object, field: str = "aggregation.dropout_stage") -> Stage | None:
    """A protocol :class:`~phloem.secagg.Stage` (the one stage enum), or ``None`` for ``"any"``.

    Raises
    ------
    ConfigError
        Naming ``field`` and listing ``any`` and the stage names.
    """
    if value is None or value == ANY_STAGE:
        return None
    try:
        return Stage.parse(value, field)
    except ConfigError as e:
        raise ConfigError(field, e.problem, [ANY_STAGE, *(e.allowed or ())]) from None


_DEVICE = re.compile(r"cpu|cuda|cuda:[0-9]+")


def _positive(section: str, **values: float | int | None) -> None:
    for k, v in values.items():
        if v is not None and v <= 0:
            raise ValueError(f"{section}.{k} must be positive, got {v}")


@dataclass(frozen=True)
class DataConfig(Section):
    """``[data]``: what to learn from, and how it is split over ``num_clients`` clients.

    ``dataset`` and ``partition`` pick registered parts; their keys (``libsvm_name``, ``path``,
    ``dim``, ``L``, ``mu``, ``alpha``, ``shards_per_client``, ...) sit beside them.
    """

    dataset: Annotated[str, Picks(DATASETS, "dataset_params")] = "digits"
    dataset_params: Any = None
    num_clients: int = 100
    partition: Annotated[str, Picks(PARTITIONS, "partition_params")] = "dirichlet"
    partition_params: Any = None

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive("data", num_clients=self.num_clients)


@dataclass(frozen=True)
class ModelConfig(Section):
    """``[model]``: the model (ignored for the quadratic problem); ``l2`` regularisation."""

    name: Annotated[str, Picks(MODELS, "params")] = "logistic"
    params: Any = None
    l2: float = 0.0
    dtype: DtypeName = DtypeName.FLOAT32

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (math.isfinite(self.l2) and self.l2 >= 0):
            raise ValueError(f"model.l2 must be a finite number >= 0, got {self.l2}")


@dataclass(frozen=True)
class AlgorithmConfig(Section):
    """``[algorithm]``: the method and its own constants (empty: the paper's default)."""

    name: Annotated[str, Picks(ALGORITHMS, "params")] = "fedavg"
    params: Any = None


@dataclass(frozen=True)
class CompressorConfig(Section):
    """``[compressor]``: uplink compression (``none``: float32 vectors).

    ``scaled`` divides an unbiased compressor by ``omega + 1`` to make it contractive.
    """

    name: Annotated[str, Picks(COMPRESSORS, "params")] = "none"
    params: Any = None
    scaled: bool = False


@dataclass(frozen=True)
class DownlinkConfig(Section):
    """``[downlink]``: compression of the server's broadcast, for methods that compress it
    (``ef21_bc``); ``none``: float32. Same compressors and keys as ``[compressor]``."""

    name: Annotated[str, Picks(COMPRESSORS, "params")] = "none"
    params: Any = None
    scaled: bool = False


@dataclass(frozen=True)
class LocalConfig(Section):
    """``[local]``: the client's solver and its step size ``lr``; ``schedule`` (with its keys:
    ``warmup_rounds``, ``gamma``, ``min_factor``, ...) multiplies ``lr`` in round k
    (:mod:`phloem.fl.schedules`)."""

    solver: Annotated[str, Picks(LOCAL_SOLVERS, "params")] = "sgd"
    params: Any = None
    lr: float = 0.1
    schedule: Annotated[str, Picks(SCHEDULES, "schedule_params")] = "constant"
    schedule_params: Any = None

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive("local", lr=self.lr)


@dataclass(frozen=True)
class ServerConfig(Section):
    """``[server]``: the server optimiser; ``lr`` is the global step size (gamma).

    ``lr_rule = "theory"`` replaces ``lr`` by ``lr_scale`` times the largest step the method's
    convergence theorem allows (:meth:`phloem.fl.Algorithm.theory_step`; DCGD, DIANA, MARINA,
    EF21 on problems with known smoothness); for the local methods FedAvg and SCAFFOLD the
    theorem bounds the local step, so it replaces ``[local] lr`` instead. ``schedule`` (with its
    keys) multiplies ``lr`` in round k (:mod:`phloem.fl.schedules`).
    """

    optimizer: Annotated[str, Picks(SERVER_OPTIMIZERS, "params")] = "sgd"
    params: Any = None
    lr: float = 1.0
    schedule: Annotated[str, Picks(SCHEDULES, "schedule_params")] = "constant"
    schedule_params: Any = None
    lr_rule: LrRule = LrRule.FIXED
    lr_scale: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive("server", lr=self.lr, lr_scale=self.lr_scale)


@dataclass(frozen=True)
class SamplingConfig(Section):
    """``[sampling]``: which clients take part each round (``cohort_size``, ``rate``, ...)."""

    scheme: Annotated[str, Picks(SAMPLERS, "params")] = "uniform"
    params: Any = None


@dataclass(frozen=True)
class AggregationConfig(Section):
    """``[aggregation]``: how the server receives updates, and who drops out.

    ``name``: ``plain``, ``secagg`` (complete graph) or ``secagg+`` (sparse graph); a secure
    one takes the keys of :class:`phloem.secagg.SecAggSettings` (``num_shares``,
    ``threshold``, ``tolerate_dropout``, ``clip``, ...). ``dropout``: probability that a sampled
    client drops out in a round, at ``dropout_stage`` (``any``: a uniformly random protocol
    stage). Clients dropping before their masked input leave the round (also under ``plain``,
    so runs compare like for like).
    """

    name: Annotated[str, Picks(AGGREGATIONS, "params")] = "plain"
    params: Any = None
    dropout: float = 0.0
    dropout_stage: str = "any"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.dropout <= 1.0:
            raise ValueError(f"aggregation.dropout must lie in [0, 1], got {self.dropout}")
        parse_dropout_stage(self.dropout_stage)


@dataclass(frozen=True)
class PrivacyConfig:
    """``[privacy]``: client-level differential privacy (DP-FedAvg, :mod:`phloem.fl.privacy`).

    ``mechanism = "gaussian"`` clips each client's update to L2 norm ``clip`` and adds
    ``N(0, (noise_multiplier * clip)^2 I)`` to the sum (central with ``plain`` aggregation,
    as per-client shares under ``secagg``), dividing by the fixed ``q N``. Give either
    ``noise_multiplier`` or ``target_epsilon`` (the multiplier is then calibrated to spend it
    in ``run.rounds`` rounds). ``accountant`` (Opacus's ``rdp`` or ``prv``) reports the
    ``epsilon`` spent at ``delta`` after every round. Needs ``[sampling] scheme = "poisson"``
    and fedavg or fedprox.
    """

    mechanism: PrivacyMechanism = PrivacyMechanism.NONE
    clip: float = 1.0
    noise_multiplier: float | None = None
    target_epsilon: float | None = None
    delta: float = 1e-5
    accountant: PrivacyAccountantName = PrivacyAccountantName.RDP

    def __post_init__(self) -> None:
        if not (math.isfinite(self.clip) and self.clip > 0):
            raise ConfigError("privacy.clip", f"must be a positive finite number, got {self.clip}")
        z = self.noise_multiplier
        # z past Opacus's MAX_SIGMA (1e6) adds only noise and overflows its RDP analysis (1e160
        # raised OverflowError); a target epsilon past 100 promises no privacy, and Opacus's
        # calibration never ends for a huge one (its bisection cannot reach 1e300)
        if z is not None and not (math.isfinite(z) and 0 <= z <= MAX_NOISE_MULTIPLIER):
            raise ConfigError(
                "privacy.noise_multiplier", f"must lie in [0, {MAX_NOISE_MULTIPLIER:g}], got {z}"
            )
        eps = self.target_epsilon
        if eps is not None and not (math.isfinite(eps) and 0 < eps <= MAX_TARGET_EPSILON):
            raise ConfigError(
                "privacy.target_epsilon", f"must lie in (0, {MAX_TARGET_EPSILON:g}], got {eps}"
            )
        if not 0.0 < self.delta < 1.0:  # NaN fails this too
            raise ConfigError("privacy.delta", f"must lie in (0, 1), got {self.delta}")
        if self.mechanism is PrivacyMechanism.GAUSSIAN and (z is None) == (eps is None):
            raise ConfigError(
                "privacy.noise_multiplier",
                "give exactly one of privacy.noise_multiplier and privacy.target_epsilon "
                f"(got {'both' if z is not None else 'neither'})",
            )


@dataclass(frozen=True)
class RunConfig:
    """``[run]``: length, seed, evaluation, checkpoints and execution.

    ``checkpoint_every`` (100 by default; 0: only on interruption or divergence) bounds what a
    ``kill -9`` loses; ``divergence_factor`` stops a run whose training loss exceeds that
    factor times its first or best magnitude (0: only a non-finite loss or model).
    ``ray_address`` (``backend = "ray"``): the Ray cluster to join, ``"auto"`` or
    ``"ray://host:10001"``; empty starts a local one (:mod:`phloem.fl.ray_backend`).
    ``device``: where a model's data and local steps run, ``cpu``, ``cuda`` or ``cuda:N``
    (checked against the GPUs torch sees when the experiment is built)."""

    name: str = "run"
    rounds: int = 50
    seed: int = 0
    eval_every: int = 1
    full_eval: bool = False
    checkpoint_every: int = 100
    backend: BackendName = BackendName.SERIAL
    workers: int = 2
    threads: int = 1
    ray_address: str = ""
    out_dir: str = "runs"
    divergence_factor: float = 1e6
    device: str = "cpu"

    def __post_init__(self) -> None:
        if not _DEVICE.fullmatch(str(self.device)):
            raise ValueError(f"run.device must be cpu, cuda or cuda:N, got {self.device!r}")
        _positive("run", eval_every=self.eval_every, workers=self.workers, threads=self.threads)
        if self.rounds < 0 or self.seed < 0 or self.checkpoint_every < 0:
            raise ValueError("run.rounds, run.seed and run.checkpoint_every must be >= 0")
        if self.ray_address and self.backend is not BackendName.RAY:
            # it was ignored: the run went serial (or to worker processes) silently
            raise ConfigError(
                "run.ray_address",
                f"is only for run.backend = 'ray'; got backend '{self.backend}'",
                ["ray"],
            )
        if not (math.isfinite(self.divergence_factor) and self.divergence_factor >= 0):
            raise ValueError(
                f"run.divergence_factor must be a finite number >= 0 (0: off), got "
                f"{self.divergence_factor}"
            )


@dataclass(frozen=True)
class ExperimentConfig:
    """A whole experiment: one table per section."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    compressor: CompressorConfig = field(default_factory=CompressorConfig)
    downlink: DownlinkConfig = field(default_factory=DownlinkConfig)
    local: LocalConfig = field(default_factory=LocalConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    aggregation: AggregationConfig = field(default_factory=AggregationConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)
    run: RunConfig = field(default_factory=RunConfig)


def load_config(
    path: Path | None,
    overrides: Sequence[str] = (),
    base: Mapping[str, Any] | None = None,
    *,
    strict: bool = True,
) -> ExperimentConfig:
    """Read ``path`` (or start from ``base``), apply ``section.key=value`` overrides, validate.

    An override that switches a part (``algorithm.name=dcgd``) drops the file's keys of the
    part switched away from (see :func:`phloem.core.config.apply_overrides`).
    ``strict=False`` reads a config written by an older version, whose sections held every
    part's keys (see :func:`phloem.core.config.from_dict`).
    """
    data: dict[str, Any] = dict(base or {}) if path is None else load_toml(path)
    merged = apply_overrides(data, list(overrides), ExperimentConfig)
    return from_dict(ExperimentConfig, merged, strict=strict)
