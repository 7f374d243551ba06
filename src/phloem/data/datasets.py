"""The built-in data sets as registered components (``[data] dataset = ...``).

Each is a thin class over a loader or generator of :mod:`phloem.data.loaders` and
:mod:`phloem.data.synthetic`: it declares its name, a description and its own parameters, and
loads. Adding a data set is one module with a class like these (decorated with
``@DATASETS.register``) and one import line in this package's ``populate`` list or in user code.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from phloem.core.registry import NoParams
from phloem.data import loaders, synthetic
from phloem.data.dataset import TrainTest
from phloem.data.registries import DATASETS
from phloem.data.synthetic import QuadraticData

__all__ = [
    "Cifar10",
    "Dataset",
    "Digits",
    "Femnist",
    "Libsvm",
    "Mnist",
    "Quadratic",
    "QuadraticParams",
    "Synthetic",
]


class Dataset(ABC):
    """A data set the simulator can learn from.

    ``load`` returns rows (a :class:`TrainTest`), or, for a generated problem that has no
    rows, its :class:`QuadraticData`.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    Params: ClassVar[type[Any]] = NoParams
    #: whether the training rows carry their natural owners (``groups``: writers, devices)
    has_owners: ClassVar[bool] = False

    @classmethod
    @abstractmethod
    def load(
        cls, params: Any, *, num_clients: int, rng: np.random.Generator
    ) -> TrainTest | QuadraticData:
        """Load or generate the data (``rng``: the run's data stream)."""


def _check_fraction(test_fraction: float) -> None:
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"data.test_fraction must be in (0, 1), got {test_fraction}")


def _positive(**values: float | int | None) -> None:
    for k, v in values.items():
        if v is not None and v <= 0:
            raise ValueError(f"data.{k} must be positive, got {v}")


@dataclass(frozen=True)
class DigitsParams:
    """``test_fraction``: the share of rows held out (stratified)."""

    test_fraction: float = 0.2

    def __post_init__(self) -> None:
        _check_fraction(self.test_fraction)


@DATASETS.register
class Digits(Dataset):
    name: ClassVar[str] = "digits"
    description: ClassVar[str] = "scikit-learn digits, bundled (1,797 8x8 images, 10 classes)"
    Params: ClassVar[type[DigitsParams]] = DigitsParams

    @classmethod
    def load(cls, params: DigitsParams, *, num_clients: int, rng: np.random.Generator) -> TrainTest:
        return loaders.load_digits(params.test_fraction, rng=rng)


@dataclass(frozen=True)
class LibsvmParams:
    """``libsvm_name``: a9a, a8a, w8a, ...; ``path``: a file or folder instead of the data
    folder; ``test_fraction``: held out when the set has no ``.t`` test file."""

    libsvm_name: str = "a9a"
    path: str | None = None
    test_fraction: float = 0.2

    def __post_init__(self) -> None:
        _check_fraction(self.test_fraction)


@DATASETS.register
class Libsvm(Dataset):
    name: ClassVar[str] = "libsvm"
    description: ClassVar[str] = "LIBSVM file (libsvm_name: a9a, a8a, w8a...) from the data folder"
    Params: ClassVar[type[LibsvmParams]] = LibsvmParams

    @classmethod
    def load(cls, params: LibsvmParams, *, num_clients: int, rng: np.random.Generator) -> TrainTest:
        if params.path is not None and Path(params.path).expanduser().is_file():
            # the user's own file: its own width (largest feature index), its own name, and a
            # test file beside it (<file>.t) if there is one; libsvm_name does not apply
            return loaders.load_libsvm(
                Path(params.path).expanduser(), test_fraction=params.test_fraction, rng=rng
            )
        try:
            return loaders.load_libsvm_pair(params.libsvm_name, path=params.path)
        except FileNotFoundError:
            return loaders.load_libsvm(
                params.libsvm_name, path=params.path, test_fraction=params.test_fraction, rng=rng
            )


@dataclass(frozen=True)
class PathParams:
    """``path``: a file or folder instead of the data folder."""

    path: str | None = None


