"""Federated partitioners: split the rows of a training set among clients.

Every partitioner returns a :class:`~phloem.data.dataset.Partition` whose ``scheme`` names it,
is deterministic given its ``numpy.random.Generator``, and never returns an empty client: a
request that would leave one empty raises :class:`ValueError` saying which argument to change.

Schemes
-------
- :func:`iid` -- a uniformly random split into near-equal sizes.
- :func:`dirichlet` -- label skew: per class, the share of each client is drawn from
  ``Dir(alpha)`` (Hsu, Qi and Brown 2019, "Measuring the Effects of Non-Identical Data
  Distribution for Federated Visual Classification"; Yurochkin et al. 2019, "Bayesian
  Nonparametric Federated Learning of Neural Networks"). Small ``alpha`` -> few classes per
  client; large ``alpha`` -> close to iid.
- :func:`shards` -- pathological label skew: sort by label, cut into equal shards, give each
  client a few shards (McMahan et al. 2017, "Communication-Efficient Learning of Deep Networks
  from Decentralized Data").
- :func:`natural` -- one client per natural owner (e.g. a FEMNIST writer), kept whole.

Each scheme is also a registered :class:`Partitioner` (``[data] partition = ...`` in a config),
with its own parameters.
"""

from __future__ import annotations

import math
import operator
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from phloem.core.registry import NoParams
from phloem.data.dataset import ArrayDataset, Partition
from phloem.data.registries import PARTITIONS

__all__ = [
    "Dirichlet",
    "DirichletParams",
    "Iid",
    "Natural",
    "Partitioner",
    "Shards",
    "ShardsParams",
    "dirichlet",
    "iid",
    "natural",
    "shards",
]

IntArray = npt.NDArray[np.int64]


def _as_int(name: str, value: int) -> int:
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {value!r}") from None


def _check_num_clients(num_clients: int, num_samples: int) -> int:
    k = _as_int("num_clients", num_clients)
    if k < 1:
        raise ValueError(f"num_clients must be at least 1, got {k}")
    if k > num_samples:
        raise ValueError(
            f"num_clients={k} exceeds the number of rows ({num_samples}), so some client would "
            f"be empty; use num_clients between 1 and {num_samples}"
        )
    return k


def _as_labels(labels: npt.ArrayLike) -> IntArray:
    y = np.asarray(labels)
    if y.ndim != 1 or len(y) == 0:
        raise ValueError(f"labels must be a non-empty 1-D array, got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be integer class indices, got dtype {y.dtype}")
    if y.min() < 0:
        raise ValueError(f"labels must be non-negative class indices, found {int(y.min())}")
    return y.astype(np.int64)


def _split_by_owner(owner: IntArray, num_clients: int) -> list[IntArray]:
    """Row indices of each client, given the client (``owner``) of every row."""
    order = np.argsort(owner, kind="stable")
    sizes = np.bincount(owner, minlength=num_clients)
    return [part.astype(np.int64) for part in np.split(order, np.cumsum(sizes)[:-1])]


def _make(
    clients: Sequence[IntArray], scheme: str, meta: dict[str, float | int | str], fix: str
) -> Partition:
    for i, rows in enumerate(clients):
        if len(rows) == 0:
            raise ValueError(f"{scheme}: client {i} would receive no rows; {fix}")
    parts = tuple(np.sort(np.asarray(c, dtype=np.int64)) for c in clients)
    return Partition(parts, scheme, meta)


def iid(num_samples: int, num_clients: int, rng: np.random.Generator) -> Partition:
    """Split ``range(num_samples)`` uniformly at random into near-equal parts.

    Parameters
    ----------
    num_samples
        Number of rows to share out.
    num_clients
        Number of clients, in ``1..num_samples``.
    rng
        Generator of the random permutation.

    Returns
    -------
    Partition
        ``scheme="iid"``; sizes differ by at most one.
    """
    n = _as_int("num_samples", num_samples)
    if n < 1:
        raise ValueError(f"num_samples must be at least 1, got {n}")
    k = _check_num_clients(num_clients, n)
    parts = np.array_split(rng.permutation(n).astype(np.int64), k)
    return _make(parts, "iid", {}, "use fewer clients")


