"""Data sets and federated partitioning (numpy and scikit-learn only; no torch at import).

Loaders read local files and never download: they look in the folder named by
``PHLOEM_DATA_DIR`` or at an explicit path (see :func:`find_data_file`). Generators build
synthetic federated problems, and partitioners split a training set among clients.
"""

from phloem.data.catalog import CATALOG, verify_folder
from phloem.data.dataset import ArrayDataset, Partition, TrainTest
from phloem.data.loaders import (
    default_cache_dir,
    load_cifar10,
    load_digits,
    load_femnist,
    load_libsvm,
    load_libsvm_pair,
    load_mnist,
    read_idx,
    read_libsvm,
)
from phloem.data.partition import dirichlet, iid, natural, shards
from phloem.data.paths import data_dir, find_data_file, require_data
from phloem.data.synthetic import QuadraticData, make_quadratic, make_synthetic

__all__ = [
    "CATALOG",
    "ArrayDataset",
    "Partition",
    "QuadraticData",
    "TrainTest",
    "data_dir",
    "default_cache_dir",
    "dirichlet",
    "find_data_file",
    "iid",
    "load_cifar10",
    "load_digits",
    "load_femnist",
    "load_libsvm",
    "load_libsvm_pair",
    "load_mnist",
    "make_quadratic",
    "make_synthetic",
    "natural",
    "read_idx",
    "read_libsvm",
    "require_data",
    "shards",
    "verify_folder",
]
