"""Plain-English explanations of a choice of SecAgg+ parameters (:class:`GraphParams`)."""

from __future__ import annotations

import math

import numpy as np

from phloem.core.errors import ConfigError
from phloem.secagg.graph.build import connectivity_failure_rate
from phloem.secagg.graph.search import GraphParams, ParamOrigin, setting_of

__all__ = ["explain"]


def explain(p: GraphParams, mc_trials: int = 0, gen: np.random.Generator | None = None) -> str:
    """A plain-English account of ``p``: conditions, probabilities, reasons.

    Parameters
    ----------
    p
        The parameters to explain.
    mc_trials
        If positive, also estimate by Monte Carlo how often the honest surviving clients'
        graph is disconnected (:func:`~phloem.secagg.graph.connectivity_failure_rate`).
    gen
        Generator for the Monte Carlo estimate; required when ``mc_trials > 0``.

    Returns
    -------
    str
        Several lines of text.
    """
    s = setting_of(p)
    k, t, n = p.num_shares, p.threshold, p.n
    graph = (
        "the complete graph (plain SecAgg)" if p.complete else "a randomly relabelled Harary graph"
    )
    lines = [
        f"Secure aggregation over n = {n} clients, designed for up to {s.c} corrupt "
        f"(corrupt = {p.corrupt:g}) and {s.d} dropped (dropout = {p.dropout:g}).",
        f"Each client shares its two secrets (mask seed, key) among k = {k} holders, "
        f"itself and {k - 1} neighbours on {graph}; any t = {t} shares reconstruct.",
        f"Security (target 2^-{p.sigma:g}): honest holders reveal at most one secret, "
        f"corrupt ones both, so the server learns an honest client's input only if "
        f"k + C >= 2t, C ~ Hypergeom({n - 1}, {s.c}, {k - 1}) its corrupt neighbours, "
        f"i.e. C >= {2 * t - k}. Union bound n * P = {_fmt(p.log2_security_failure)}: "
        f"{'met' if p.secure else 'NOT met'}.",
        f"Correctness (target 2^-{p.eta:g}): a client is unmasked if at least t of "
        f"its k - 1 neighbours survive (itself not counted); it fails if "
        f"D >= k - t = {k - t}, D ~ Hypergeom({n - 1}, {s.d}, {k - 1}) its dropped "
        f"neighbours. Union bound n * P = {_fmt(p.log2_correctness_failure)}: "
        f"{'met' if p.correct else 'NOT met'}.",
    ]
    lines.append(_why(p))
    if mc_trials > 0:
        if gen is None:
            raise ConfigError("gen", "a Monte Carlo estimate needs a generator", ["Generator"])
        rate = connectivity_failure_rate(n, k, p.dropout, p.corrupt, mc_trials, gen)
        lines.append(
            f"Connectivity (Monte Carlo, {mc_trials} trials): with {s.c} corrupt and "
            f"{s.d} dropped clients removed, the honest survivors' graph was disconnected "
            f"in {rate:.2%} of trials (a split would let the server learn partial sums)."
        )
    return "\n".join(lines)


def _why(p: GraphParams) -> str:
    k, t = p.num_shares, p.threshold
    s = setting_of(p)
    ts, sec, cor = s.margins(k) if k >= 3 else (np.zeros(0, dtype=np.int64),) * 3
    ok = ts[(sec >= 0) & (cor >= 0)]
    interval = f"[{ok[0]}, {ok[-1]}]" if ok.size else "empty"
    if p.origin is ParamOrigin.SMALLEST_K:
        return (
            f"Why: k = {k} is the smallest number of holders for which some t meets both "
            f"targets (cost per client grows with k); the feasible t are {interval}, and "
            f"t = {t} maximises the smaller of the two margins."
        )
    if p.origin is ParamOrigin.COMPLETE_FALLBACK:
        return (
            f"Why: no k < n = {p.n} meets both targets, so every client shares with "
            f"all others (plain SecAgg); t = {t} is the smallest threshold that is secure."
        )
    if p.origin is ParamOrigin.COMPLETE_REQUESTED:
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