def dirichlet(
    labels: npt.ArrayLike,
    num_clients: int,
    alpha: float,
    rng: np.random.Generator,
    min_size: int = 1,
    max_tries: int = 100,
) -> Partition:
    """Label-skewed split: per class, client shares are drawn from ``Dir(alpha, ..., alpha)``.

    For each class the rows of that class are shuffled and cut at the cumulative shares of a
    fresh Dirichlet draw, so client ``i`` receives about ``p_{c,i}`` of class ``c``. The whole
    draw is repeated until every client holds at least ``min_size`` rows.

    Parameters
    ----------
    labels
        ``(n,)`` non-negative integer class of each row.
    num_clients
        Number of clients, in ``1..n``.
    alpha
        Concentration, ``> 0``: small (0.1) gives clients dominated by one or two classes,
        large (100) approaches an iid split.
    rng
        Generator of the shares and shuffles.
    min_size
        Minimum rows per client, ``>= 1``.
    max_tries
        How many full draws to attempt before giving up.

    Returns
    -------
    Partition
        ``scheme="dirichlet"``; ``meta`` holds ``alpha``, ``min_size`` and ``tries``.

    Raises
    ------
    ValueError
        For an argument out of range, or when ``max_tries`` draws all left a client with fewer
        than ``min_size`` rows (the message says which client and what to change).
    """
    y = _as_labels(labels)
    n = len(y)
    k = _check_num_clients(num_clients, n)
    if not (math.isfinite(alpha) and alpha > 0):
        raise ValueError(f"alpha must be a finite number > 0, got {alpha}")
    min_size = _as_int("min_size", min_size)
    if min_size < 1 or min_size * k > n:
        raise ValueError(
            f"min_size must be between 1 and n/num_clients = {n // k} "
            f"(n={n}, num_clients={k}), got {min_size}"
        )
    if _as_int("max_tries", max_tries) < 1:
        raise ValueError(f"max_tries must be at least 1, got {max_tries}")
    by_class = [np.flatnonzero(y == c) for c in np.unique(y)]
    concentration = np.full(k, float(alpha))
    owner = np.empty(n, dtype=np.int64)
    sizes = np.zeros(k, dtype=np.int64)
    for attempt in range(1, max_tries + 1):
        for rows in by_class:
            shares = rng.dirichlet(concentration)
            cuts = np.minimum((np.cumsum(shares)[:-1] * len(rows)).astype(np.int64), len(rows))
            counts = np.diff(np.concatenate(([0], cuts, [len(rows)])))
            owner[rng.permutation(rows)] = np.repeat(np.arange(k, dtype=np.int64), counts)
        sizes = np.bincount(owner, minlength=k)
        if sizes.min() >= min_size:
            meta: dict[str, float | int | str] = {
                "alpha": float(alpha),
                "min_size": min_size,
                "tries": attempt,
            }
            return _make(_split_by_owner(owner, k), "dirichlet", meta, "increase alpha")
    worst = int(np.argmin(sizes))
    raise ValueError(
        f"dirichlet: after {max_tries} draws client {worst} still had only {int(sizes[worst])} "
        f"rows (min_size={min_size}); increase alpha (now {alpha}), lower num_clients "
        f"(now {k}) or min_size, or raise max_tries"
    )


