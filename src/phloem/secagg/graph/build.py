"""SecAgg+ neighbour graphs: who holds whose shares, and whether the survivors stay connected.

The graph
---------
:func:`harary_neighbours` takes the Harary graph ``H(k - 1, n)`` -- the ``(k - 1)``-connected
graph on ``n`` vertices with the fewest edges: each vertex on a ring is joined to the
``(k - 1) // 2`` nearest on each side, plus a diametric edge when ``k - 1`` is odd -- and
relabels its vertices with a uniformly random permutation drawn from the injected generator.
Seen from one client, its ``k - 1`` neighbours are then a uniform random subset of the other
``n - 1`` clients, drawn without replacement, and independent of which clients the adversary
corrupted or which will drop out (both fixed before the permutation is drawn). That is the
model below; Bell et al. (Sec. 3-4) use an Erdős-Rényi graph and binomial tails instead, which
gives the same conditions with slightly looser numbers.

:func:`complete_neighbours` is the graph of plain SecAgg. :func:`components_after_dropout` and
:func:`connectivity_failure_rate` check Bell et al.'s third requirement (the honest surviving
clients stay connected); they are analysis tools, not part of a round, so SciPy's sparse graphs
are imported only when they are called.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from phloem.core.errors import ConfigError
from phloem.secagg.graph._checks import check_fraction, check_n, clients_in

__all__ = [
    "complete_neighbours",
    "components_after_dropout",
    "connectivity_failure_rate",
    "harary_neighbours",
]


def _check_ids(ids: Sequence[int]) -> list[int]:
    out = [int(i) for i in ids]
    seen: set[int] = set()
    for i in out:
        if i in seen:
            raise ConfigError("ids", f"client id {i} appears more than once", ["distinct ints"])
        seen.add(i)
    return out


def _harary_edges(n: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Undirected edges ``(a, b)``, ``a != b``, of the Harary graph ``H(m, n)``, ``m <= n - 2``."""
    pos = np.arange(n)
    src = [pos] * (m // 2)
    dst = [(pos + off) % n for off in range(1, m // 2 + 1)]
    if m % 2 == 1:
        if n % 2 == 0:
            half = np.arange(n // 2)
            src.append(half)
            dst.append(half + n // 2)
        else:
            # Harary's construction for odd m and odd n: i ~ i + (n + 1) / 2 for
            # i = 0..(n - 1) / 2, which leaves vertex 0 with degree m + 1.
            half = np.arange((n + 1) // 2)
            src.append(half)
            dst.append((half + (n + 1) // 2) % n)
    if not src:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    return np.concatenate(src), np.concatenate(dst)


def _adjacency(labels: np.ndarray, a: np.ndarray, b: np.ndarray) -> dict[int, tuple[int, ...]]:
    """Sorted neighbour tuples of every label, from undirected edges between positions."""
    src = np.concatenate([labels[a], labels[b]])
    dst = np.concatenate([labels[b], labels[a]])
    order = np.lexsort((dst, src))
    src, dst = src[order], dst[order]
    out: dict[int, tuple[int, ...]] = {int(v): () for v in np.sort(labels)}
    if src.size:
        starts = np.flatnonzero(np.r_[True, src[1:] != src[:-1]])
        for s, block in zip(src[starts].tolist(), np.split(dst, starts[1:]), strict=True):
            out[s] = tuple(block.tolist())
    return out


def complete_neighbours(ids: Sequence[int]) -> dict[int, tuple[int, ...]]:
    """The complete graph (plain SecAgg): every client's neighbours are all the others.

    Parameters
    ----------
    ids
        Distinct client ids.

    Returns
    -------
    dict[int, tuple[int, ...]]
        ``id -> sorted ids of all other clients``.
    """
    order = sorted(_check_ids(ids))
    return {u: tuple(v for v in order if v != u) for u in order}


def harary_neighbours(
    ids: Sequence[int], num_shares: int, gen: np.random.Generator
) -> dict[int, tuple[int, ...]]:
    """A randomly relabelled Harary graph ``H(num_shares - 1, n)`` on the clients ``ids``.

    Parameters
    ----------
    ids
        Distinct client ids; ``n = len(ids)``.
    num_shares
        Share holders per client *including itself*, so ``num_shares - 1`` neighbours
        (one more for a single vertex when both ``num_shares - 1`` and ``n`` are odd). At
        least 2; ``num_shares >= n`` gives the complete graph.
    gen
        Draws the random relabelling (one permutation of ``n``).

    Returns
    -------
    dict[int, tuple[int, ...]]
        ``id -> sorted neighbour ids``, excluding the id itself; symmetric (``v`` is a
        neighbour of ``u`` iff ``u`` is a neighbour of ``v``).

    Raises
    ------
    ConfigError
        If ``num_shares < 2`` or the ids are not distinct.
    """
    if num_shares < 2:
        raise ConfigError(
            "num_shares", f"{num_shares} leaves a client no neighbour to share with", [">= 2"]
        )
    members = _check_ids(ids)
    n = len(members)
    if num_shares >= n:
        return complete_neighbours(members)
    # build on positions 0..n-1 and map back: ids may be any Python int (Flower's node ids
    # are uint64, beyond int64); the map is monotone, so neighbour tuples stay sorted
    order = sorted(members)
    a, b = _harary_edges(n, num_shares - 1)
    adj = _adjacency(gen.permutation(n), a, b)
    return {order[i]: tuple(order[j] for j in vs) for i, vs in adj.items()}


def components_after_dropout(neighbours: dict[int, tuple[int, ...]], removed: set[int]) -> int:
    """Number of connected components of the graph once the ``removed`` clients are deleted.

    Parameters
    ----------
    neighbours
        ``id -> neighbour ids``, as returned by :func:`harary_neighbours`.
    removed
        Clients to delete with their edges (dropped or corrupt); ids not in the graph are
        ignored.

    Returns
    -------
    int
        Components among the remaining clients (0 when none remains).
    """
    from scipy.sparse import csr_array
    from scipy.sparse.csgraph import connected_components

    alive = sorted(set(neighbours) - removed)
    if not alive:
        return 0
    index = {u: i for i, u in enumerate(alive)}
    rows: list[int] = []
    cols: list[int] = []
    for u in alive:
        for v in neighbours[u]:
            j = index.get(v)
            if j is not None:
                rows.append(index[u])
                cols.append(j)
    data = np.ones(len(rows), dtype=np.int8)
    graph = csr_array((data, (rows, cols)), shape=(len(alive), len(alive)))
    parts, _ = connected_components(graph, directed=False)
    return int(parts)


def connectivity_failure_rate(
    n: int,
    num_shares: int,
    dropout: float,
    corrupt: float,
    trials: int,
    gen: np.random.Generator,
) -> float:
    """Monte Carlo rate at which the honest surviving clients' graph falls apart.

    Each trial draws a relabelled Harary graph on ``n`` clients, marks ``floor(corrupt * n)``
    random clients corrupt and ``floor(dropout * n)`` *other* random clients dropped (disjoint
    sets: the worst case for connectivity), deletes both, and counts a failure when the rest
    has more than one component -- the server could then learn the sum of each part.

    Parameters
    ----------
    n, num_shares
        Number of clients and share holders per client (itself included).
    dropout, corrupt
        Fractions of clients that drop out and that the adversary controls.
    trials
        Number of independent graphs and failure sets, at least 1.
    gen
        Source of all randomness.

    Returns
    -------
    float
        Fraction of trials with a disconnected honest surviving graph.
    """
    check_n(n)
    check_fraction("dropout", dropout)
    check_fraction("corrupt", corrupt)
    if trials < 1:
        raise ConfigError("trials", f"{trials} trials estimate nothing", [">= 1"])
    if num_shares >= n:
        return 0.0  # a complete graph stays connected whatever is removed
    from scipy.sparse import csr_array
    from scipy.sparse.csgraph import connected_components

    removed_count = min(n, clients_in(corrupt, n) + clients_in(dropout, n))
    a, b = _harary_edges(n, num_shares - 1)
    failures = 0
    for _ in range(trials):
        # A fresh relabelling per trial; clients 0..removed_count-1 are the corrupt and
        # dropped ones. Fixed sets on a random relabelling are distributed exactly like
        # random sets on a random graph, and avoid building the dictionary each time.
        alive = gen.permutation(n) >= removed_count
        index = np.cumsum(alive) - 1
        keep = alive[a] & alive[b]
        size = int(alive.sum())
        graph = csr_array(
            (np.ones(int(keep.sum()), dtype=np.int8), (index[a[keep]], index[b[keep]])),
            shape=(size, size),
        )
        parts, _ = connected_components(graph, directed=False)
        failures += int(parts) > 1
    return failures / trials
