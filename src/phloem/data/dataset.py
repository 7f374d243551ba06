"""In-memory datasets and federated partitions (numpy; no torch at import)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = ["ArrayDataset", "Partition", "TrainTest"]


@dataclass(frozen=True)
class ArrayDataset:
    """Features and targets held as numpy arrays.

    Parameters
    ----------
    x
        Features, ``float32``, shape ``(n, ...)`` (images as ``(n, C, H, W)`` scaled to [0, 1]).
    y
        Targets: ``int64`` class labels for classification, ``float32`` for regression.
    num_classes
        Number of classes, or ``None`` for regression.
    groups
        Optional natural owner of each row (e.g. FEMNIST writer index), ``int64`` shape ``(n,)``.
    """

    x: np.ndarray
    y: np.ndarray
    num_classes: int | None = None
    groups: np.ndarray | None = None

    def __post_init__(self) -> None:
        if len(self.x) != len(self.y):
            raise ValueError(f"x has {len(self.x)} rows but y has {len(self.y)}")
        if self.groups is not None and len(self.groups) != len(self.y):
            raise ValueError(f"groups has {len(self.groups)} rows but y has {len(self.y)}")

    def __len__(self) -> int:
        return len(self.y)

    @property
    def feature_shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.x.shape[1:])

    def subset(self, idx: np.ndarray) -> ArrayDataset:
        """Rows ``idx`` as a new dataset."""
        groups = None if self.groups is None else self.groups[idx]
        return ArrayDataset(self.x[idx], self.y[idx], self.num_classes, groups)


@dataclass(frozen=True)
class TrainTest:
    """A train/test pair with a name (what a loader returns)."""

    name: str
    train: ArrayDataset
    test: ArrayDataset


@dataclass(frozen=True)
class Partition:
    """Row indices of each client into a training set.

    ``clients[i]`` is the sorted ``int64`` index array of client ``i``. Clients never share a row.
    """

    clients: tuple[np.ndarray, ...]
    scheme: str = "custom"
    meta: dict[str, float | int | str] = field(default_factory=dict)

    @staticmethod
    def from_lists(clients: Sequence[np.ndarray], scheme: str = "custom") -> Partition:
        return Partition(tuple(np.sort(np.asarray(c, dtype=np.int64)) for c in clients), scheme)

    @property
    def num_clients(self) -> int:
        return len(self.clients)

    def sizes(self) -> np.ndarray:
        return np.array([len(c) for c in self.clients], dtype=np.int64)

    def label_counts(self, labels: np.ndarray, num_classes: int) -> np.ndarray:
        """``(num_clients, num_classes)`` matrix of label counts."""
        return np.stack([np.bincount(labels[c], minlength=num_classes) for c in self.clients])
