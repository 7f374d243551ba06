"""The experiment configuration of ``phloem fl run``: frozen, validated, with units in names.

A TOML file has one table per section below; every key is optional. Unknown keys and values
outside a closed choice are rejected with the allowed ones listed (see
:func:`phloem.core.config.from_dict`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from phloem.secagg.crypto.prg import PrgKind

__all__ = [
    "AggregationConfig",
    "AggregationName",
    "AlgorithmConfig",
    "AlgorithmName",
    "BackendName",
    "CompressorConfig",
    "CompressorName",
    "DataConfig",
    "DatasetName",
    "DropoutStage",
    "DtypeName",
    "ExperimentConfig",
    "LocalConfig",
    "LrRule",
    "ModelConfig",
    "ModelName",
    "PartitionScheme",
    "RunConfig",
    "SamplingConfig",
    "SamplingScheme",
    "ServerConfig",
    "ServerOptName",
    "SolverName",
]


class DatasetName(StrEnum):
    DIGITS = "digits"
    LIBSVM = "libsvm"
    MNIST = "mnist"
    FEMNIST = "femnist"
    CIFAR10 = "cifar10"
    QUADRATIC = "quadratic"
    SYNTHETIC = "synthetic"


class PartitionScheme(StrEnum):
    IID = "iid"
    DIRICHLET = "dirichlet"
    SHARDS = "shards"
    NATURAL = "natural"


class ModelName(StrEnum):
    LINEAR = "linear"
    LOGISTIC = "logistic"
    MLP = "mlp"
    CNN = "cnn"


class DtypeName(StrEnum):
    FLOAT32 = "float32"
    FLOAT64 = "float64"


class AlgorithmName(StrEnum):
    FEDAVG = "fedavg"
    FEDPROX = "fedprox"
    SCAFFOLD = "scaffold"
    DCGD = "dcgd"
    DIANA = "diana"
    MARINA = "marina"
    EF21 = "ef21"


class CompressorName(StrEnum):
    NONE = "none"
    IDENTITY = "identity"
    RANDK = "randk"
    TOPK = "topk"
    NATURAL = "natural"
    QSGD = "qsgd"
    BERNOULLI = "bernoulli"


class SolverName(StrEnum):
    SGD = "sgd"
    FULL = "full"


class ServerOptName(StrEnum):
    SGD = "sgd"
    ADAM = "adam"


class LrRule(StrEnum):
    FIXED = "fixed"
    THEORY = "theory"


class SamplingScheme(StrEnum):
    FULL = "full"
    UNIFORM = "uniform"
    POISSON = "poisson"


class AggregationName(StrEnum):
    PLAIN = "plain"
    SECAGG = "secagg"
    SECAGG_PLUS = "secagg+"


class DropoutStage(StrEnum):
    ANY = "any"
    SETUP = "setup"
    SHARE_KEYS = "share_keys"
    MASKED_INPUT = "masked_input"
    CONSISTENCY = "consistency"
    UNMASK = "unmask"


class BackendName(StrEnum):
    SERIAL = "serial"
    PROCESS = "process"


def _positive(section: str, **values: float | int | None) -> None:
    for k, v in values.items():
        if v is not None and v <= 0:
            raise ValueError(f"{section}.{k} must be positive, got {v}")


@dataclass(frozen=True)
class DataConfig:
    """``[data]``: what to learn from and how it is split over clients.

    ``libsvm_name`` picks the LIBSVM set (a9a, a8a, w8a, ...); ``path`` overrides the data folder;
    ``dim``/``L``/``mu``/``heterogeneity`` shape the quadratic; ``syn_alpha``/``syn_beta`` the
    FedProx Synthetic(alpha, beta) data; ``limit_train`` caps CIFAR-10 decoding.
    """

    dataset: DatasetName = DatasetName.DIGITS
    path: str | None = None
    libsvm_name: str = "a9a"
    num_clients: int = 100
    partition: PartitionScheme = PartitionScheme.DIRICHLET
    alpha: float = 0.5
    shards_per_client: int = 2
    min_client_size: int = 1
    test_fraction: float = 0.2
    dim: int = 10
    L: float = 1.0
    mu: float = 0.1
    heterogeneity: float = 1.0
    syn_alpha: float = 0.5
    syn_beta: float = 0.5
    limit_train: int | None = None

    def __post_init__(self) -> None:
        _positive(
            "data",
            num_clients=self.num_clients,
            alpha=self.alpha,
            dim=self.dim,
            L=self.L,
            mu=self.mu,
            shards_per_client=self.shards_per_client,
            limit_train=self.limit_train,
        )
        if self.mu > self.L:
            raise ValueError(f"data.mu ({self.mu}) must not exceed data.L ({self.L})")
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"data.test_fraction must be in (0, 1), got {self.test_fraction}")


@dataclass(frozen=True)
class ModelConfig:
    """``[model]``: the model (ignored for the quadratic problem)."""

    name: ModelName = ModelName.LOGISTIC
    hidden: tuple[int, ...] = (64,)
    l2: float = 0.0
    dtype: DtypeName = DtypeName.FLOAT32

    def __post_init__(self) -> None:
        if self.l2 < 0:
            raise ValueError(f"model.l2 must be >= 0, got {self.l2}")
        if any(h < 1 for h in self.hidden):
            raise ValueError(f"model.hidden sizes must be >= 1, got {list(self.hidden)}")


@dataclass(frozen=True)
class AlgorithmConfig:
    """``[algorithm]``: the method and its own constants (``None``: the paper's default)."""

    name: AlgorithmName = AlgorithmName.FEDAVG
    mu: float = 0.01  # FedProx proximal strength
    alpha: float | None = None  # DIANA shift step
    p: float | None = None  # MARINA synchronisation probability


@dataclass(frozen=True)
class CompressorConfig:
    """``[compressor]``: uplink compression; sparsifiers take ``k`` or ``ratio`` (k = ratio d)."""

    name: CompressorName = CompressorName.NONE
    k: int | None = None
    ratio: float | None = None
    levels: int = 4  # QSGD
    p: float = 0.5  # Bernoulli
    scaled: bool = False  # divide an unbiased compressor by (omega + 1) to make it contractive

    def __post_init__(self) -> None:
        _positive("compressor", k=self.k, ratio=self.ratio, levels=self.levels, p=self.p)
        if self.ratio is not None and self.ratio > 1:
            raise ValueError(f"compressor.ratio must be in (0, 1], got {self.ratio}")


@dataclass(frozen=True)
class LocalConfig:
    """``[local]``: the client's solver (``sgd``: minibatches; ``full``: full-gradient steps)."""

    solver: SolverName = SolverName.SGD
    lr: float = 0.1
    batch_size: int = 32
    epochs: int = 1
    steps: int | None = None

    def __post_init__(self) -> None:
        _positive(
            "local", lr=self.lr, batch_size=self.batch_size, epochs=self.epochs, steps=self.steps
        )


@dataclass(frozen=True)
class ServerConfig:
    """``[server]``: the server optimiser; ``lr`` is the global step size (gamma).

    ``lr_rule = "theory"`` replaces ``lr`` by ``lr_scale`` times the largest step the method's
    convergence theorem allows (see :mod:`phloem.fl.theory`; DCGD, DIANA, MARINA, EF21 on
    problems with known smoothness).
    """

    optimizer: ServerOptName = ServerOptName.SGD
    lr: float = 1.0
    lr_rule: LrRule = LrRule.FIXED
    lr_scale: float = 1.0
    momentum: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.99
    eps: float = 1e-3

    def __post_init__(self) -> None:
        _positive("server", lr=self.lr, eps=self.eps, lr_scale=self.lr_scale)


@dataclass(frozen=True)
class SamplingConfig:
    """``[sampling]``: which clients take part each round."""

    scheme: SamplingScheme = SamplingScheme.UNIFORM
    cohort_size: int = 10
    rate: float = 0.1

    def __post_init__(self) -> None:
        _positive("sampling", cohort_size=self.cohort_size, rate=self.rate)


@dataclass(frozen=True)
class AggregationConfig:
    """``[aggregation]``: how the server receives updates, and who drops out.

    ``name``: ``plain``, ``secagg`` (complete graph) or ``secagg+`` (sparse graph).
    ``dropout``: probability that a sampled client drops out in a round, at ``dropout_stage``
    (``any``: a uniformly random protocol stage). Clients dropping before their masked input
    leave the round (also under ``plain``, so runs compare like for like).
    ``num_shares``/``threshold``: ``k`` and ``t``, or empty to derive them from
    ``tolerate_dropout``, ``tolerate_corrupt``, ``sigma``, ``eta``.
    ``modulus_bits``, ``clip``, ``levels`` (empty: finest without overflow), ``prg``,
    ``consistency_check``: as in :class:`phloem.secagg.aggregate.SecAggSettings`.
    """

    name: AggregationName = AggregationName.PLAIN
    dropout: float = 0.0
    dropout_stage: DropoutStage = DropoutStage.ANY
    num_shares: int | None = None
    threshold: int | None = None
    tolerate_dropout: float = 0.1
    tolerate_corrupt: float = 0.1
    sigma: float = 40.0
    eta: float = 30.0
    modulus_bits: int = 32
    clip: float = 8.0
    levels: int | None = None
    prg: PrgKind = PrgKind.AES_CTR
    consistency_check: bool = False

    def __post_init__(self) -> None:
        _positive("aggregation", clip=self.clip, levels=self.levels, sigma=self.sigma, eta=self.eta)
        if not 0.0 <= self.dropout <= 1.0:
            raise ValueError(f"aggregation.dropout must lie in [0, 1], got {self.dropout}")
        if not 1 <= self.modulus_bits <= 64:
            raise ValueError(f"aggregation.modulus_bits must lie in 1..64, got {self.modulus_bits}")


@dataclass(frozen=True)
class RunConfig:
    """``[run]``: length, seed, evaluation, checkpoints and execution."""

    name: str = "run"
    rounds: int = 50
    seed: int = 0
    eval_every: int = 1
    full_eval: bool = False
    checkpoint_every: int = 0
    backend: BackendName = BackendName.SERIAL
    workers: int = 2
    threads: int = 1
    out_dir: str = "runs"

    def __post_init__(self) -> None:
        _positive("run", eval_every=self.eval_every, workers=self.workers, threads=self.threads)
        if self.rounds < 0 or self.seed < 0 or self.checkpoint_every < 0:
            raise ValueError("run.rounds, run.seed and run.checkpoint_every must be >= 0")


@dataclass(frozen=True)
class ExperimentConfig:
    """A whole experiment: one table per section."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    compressor: CompressorConfig = field(default_factory=CompressorConfig)
    local: LocalConfig = field(default_factory=LocalConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    aggregation: AggregationConfig = field(default_factory=AggregationConfig)
    run: RunConfig = field(default_factory=RunConfig)
