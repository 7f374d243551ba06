"""SecAgg+ neighbour graphs and the choice of their parameters (Bell et al., CCS 2020).

SecAgg (Bonawitz et al., CCS 2017) has every client share its two secrets -- the seed ``b_u``
of its self-mask and the key ``s_u^SK`` behind its pairwise masks -- with all ``n - 1`` others,
which costs ``O(n)`` per client and ``O(n^2)`` in all. SecAgg+ (Bell, Bonawitz, Gascón,
Lepoint, Raykova, CCS 2020) replaces the complete graph by a sparse random one: client ``u``
masks only against its neighbours and shares its secrets only with them. Following Flower we
count **k = num_shares** share holders of each client *including itself* (so ``k - 1``
neighbours) and call **t = threshold** the number of those shares that reconstruct a secret.
The complete graph, ``k = n``, is plain SecAgg.

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

The conditions
--------------
Let ``c = floor(corrupt * n)`` clients be corrupt and ``d = floor(dropout * n)`` drop out. Fix
an honest client ``u`` and let

- ``C ~ Hypergeom(population n - 1, successes c, draws k - 1)``: corrupt neighbours of ``u``;
- ``D ~ Hypergeom(population n - 1, successes d, draws k - 1)``: neighbours of ``u`` that drop.

*Security* (semi-honest server colluding with the corrupt clients). The server may ask for the
shares of ``b_u`` (if ``u`` looks alive) or of ``s_u^SK`` (if ``u`` looks dropped), but an
honest holder answers at most one of the two requests about ``u``, while a corrupt holder
reveals both. Of the ``k`` holders, ``k - C`` are honest (``u`` included) and ``C`` corrupt, so
the server can collect at most ``(k - C) + 2C = k + C`` shares of ``u``'s secrets; it needs
``t`` of each, so it unmasks ``u``'s individual input only if ``k + C >= 2t``. The other bad
event, corrupt holders alone reconstructing one secret (``C >= t``), is contained in the first
because ``2t - k <= t`` whenever ``t <= k``; so the binding per-client failure probability is

    p_s = P[C >= 2t - k],

and a union bound over the ``n`` clients asks ``n * p_s <= 2^-sigma``. In particular
``t > k / 2`` is necessary even without any corrupt client; :func:`check_parameters` refuses
``t <= k / 2`` outright.

*Correctness* (every client's mask can be removed). Whether ``u`` survived or dropped, the
server needs ``t`` shares from holders that are still online. Conservatively we do not count
``u`` itself, leaving ``k - 1 - D`` holders, so

    p_c = P[k - 1 - D < t] = P[D >= k - t],

and we ask ``n * p_c <= 2^-eta``. Hence ``t <= k - 1`` is needed as well.

For a fixed ``k``, ``p_s`` falls and ``p_c`` rises with ``t``, so the feasible thresholds form
an interval. :func:`choose_parameters` returns the smallest ``k`` whose interval is not empty
(each client's work grows with ``k``) and, within it, the ``t`` that maximises the smaller of
the two margins (in bits) below their targets; if no ``k < n`` works it falls back to the
complete graph. Tails are exact hypergeometric tails from :mod:`scipy.stats`; probabilities are
reported as ``log2`` of the union bound (``-inf`` when the bad event is impossible).

A third requirement of Bell et al. is that the graph among honest surviving clients stays
connected, or the server would learn the sum of a smaller group. It is not part of the union
bound above; :func:`connectivity_failure_rate` estimates it by Monte Carlo and
:meth:`GraphParams.explain` reports the estimate on request.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

import numpy as np
from scipy.sparse import csr_array
from scipy.sparse.csgraph import connected_components
from scipy.stats import hypergeom

from phloem.core.errors import ConfigError

__all__ = [
    "GraphParams",
    "ParamOrigin",
    "check_parameters",
    "choose_parameters",
    "complete_neighbours",
    "components_after_dropout",
    "connectivity_failure_rate",
    "harary_neighbours",
]

_LN2 = math.log(2.0)
# Tolerance for fractions such as 0.29 * 100 = 28.999999999999996 that mean a whole number.
_FRACTION_EPS = 1e-9


# --------------------------------------------------------------------------- graphs


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
    count, _ = connected_components(graph, directed=False)
    return int(count)


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
    _check_n(n)
    _check_fraction("dropout", dropout)
    _check_fraction("corrupt", corrupt)
    if trials < 1:
        raise ConfigError("trials", f"{trials} trials estimate nothing", [">= 1"])
    if num_shares >= n:
        return 0.0  # a complete graph stays connected whatever is removed
    removed_count = min(n, _count(corrupt, n) + _count(dropout, n))
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
        count, _ = connected_components(graph, directed=False)
        failures += int(count) > 1
    return failures / trials


# --------------------------------------------------------------------------- validation


def _check_n(n: int) -> None:
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 2:
        raise ConfigError("n", f"{n!r} is not a number of clients to aggregate", ["int >= 2"])


def _check_fraction(field: str, value: float) -> None:
    if not (math.isfinite(value) and 0.0 <= value < 1.0):
        raise ConfigError(field, f"{value!r} is not a fraction of the clients", ["[0, 1)"])


def _check_bits(field: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0.0):
        raise ConfigError(field, f"{value!r} is not a positive number of bits", ["> 0"])


def _count(fraction: float, n: int) -> int:
    """``floor(fraction * n)`` clients, at most the ``n - 1`` others of a given client."""
    return min(n - 1, math.floor(fraction * n + _FRACTION_EPS))


# --------------------------------------------------------------------------- tails


def _log_tail(x: int, population: int, successes: int, draws: int) -> float:
    """``ln P[X >= x]`` for ``X ~ Hypergeom(population, successes, draws)`` (scipy logsf)."""
    lowest = max(0, draws - (population - successes))
    highest = min(successes, draws)
    if x <= lowest:
        return 0.0
    if x > highest:
        return -math.inf
    return float(hypergeom.logsf(x - 1, population, successes, draws))


def _log_tails(population: int, successes: int, draws: int) -> np.ndarray:
    """``ln P[X >= x]`` for ``x = 0..draws + 1`` at once, by log-sum-exp of the pmf from the top.

    Same quantity as :func:`_log_tail` (scipy's logsf sums the pmf the same way), computed for
    every ``x`` with one pmf evaluation, which keeps the search over ``(k, t)`` fast.
    """
    x = np.arange(draws + 1)
    log_pmf = np.asarray(hypergeom.logpmf(x, population, successes, draws), dtype=np.float64)
    tails = np.logaddexp.accumulate(log_pmf[::-1])[::-1]
    tails[: max(0, draws - (population - successes)) + 1] = 0.0
    return np.concatenate([tails, [-math.inf]])


def _union_log2(n: int, log_p: float) -> float:
    """``log2 min(1, n * p)`` from ``ln p``."""
    if log_p == -math.inf:
        return -math.inf
    return min(0.0, math.log2(n) + log_p / _LN2)


@dataclass(frozen=True)
class _Setting:
    """The validated inputs shared by every evaluation of ``(k, t)``."""

    n: int
    dropout: float
    corrupt: float
    sigma: float
    eta: float

    @property
    def c(self) -> int:
        return _count(self.corrupt, self.n)

    @property
    def d(self) -> int:
        return _count(self.dropout, self.n)

    def log2_security(self, k: int, t: int) -> float:
        return _union_log2(self.n, _log_tail(2 * t - k, self.n - 1, self.c, k - 1))

    def log2_correctness(self, k: int, t: int) -> float:
        return _union_log2(self.n, _log_tail(k - t, self.n - 1, self.d, k - 1))

    def margins(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Candidate ``t = 2..k-1`` and their security and correctness margins in bits.

        A margin is ``-target - log2(n * p)``: non-negative iff the condition holds.
        """
        ts = np.arange(2, k)
        draws = k - 1
        with np.errstate(divide="ignore"):
            sec = self._log2n + _log_tails(self.n - 1, self.c, draws) / _LN2
            cor = self._log2n + _log_tails(self.n - 1, self.d, draws) / _LN2
        sec_t = sec[np.clip(2 * ts - k, 0, draws + 1)]
        cor_t = cor[np.clip(k - ts, 0, draws + 1)]
        return ts, -self.sigma - sec_t, -self.eta - cor_t

    @property
    def _log2n(self) -> float:
        return math.log2(self.n)


def _best_threshold(setting: _Setting, k: int) -> int | None:
    """The feasible ``t`` for ``k`` with the largest smaller margin, or None if none is."""
    ts, sec, cor = setting.margins(k)
    ok = (sec >= 0) & (cor >= 0)
    if not ok.any():
        return None
    feasible = ts[ok]
    worst = np.minimum(sec, cor)[ok]
    mid = 0.5 * (feasible[0] + feasible[-1])
    # Largest worst-case margin; ties (e.g. both bad events impossible) go to the middle of
    # the feasible interval, then to the smaller t.
    best = min(
        range(feasible.size),
        key=lambda i: (-worst[i], abs(feasible[i] - mid), feasible[i]),
    )
    return int(feasible[best])


# --------------------------------------------------------------------------- parameters


class ParamOrigin(Enum):
    """How a :class:`GraphParams` came about."""

    GIVEN = "given"
    """``(k, t)`` supplied by the user and evaluated by :func:`check_parameters`."""
    SMALLEST_K = "smallest_k"
    """:func:`choose_parameters` found the smallest ``k < n`` that meets both conditions."""
    COMPLETE_REQUESTED = "complete_requested"
    """:func:`choose_parameters` was asked for the complete graph (plain SecAgg)."""
    COMPLETE_FALLBACK = "complete_fallback"
    """No ``k < n`` met both conditions, so :func:`choose_parameters` used the complete graph."""


@dataclass(frozen=True)
class GraphParams:
    """A SecAgg(+) configuration ``(k, t)`` and how well it meets its targets.

    Attributes
    ----------
    n
        Number of clients.
    num_shares
        ``k``: share holders per client, itself included (``k - 1`` neighbours).
    threshold
        ``t``: shares that reconstruct a secret.
    dropout, corrupt
        Design fractions of dropped and corrupt clients.
    sigma, eta
        Targets: security fails with probability at most ``2^-sigma``, correctness with at
        most ``2^-eta``.
    complete
        Whether the graph is complete (``k = n``, plain SecAgg).
    log2_security_failure
        ``log2 min(1, n * P[C >= 2t - k])``; see the module docstring.
    log2_correctness_failure
        ``log2 min(1, n * P[D >= k - t])``.
    origin
        How ``(k, t)`` were obtained.
    """

    n: int
    num_shares: int
    threshold: int
    dropout: float
    corrupt: float
    sigma: float
    eta: float
    complete: bool
    log2_security_failure: float
    log2_correctness_failure: float
    origin: ParamOrigin = ParamOrigin.GIVEN

    @property
    def secure(self) -> bool:
        """Whether the security target ``2^-sigma`` is met."""
        return self.log2_security_failure <= -self.sigma

    @property
    def correct(self) -> bool:
        """Whether the correctness target ``2^-eta`` is met."""
        return self.log2_correctness_failure <= -self.eta

    def neighbours(
        self, ids: Sequence[int], gen: np.random.Generator
    ) -> dict[int, tuple[int, ...]]:
        """The neighbour graph for ``ids`` (complete, or a relabelled Harary graph)."""
        if self.complete:
            return complete_neighbours(ids)
        return harary_neighbours(ids, self.num_shares, gen)

    def explain(self, mc_trials: int = 0, gen: np.random.Generator | None = None) -> str:
        """A plain-English account of this choice: conditions, probabilities, reasons.

        Parameters
        ----------
        mc_trials
            If positive, also estimate by Monte Carlo how often the honest surviving
            clients' graph is disconnected (:func:`connectivity_failure_rate`).
        gen
            Generator for the Monte Carlo estimate; required when ``mc_trials > 0``.

        Returns
        -------
        str
            Several lines of text.
        """
        s = _Setting(self.n, self.dropout, self.corrupt, self.sigma, self.eta)
        k, t, n = self.num_shares, self.threshold, self.n
        graph = (
            "the complete graph (plain SecAgg)"
            if self.complete
            else "a randomly relabelled Harary graph"
        )
        lines = [
            f"Secure aggregation over n = {n} clients, designed for up to {s.c} corrupt "
            f"(corrupt = {self.corrupt:g}) and {s.d} dropped (dropout = {self.dropout:g}).",
            f"Each client shares its two secrets (mask seed, key) among k = {k} holders, "
            f"itself and {k - 1} neighbours on {graph}; any t = {t} shares reconstruct.",
            f"Security (target 2^-{self.sigma:g}): honest holders reveal at most one secret, "
            f"corrupt ones both, so the server learns an honest client's input only if "
            f"k + C >= 2t, C ~ Hypergeom({n - 1}, {s.c}, {k - 1}) its corrupt neighbours, "
            f"i.e. C >= {2 * t - k}. Union bound n * P = {_fmt(self.log2_security_failure)}: "
            f"{'met' if self.secure else 'NOT met'}.",
            f"Correctness (target 2^-{self.eta:g}): a client is unmasked if at least t of "
            f"its k - 1 neighbours survive (itself not counted); it fails if "
            f"D >= k - t = {k - t}, D ~ Hypergeom({n - 1}, {s.d}, {k - 1}) its dropped "
            f"neighbours. Union bound n * P = {_fmt(self.log2_correctness_failure)}: "
            f"{'met' if self.correct else 'NOT met'}.",
        ]
        lines.append(self._why(s))
        if mc_trials > 0:
            if gen is None:
                raise ConfigError("gen", "a Monte Carlo estimate needs a generator", ["Generator"])
            rate = connectivity_failure_rate(n, k, self.dropout, self.corrupt, mc_trials, gen)
            lines.append(
                f"Connectivity (Monte Carlo, {mc_trials} trials): with {s.c} corrupt and "
                f"{s.d} dropped clients removed, the honest survivors' graph was disconnected "
                f"in {rate:.2%} of trials (a split would let the server learn partial sums)."
            )
        return "\n".join(lines)

    def _why(self, s: _Setting) -> str:
        k, t = self.num_shares, self.threshold
        ts, sec, cor = s.margins(k) if k >= 3 else (np.zeros(0, dtype=np.int64),) * 3
        ok = ts[(sec >= 0) & (cor >= 0)]
        interval = f"[{ok[0]}, {ok[-1]}]" if ok.size else "empty"
        if self.origin is ParamOrigin.SMALLEST_K:
            return (
                f"Why: k = {k} is the smallest number of holders for which some t meets both "
                f"targets (cost per client grows with k); the feasible t are {interval}, and "
                f"t = {t} maximises the smaller of the two margins."
            )
        if self.origin is ParamOrigin.COMPLETE_FALLBACK:
            return (
                f"Why: no k < n = {self.n} meets both targets, so every client shares with "
                f"all others (plain SecAgg); t = {t} is the smallest threshold that is secure."
            )
        if self.origin is ParamOrigin.COMPLETE_REQUESTED:
            return (
                f"Why: the complete graph was requested; t = {t} is the smallest threshold "
                f"that is secure, which tolerates the most dropouts."
            )
        return f"Why: k = {k} and t = {t} were given; at this k the feasible t are {interval}."


def _fmt(log2_p: float) -> str:
    if log2_p == -math.inf:
        return "0 (the bad event is impossible)"
    if log2_p >= 0.0:
        return "1 (the union bound gives no guarantee)"
    return f"2^{log2_p:.1f}"


def _clients(count: int) -> str:
    return f"{count} client" if count == 1 else f"{count} clients"


def _params(s: _Setting, k: int, t: int, origin: ParamOrigin) -> GraphParams:
    return GraphParams(
        n=s.n,
        num_shares=k,
        threshold=t,
        dropout=s.dropout,
        corrupt=s.corrupt,
        sigma=s.sigma,
        eta=s.eta,
        complete=k >= s.n,
        log2_security_failure=s.log2_security(k, t),
        log2_correctness_failure=s.log2_correctness(k, t),
        origin=origin,
    )


def _setting(n: int, dropout: float, corrupt: float, sigma: float, eta: float) -> _Setting:
    _check_n(n)
    _check_fraction("dropout", dropout)
    _check_fraction("corrupt", corrupt)
    _check_bits("sigma", sigma)
    _check_bits("eta", eta)
    return _Setting(int(n), float(dropout), float(corrupt), float(sigma), float(eta))


def _complete(s: _Setting, origin: ParamOrigin) -> GraphParams:
    n, c, d = s.n, s.c, s.d
    # With k = n the neighbours are everyone: C = c and D = d exactly.
    t = (n + c) // 2 + 1
    params = _params(s, n, t, origin)
    if t > n - 1 and c == 0:
        raise ConfigError(
            "n",
            f"{n} clients are too few: a secure threshold must exceed n / 2, and a client must "
            f"be recoverable from the other n - 1",
            [">= 3"],
        )
    if t > n - 1:
        raise ConfigError(
            "corrupt",
            f"n = {n} clients is too few for corrupt = {s.corrupt:g} ({_clients(c)}): a secure "
            f"threshold must exceed (n + c) / 2, leaving no holder free to drop out",
            [f"corrupt < {(n - 2) / n:.3g}", "more clients"],
        )
    if not params.correct:
        d_max = n - 2 - (n + c) // 2
        raise ConfigError(
            "dropout",
            f"n = {n} clients is too few for dropout = {s.dropout:g} ({_clients(d)}) with "
            f"corrupt = {s.corrupt:g} ({_clients(c)}): security needs t >= {t}, but only "
            f"n - 1 - d = {n - 1 - d} holders besides the client itself are sure to survive",
            [f"dropout < {(d_max + 1) / n:.3g} (at most {d_max} dropped)", "more clients"],
        )
    return params


def choose_parameters(
    n: int,
    dropout: float = 0.1,
    corrupt: float = 0.1,
    sigma: float = 40.0,
    eta: float = 30.0,
    *,
    complete: bool = False,
) -> GraphParams:
    """The cheapest ``(num_shares, threshold)`` meeting both targets for ``n`` clients.

    Parameters
    ----------
    n
        Number of clients, at least 2.
    dropout, corrupt
        Fractions in ``[0, 1)`` of clients that may drop out and that the adversary controls.
    sigma, eta
        Security and correctness targets in bits (failure probabilities ``2^-sigma`` and
        ``2^-eta`` by a union bound over clients).
    complete
        Use the complete graph (plain SecAgg) instead of searching for a sparse one.

    Returns
    -------
    GraphParams
        With ``complete=False``: the smallest ``k < n`` for which some ``t`` meets both
        conditions, and the ``t`` with the largest smaller margin; the complete graph if no
        ``k < n`` works. With ``complete=True``: ``k = n`` and the smallest secure ``t``.

    Raises
    ------
    ConfigError
        On invalid arguments, or (fields ``corrupt``/``dropout``) when even the complete graph
        cannot meet both conditions: ``n`` is too small for these fractions.
    """
    s = _setting(n, dropout, corrupt, sigma, eta)
    if complete:
        return _complete(s, ParamOrigin.COMPLETE_REQUESTED)
    for k in range(3, s.n):  # k = 2 forces t = 2 > k - 1: never correct
        t = _best_threshold(s, k)
        if t is not None:
            return _params(s, k, t, ParamOrigin.SMALLEST_K)
    return _complete(s, ParamOrigin.COMPLETE_FALLBACK)


def check_parameters(
    n: int,
    num_shares: int,
    threshold: int,
    dropout: float = 0.1,
    corrupt: float = 0.1,
    sigma: float = 40.0,
    eta: float = 30.0,
) -> GraphParams:
    """Evaluate a user's ``(num_shares, threshold)`` against the two conditions.

    Parameters
    ----------
    n
        Number of clients.
    num_shares
        ``k``, share holders per client including itself: ``2 <= k <= n``.
    threshold
        ``t``, shares that reconstruct: ``k / 2 < t <= k``.
    dropout, corrupt, sigma, eta
        As in :func:`choose_parameters`.

    Returns
    -------
    GraphParams
        The probabilities say how far each target is met (``.secure``, ``.correct``).

    Raises
    ------
    ConfigError
        Naming ``num_shares`` or ``threshold`` when a hard condition fails: ``k`` outside
        ``[2, n]``, ``t`` outside ``[2, k]``, or ``2t <= k`` (then the server alone can
        collect ``t`` shares of both secrets of a client and unmask it).
    """
    s = _setting(n, dropout, corrupt, sigma, eta)
    if not 2 <= num_shares <= s.n:
        raise ConfigError(
            "num_shares",
            f"{num_shares} holders per client is impossible with n = {s.n}",
            [f"2..{s.n}"],
        )
    if not 2 <= threshold <= num_shares:
        raise ConfigError(
            "threshold",
            f"{threshold} is not a threshold for {num_shares} holders",
            [f"2..{num_shares}"],
        )
    if 2 * threshold <= num_shares:
        raise ConfigError(
            "threshold",
            f"t = {threshold} <= k / 2 = {num_shares / 2:g}: the server could collect t shares "
            f"of both a client's mask seed and its key from honest holders and unmask it",
            [f"{num_shares // 2 + 1}..{num_shares}"],
        )
    return _params(s, num_shares, threshold, ParamOrigin.GIVEN)