@DATASETS.register
class Mnist(Dataset):
    name: ClassVar[str] = "mnist"
    description: ClassVar[str] = "MNIST IDX files from <data>/mnist/"
    Params: ClassVar[type[PathParams]] = PathParams

    @classmethod
    def load(cls, params: PathParams, *, num_clients: int, rng: np.random.Generator) -> TrainTest:
        return loaders.load_mnist(params.path)


@DATASETS.register
class Femnist(Dataset):
    name: ClassVar[str] = "femnist"
    description: ClassVar[str] = "LEAF FEMNIST sample from <data>/femnist/ (natural writer split)"
    Params: ClassVar[type[PathParams]] = PathParams
    has_owners: ClassVar[bool] = True

    @classmethod
    def load(cls, params: PathParams, *, num_clients: int, rng: np.random.Generator) -> TrainTest:
        return loaders.load_femnist(params.path)


@dataclass(frozen=True)
class Cifar10Params:
    """``path``: a file or folder instead of the data folder; ``limit_train``, ``limit_test``:
    decode at most this many training / test images (class-balanced)."""

    path: str | None = None
    limit_train: int | None = None
    limit_test: int | None = None

    def __post_init__(self) -> None:
        _positive(limit_train=self.limit_train, limit_test=self.limit_test)


@DATASETS.register
class Cifar10(Dataset):
    name: ClassVar[str] = "cifar10"
    description: ClassVar[str] = "CIFAR-10 from <data>/cifar10_jpeg/ or python batches"
    Params: ClassVar[type[Cifar10Params]] = Cifar10Params

    @classmethod
    def load(
        cls, params: Cifar10Params, *, num_clients: int, rng: np.random.Generator
    ) -> TrainTest:
        return loaders.load_cifar10(
            params.path, limit_train=params.limit_train, limit_test=params.limit_test
        )


@dataclass(frozen=True)
class QuadraticParams:
    """``dim``; the eigenvalues of the average Hessian span ``[mu, L]``; ``heterogeneity`` in
    [0, 1] mixes each client's Hessian between the average (0) and a random one (1)."""

    dim: int = 10
    L: float = 1.0
    mu: float = 0.1
    heterogeneity: float = 1.0

    def __post_init__(self) -> None:
        _positive(dim=self.dim, L=self.L, mu=self.mu)
        if self.mu > self.L:
            raise ValueError(f"data.mu ({self.mu}) must not exceed data.L ({self.L})")
        if not 0.0 <= self.heterogeneity <= 1.0:
            raise ValueError(f"data.heterogeneity must be in [0, 1], got {self.heterogeneity}")


@DATASETS.register
class Quadratic(Dataset):
    name: ClassVar[str] = "quadratic"
    description: ClassVar[str] = "generated quadratics with eigenvalues in [mu, L], known optimum"
    Params: ClassVar[type[QuadraticParams]] = QuadraticParams

    @classmethod
    def load(
        cls, params: QuadraticParams, *, num_clients: int, rng: np.random.Generator
    ) -> QuadraticData:
        p = params
        return synthetic.make_quadratic(num_clients, p.dim, p.L, p.mu, rng, p.heterogeneity)


@dataclass(frozen=True)
class SyntheticParams:
    """FedProx's ``Synthetic(syn_alpha, syn_beta)``; ``test_fraction`` held out per client."""

    syn_alpha: float = 0.5
    syn_beta: float = 0.5
    test_fraction: float = 0.2

    def __post_init__(self) -> None:
        _check_fraction(self.test_fraction)


@DATASETS.register
class Synthetic(Dataset):
    name: ClassVar[str] = "synthetic"
    description: ClassVar[str] = "generated FedProx Synthetic(syn_alpha, syn_beta) logistic data"
    Params: ClassVar[type[SyntheticParams]] = SyntheticParams
    has_owners: ClassVar[bool] = True

    @classmethod
    def load(
        cls, params: SyntheticParams, *, num_clients: int, rng: np.random.Generator
    ) -> TrainTest:
        return synthetic.make_synthetic(
            params.syn_alpha,
            params.syn_beta,
            num_clients,
            rng=rng,
            test_fraction=params.test_fraction,
        )
