"""The choice of SecAgg+ parameters ``(k, t)`` for ``n`` clients (Bell et al., CCS 2020).

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
complete graph. Tails are exact hypergeometric tails, summed from the pmf in log space with
:func:`math.lgamma` (no SciPy); probabilities are reported as ``log2`` of the union bound
(``-inf`` when the bad event is impossible).

A third requirement of Bell et al. is that the graph among honest surviving clients stays
connected, or the server would learn the sum of a smaller group. It is not part of the union
bound above; :func:`connectivity_failure_rate` estimates it by Monte Carlo and
:meth:`GraphParams.explain` reports the estimate on request.

The search needs only :mod:`math` and numpy, so choosing parameters, building graphs and
running rounds never import SciPy (only :mod:`~phloem.secagg.graph.build`'s connectivity
analysis does).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

import numpy as np

from phloem.core.errors import ConfigError
from phloem.secagg.graph._checks import check_bits, check_fraction, check_n, clients_in
from phloem.secagg.graph.build import complete_neighbours, harary_neighbours

__all__ = [
    "GraphParams",
    "ParamOrigin",
    "check_parameters",
    "choose_parameters",
    "most_holders",
    "security_failure_log2",
]

_LN2 = math.log(2.0)


def _log_factorials(values: np.ndarray) -> np.ndarray:
    """``ln(v!)`` for each non-negative integer ``v`` in ``values``, by :func:`math.lgamma`."""
    return np.array([math.lgamma(v + 1) for v in values.tolist()], dtype=np.float64)


def _log_pmf(population: int, successes: int, draws: int) -> tuple[int, np.ndarray]:
    """The lowest point ``lo`` of the support of ``X ~ Hypergeom(population, successes,
    draws)`` and ``ln P[X = x]`` for ``x = lo..hi``, ``hi`` the highest point.

    ``ln P[X = x] = ln C(K, x) + ln C(N - K, n - x) - ln C(N, n)`` (``N`` the population,
    ``K`` the successes, ``n`` the draws), each ``ln C(a, b) = ln a! - ln b! - ln (a - b)!``
    from :func:`math.lgamma`: exact up to rounding (absolute errors of a few ``1e-11`` at
    populations of ``10^4``, as SciPy's), so the log of a tail far below ``1e-300`` is still
    accurate to many digits.
    """
    failures = population - successes
    lowest = max(0, draws - failures)
    highest = min(successes, draws)
    x = np.arange(lowest, highest + 1)
    lf = math.lgamma
    constant = (
        lf(successes + 1)
        + lf(failures + 1)
        - lf(population + 1)
        + lf(draws + 1)
        + lf(population - draws + 1)
    )
    varying = (
        _log_factorials(x)
        + _log_factorials(successes - x)
        + _log_factorials(draws - x)
        + _log_factorials(failures - draws + x)
    )
    return lowest, constant - varying


def _log_tails(population: int, successes: int, draws: int) -> np.ndarray:
    """``ln P[X >= x]`` for ``x = 0..draws + 1``, ``X ~ Hypergeom(population, successes,
    draws)``, by log-sum-exp of the pmf (:func:`_log_pmf`) from the top of the support.

    ``0.0`` up to the lowest point of the support, ``-inf`` above the highest. One pmf
    evaluation gives every ``x``, which keeps the search over ``(k, t)`` fast.
    """
    lowest, log_pmf = _log_pmf(population, successes, draws)
    tails = np.full(draws + 2, -math.inf)
    accumulated = np.logaddexp.accumulate(log_pmf[::-1])[::-1]
    # rounding can put the log of a tail that is nearly 1 a few 1e-14 above 0; no probability
    # exceeds 1
    tails[lowest : lowest + log_pmf.size] = np.minimum(accumulated, 0.0)
    tails[: lowest + 1] = 0.0
    return tails


def _log_tail(x: int, population: int, successes: int, draws: int) -> float:
    """``ln P[X >= x]`` for ``X ~ Hypergeom(population, successes, draws)``: one entry of
    :func:`_log_tails` (``0.0`` for ``x`` up to the lowest point of the support, ``-inf``
    above the highest)."""
    lowest = max(0, draws - (population - successes))
    highest = min(successes, draws)
    if x <= lowest:
        return 0.0
    if x > highest:
        return -math.inf
    return float(_log_tails(population, successes, draws)[x])


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
        return clients_in(self.corrupt, self.n)

    @property
    def d(self) -> int:
        return clients_in(self.dropout, self.n)

    def most_holders(self, k: int) -> int:
        return most_holders(self.n, k)

    def log2_security_at(self, k: int, t: int) -> float:
        """``log2 min(1, n * P[C >= 2t - k])`` for a client with exactly ``k`` holders."""
        return _union_log2(self.n, _log_tail(2 * t - k, self.n - 1, self.c, k - 1))

    def log2_security(self, k: int, t: int) -> float:
        """The security failure of the graph for ``k``: at its client with the most holders."""
        return self.log2_security_at(self.most_holders(k), t)

    def log2_correctness(self, k: int, t: int) -> float:
        return _union_log2(self.n, _log_tail(k - t, self.n - 1, self.d, k - 1))

    def margins(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Candidate ``t = 2..k-1`` and their security and correctness margins in bits.

        A margin is ``-target - log2(n * p)``: non-negative iff the condition holds.
        """
        ts = np.arange(2, k)
        draws, top = k - 1, self.most_holders(k)  # security binds at the most holders
        with np.errstate(divide="ignore"):
            sec = self._log2n + _log_tails(self.n - 1, self.c, top - 1) / _LN2
            cor = self._log2n + _log_tails(self.n - 1, self.d, draws) / _LN2
        sec_t = sec[np.clip(2 * ts - top, 0, top)]
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
        from phloem.secagg.graph.explain import explain  # text, not needed to run a round

        return explain(self, mc_trials, gen)


def setting_of(params: GraphParams) -> _Setting:
    """The validated inputs ``params`` were evaluated with (for :mod:`.explain`)."""
    return _Setting(params.n, params.dropout, params.corrupt, params.sigma, params.eta)


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
    check_n(n)
    check_fraction("dropout", dropout)
    check_fraction("corrupt", corrupt)
    check_bits("sigma", sigma)
    check_bits("eta", eta)
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


def most_holders(n: int, k: int) -> int:
    """The most share holders (itself included) any client has in the graph of ``n`` clients
    for ``k``: ``k + 1`` for the one vertex of a Harary graph with odd ``n`` and odd ``k - 1``
    (see :mod:`.build`), ``n`` for the complete graph, else ``k``."""
    if k >= n:
        return n
    return k + 1 if n % 2 == 1 and (k - 1) % 2 == 1 else k


def security_failure_log2(n: int, holders: int, threshold: int, corrupt: float) -> float:
    """``log2`` of the union bound ``n * P[C >= 2t - k]`` for one client with exactly
    ``holders`` (``k``) share holders, itself included, in a round of ``n`` clients of which a
    fraction ``corrupt`` is corrupt (what a client checks about itself; see the module
    docstring). ``-inf`` when the bad event is impossible.
    """
    s = _setting(n, 0.0, corrupt, 1.0, 1.0)
    return s.log2_security_at(holders, threshold)