def shards(
    labels: npt.ArrayLike, num_clients: int, shards_per_client: int, rng: np.random.Generator
) -> Partition:
    """McMahan et al.'s split: sort rows by label, cut equal shards, deal shards to clients.

    Parameters
    ----------
    labels
        ``(n,)`` non-negative integer class of each row.
    num_clients
        Number of clients, ``>= 1``.
    shards_per_client
        Shards each client receives (2 in the FedAvg paper), ``>= 1``; ``num_clients *
        shards_per_client`` must not exceed ``n``.
    rng
        Generator of the order within a label and of the dealing.

    Returns
    -------
    Partition
        ``scheme="shards"``; each client sees about ``shards_per_client`` labels (one more when
        a shard straddles a label boundary).
    """
    y = _as_labels(labels)
    n = len(y)
    k = _check_num_clients(num_clients, n)
    per = _as_int("shards_per_client", shards_per_client)
    if per < 1:
        raise ValueError(f"shards_per_client must be at least 1, got {per}")
    total = k * per
    if total > n:
        raise ValueError(
            f"num_clients * shards_per_client = {total} shards exceeds the {n} rows, so some "
            f"shard would be empty; lower shards_per_client to at most {n // k} or use fewer "
            "clients"
        )
    shuffled = rng.permutation(n)
    by_label = shuffled[np.argsort(y[shuffled], kind="stable")].astype(np.int64)
    pieces = np.array_split(by_label, total)
    dealt = rng.permutation(total).reshape(k, per)
    clients = [np.concatenate([pieces[s] for s in dealt[i]]) for i in range(k)]
    meta: dict[str, float | int | str] = {"shards_per_client": per, "shard_size": n // total}
    return _make(clients, "shards", meta, "use fewer shards")


def natural(groups: npt.ArrayLike, client_ids: npt.ArrayLike | None = None) -> Partition:
    """One client per natural owner (e.g. FEMNIST writer), each owner's rows kept together.

    Parameters
    ----------
    groups
        ``(n,)`` owner of each row (e.g. :attr:`ArrayDataset.groups`); any sortable values.
    client_ids
        Which owners become clients, in this order; default: every distinct value of
        ``groups`` in sorted order. Rows of owners not listed belong to no client.

    Returns
    -------
    Partition
        ``scheme="natural"``; client ``i`` holds exactly the rows whose group is
        ``client_ids[i]``.

    Raises
    ------
    ValueError
        When ``groups`` is empty or ``client_ids`` repeats a value or names one that does not
        occur in ``groups`` (that client would be empty).
    """
    g = np.asarray(groups)
    if g.ndim != 1 or len(g) == 0:
        raise ValueError(f"groups must be a non-empty 1-D array, got shape {g.shape}")
    values, inverse = np.unique(g, return_inverse=True)
    per_group = _split_by_owner(inverse.astype(np.int64).ravel(), len(values))
    if client_ids is None:
        return _make(per_group, "natural", {"num_groups": len(values)}, "check groups")
    ids = np.asarray(client_ids)
    if ids.ndim != 1 or len(ids) == 0:
        raise ValueError(f"client_ids must be a non-empty 1-D array, got shape {ids.shape}")
    if len(np.unique(ids)) != len(ids):
        raise ValueError("client_ids repeats a value; each owner can be only one client")
    pos = np.clip(np.searchsorted(values, ids), 0, len(values) - 1)
    absent = ids[values[pos] != ids]
    if len(absent):
        first = int(np.flatnonzero(values[pos] != ids)[0])
        raise ValueError(
            f"natural: client {first} (group {absent[0].item()!r}) would be empty: "
            f"{len(absent)} of the client_ids do not occur in groups; pass only values present "
            "in groups (e.g. numpy.unique(groups))"
        )
    meta: dict[str, float | int | str] = {"num_groups": len(values)}
    return _make([per_group[int(p)] for p in pos], "natural", meta, "check client_ids")


class Partitioner(ABC):
    """A registered partition scheme (``[data] partition``) with its own parameters."""

    name: ClassVar[str]
    description: ClassVar[str]
    Params: ClassVar[type[Any]] = NoParams
    #: whether it needs the rows' natural owners (:attr:`ArrayDataset.groups`)
    needs_owners: ClassVar[bool] = False

    @classmethod
    @abstractmethod
    def split(
        cls, params: Any, train: ArrayDataset, num_clients: int, rng: np.random.Generator
    ) -> Partition:
        """Split ``train``'s rows among ``num_clients`` clients."""


@PARTITIONS.register
class Iid(Partitioner):
    name: ClassVar[str] = "iid"
    description: ClassVar[str] = "uniformly random, near-equal sizes"

    @classmethod
    def split(
        cls, params: NoParams, train: ArrayDataset, num_clients: int, rng: np.random.Generator
    ) -> Partition:
        return iid(len(train.y), num_clients, rng)


@dataclass(frozen=True)
class DirichletParams:
    """``alpha``: concentration (small: few classes per client); ``min_client_size``: rows
    every client must get (the draw is repeated until it does)."""

    alpha: float = 0.5
    min_client_size: int = 1

    def __post_init__(self) -> None:
        if not self.alpha > 0:
            raise ValueError(f"data.alpha must be positive, got {self.alpha}")


@PARTITIONS.register
class Dirichlet(Partitioner):
    name: ClassVar[str] = "dirichlet"
    description: ClassVar[str] = "label skew: per class, client shares drawn from Dir(alpha)"
    Params: ClassVar[type[DirichletParams]] = DirichletParams

    @classmethod
    def split(
        cls,
        params: DirichletParams,
        train: ArrayDataset,
        num_clients: int,
        rng: np.random.Generator,
    ) -> Partition:
        return dirichlet(train.y, num_clients, params.alpha, rng, min_size=params.min_client_size)


@dataclass(frozen=True)
class ShardsParams:
    """``shards_per_client``: label-sorted shards dealt to each client (2 in FedAvg's paper)."""

    shards_per_client: int = 2

    def __post_init__(self) -> None:
        if not self.shards_per_client > 0:
            raise ValueError(
                f"data.shards_per_client must be positive, got {self.shards_per_client}"
            )


@PARTITIONS.register
class Shards(Partitioner):
    name: ClassVar[str] = "shards"
    description: ClassVar[str] = "McMahan et al.'s label-sorted shards, a few per client"
    Params: ClassVar[type[ShardsParams]] = ShardsParams

    @classmethod
    def split(
        cls, params: ShardsParams, train: ArrayDataset, num_clients: int, rng: np.random.Generator
    ) -> Partition:
        return shards(train.y, num_clients, params.shards_per_client, rng)


@PARTITIONS.register
class Natural(Partitioner):
    name: ClassVar[str] = "natural"
    description: ClassVar[str] = "one client per natural owner (writer, device), kept whole"
    needs_owners: ClassVar[bool] = True

    @classmethod
    def split(
        cls, params: NoParams, train: ArrayDataset, num_clients: int, rng: np.random.Generator
    ) -> Partition:
        if train.groups is None:
            raise ValueError("the natural partition needs rows with owners (groups)")
        return natural(train.groups)
