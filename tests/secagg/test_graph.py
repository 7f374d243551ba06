"""Tests for :mod:`phloem.secagg.graph`.

The references are deliberately slow and obvious: hypergeometric tails as exact fractions of
binomial coefficients, the smallest feasible ``k`` by exhaustive search over all ``(k, t)``
with those fractions, graph connectivity by breadth-first search, and the security condition
``k + C >= 2t`` against an enumeration of what the server can collect from honest and corrupt
holders. Statistics use fixed seeds and allow ``Z = 5`` standard errors.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phloem.core.errors import ConfigError
from phloem.secagg.graph import (
    GraphParams,
    ParamOrigin,
    check_parameters,
    choose_parameters,
    complete_neighbours,
    components_after_dropout,
    connectivity_failure_rate,
    harary_neighbours,
)

Z = 5.0


# --------------------------------------------------------------------------- references


def tail_exact(x: int, population: int, successes: int, draws: int) -> Fraction:
    """P[X >= x], X ~ Hypergeom(population, successes, draws), as an exact fraction."""
    total = math.comb(population, draws)
    hits = sum(
        math.comb(successes, j) * math.comb(population - successes, draws - j)
        for j in range(max(x, 0), draws + 1)
    )
    return Fraction(hits, total)


def log2_union(n: int, p: Fraction) -> float:
    if p == 0:
        return -math.inf
    return min(0.0, math.log2(n) + math.log2(p.numerator) - math.log2(p.denominator))


def exact_logs(n: int, k: int, t: int, dropout: float, corrupt: float) -> tuple[float, float]:
    c, d = math.floor(corrupt * n + 1e-9), math.floor(dropout * n + 1e-9)
    sec = log2_union(n, tail_exact(2 * t - k, n - 1, c, k - 1))
    cor = log2_union(n, tail_exact(k - t, n - 1, d, k - 1))
    return sec, cor


def components_bfs(neighbours: dict[int, tuple[int, ...]], removed: set[int]) -> int:
    alive = set(neighbours) - removed
    seen: set[int] = set()
    count = 0
    for start in alive:
        if start in seen:
            continue
        count += 1
        queue = deque([start])
        seen.add(start)
        while queue:
            u = queue.popleft()
            for v in neighbours[u]:
                if v in alive and v not in seen:
                    seen.add(v)
                    queue.append(v)
    return count


def server_gets_both(k: int, c: int, t: int) -> bool:
    """Enumerate the server's best use of ``k - c`` honest holders (one share each) and ``c``
    corrupt holders (both shares): can it collect ``t`` shares of each of the two secrets?"""
    honest = k - c
    return any(c + a >= t and c + (honest - a) >= t for a in range(honest + 1))


# --------------------------------------------------------------------------- graphs


def check_harary(graph: dict[int, tuple[int, ...]], ids: list[int], num_shares: int) -> None:
    n, m = len(ids), num_shares - 1
    assert sorted(graph) == sorted(ids)
    for u, nbrs in graph.items():
        assert u not in nbrs
        assert list(nbrs) == sorted(set(nbrs))
        for v in nbrs:
            assert u in graph[v]
    degrees = sorted(len(v) for v in graph.values())
    if m >= n - 1:
        assert degrees == [n - 1] * n
    elif m % 2 == 1 and n % 2 == 1:
        assert degrees == [m] * (n - 1) + [m + 1]
    else:
        assert degrees == [m] * n
    if m < n - 1:
        assert sum(degrees) // 2 == math.ceil(m * n / 2)  # Harary: the fewest edges possible


@given(n=st.integers(2, 40), num_shares=st.integers(2, 45), seed=st.integers(0, 2**32 - 1))
@settings(max_examples=150, deadline=None)
def test_harary_structure(n: int, num_shares: int, seed: int) -> None:
    ids = [7 * i + 3 for i in range(n)]
    graph = harary_neighbours(ids, num_shares, np.random.default_rng(seed))
    check_harary(graph, ids, num_shares)


@pytest.mark.parametrize(("n", "num_shares"), [(9, 5), (10, 4), (11, 4), (10, 5), (12, 6)])
def test_harary_is_m_connected(n: int, num_shares: int) -> None:
    """Removing any m - 1 vertices leaves it connected; some m vertices disconnect it."""
    m = num_shares - 1
    graph = harary_neighbours(range(n), num_shares, np.random.default_rng(1))
    for cut in itertools.combinations(range(n), m - 1):
        assert components_bfs(graph, set(cut)) == 1
    assert any(components_bfs(graph, set(cut)) > 1 for cut in itertools.combinations(range(n), m))


def test_harary_is_complete_when_shares_reach_n() -> None:
    ids = [5, 1, 9, 3]
    gen = np.random.default_rng(0)
    assert harary_neighbours(ids, 4, gen) == complete_neighbours(ids)
    assert harary_neighbours(ids, 99, gen) == complete_neighbours(ids)
    assert complete_neighbours(ids) == {1: (3, 5, 9), 3: (1, 5, 9), 5: (1, 3, 9), 9: (1, 3, 5)}


def test_harary_depends_only_on_the_generator() -> None:
    ids = list(range(30))
    a = harary_neighbours(ids, 7, np.random.default_rng(3))
    b = harary_neighbours(ids, 7, np.random.default_rng(3))
    c = harary_neighbours(ids, 7, np.random.default_rng(4))
    assert a == b
    assert a != c


def test_harary_neighbours_are_uniform_per_client() -> None:
    """After relabelling, each other client is a neighbour of client 0 w.p. (k-1)/(n-1)."""
    n, num_shares, draws = 12, 5, 3000
    gen = np.random.default_rng(11)
    counts = np.zeros(n)
    for _ in range(draws):
        counts[list(harary_neighbours(range(n), num_shares, gen)[0])] += 1
    p = (num_shares - 1) / (n - 1)
    assert counts[0] == 0
    assert np.all(np.abs(counts[1:] / draws - p) <= Z * math.sqrt(p * (1 - p) / draws))


def test_harary_rejects_bad_input() -> None:
    gen = np.random.default_rng(0)
    with pytest.raises(ConfigError) as err:
        harary_neighbours(range(5), 1, gen)
    assert err.value.field == "num_shares"
    with pytest.raises(ConfigError) as err:
        harary_neighbours([1, 2, 2], 2, gen)
    assert err.value.field == "ids"
    with pytest.raises(ConfigError):
        complete_neighbours([4, 4])


def test_components_after_dropout_matches_bfs() -> None:
    gen = np.random.default_rng(5)
    for n, k, removed_count in [(20, 3, 4), (30, 5, 10), (15, 2, 3), (25, 25, 24)]:
        graph = harary_neighbours(range(n), k, gen)
        for _ in range(20):
            removed = set(gen.permutation(n)[:removed_count].tolist())
            assert components_after_dropout(graph, removed) == components_bfs(graph, removed)
    path = {0: (1,), 1: (0, 2), 2: (1,)}
    assert components_after_dropout(path, {1}) == 2
    assert components_after_dropout(path, {0, 1, 2}) == 0
    assert components_after_dropout(path, {99}) == 1


def test_connectivity_failure_rate_matches_slow_estimate() -> None:
    n, k, trials = 40, 5, 400
    fast = connectivity_failure_rate(n, k, 0.1, 0.1, trials, np.random.default_rng(0))
    gen = np.random.default_rng(1)
    slow = 0
    for _ in range(trials):
        graph = harary_neighbours(range(n), k, gen)
        slow += components_bfs(graph, set(gen.permutation(n)[:8].tolist())) > 1
    p = slow / trials
    assert 0.05 < p < 0.95  # a regime where both estimates carry information
    assert abs(fast - p) <= Z * math.sqrt(2 * p * (1 - p) / trials)


def test_connectivity_of_chosen_parameters() -> None:
    params = choose_parameters(100)
    gen = np.random.default_rng(2)
    assert connectivity_failure_rate(100, params.num_shares, 0.1, 0.1, 50, gen) == 0.0
    assert connectivity_failure_rate(100, 100, 0.1, 0.1, 5, gen) == 0.0
    with pytest.raises(ConfigError):
        connectivity_failure_rate(100, 5, 0.1, 0.1, 0, gen)


# --------------------------------------------------------------------------- conditions


@pytest.mark.parametrize("k", range(2, 9))
def test_security_condition_matches_enumeration(k: int) -> None:
    for t in range(1, k + 1):
        for c in range(k):  # u itself is honest
            assert server_gets_both(k, c, t) == (k + c >= 2 * t)
            if c >= t:  # corrupt holders alone reconstructing is the smaller event
                assert k + c >= 2 * t


@pytest.mark.parametrize(
    ("n", "k", "t", "dropout", "corrupt"),
    [(20, 7, 5, 0.25, 0.15), (30, 12, 8, 0.2, 0.2), (50, 9, 6, 0.1, 0.3), (40, 40, 25, 0.1, 0.1)],
)
def test_probabilities_match_exact_combinatorics(
    n: int, k: int, t: int, dropout: float, corrupt: float
) -> None:
    params = check_parameters(n, k, t, dropout, corrupt, 40.0, 30.0)
    sec, cor = exact_logs(n, k, t, dropout, corrupt)
    for got, want in [(params.log2_security_failure, sec), (params.log2_correctness_failure, cor)]:
        if math.isinf(want):
            assert got == want
        else:
            assert got == pytest.approx(want, rel=1e-9, abs=1e-9)


@pytest.mark.parametrize(
    ("n", "frac", "sigma", "eta"),
    # small n: the supports decide; larger n and small targets: the tails decide
    [
        (10, 0.1, 40, 30),
        (30, 0.2, 40, 30),
        (40, 0.05, 40, 30),
        (50, 0.1, 40, 30),
        (80, 0.15, 10, 8),
        (120, 0.1, 10, 8),
        (200, 0.1, 20, 15),
    ],
)
def test_choose_finds_smallest_k_exhaustively(
    n: int, frac: float, sigma: float, eta: float
) -> None:
    params = choose_parameters(n, frac, frac, sigma, eta)

    def feasible(k: int, t: int) -> bool:
        sec, cor = exact_logs(n, k, t, frac, frac)
        return sec <= -sigma and cor <= -eta

    smallest = next((k for k in range(2, n) if any(feasible(k, t) for t in range(2, k + 1))), None)
    if smallest is None:
        assert params.complete
    else:
        assert params.num_shares == smallest
        assert feasible(smallest, params.threshold)
        assert params.origin is ParamOrigin.SMALLEST_K


@pytest.mark.parametrize("frac", [0.1, 0.05])
def test_choose_sanity_targets(frac: float) -> None:
    sizes = [10, 50, 100, 200, 500, 1000, 10000]
    chosen = {n: choose_parameters(n, frac, frac) for n in sizes}
    for n, p in chosen.items():
        assert p.secure and p.correct
        assert 2 * p.threshold > p.num_shares
        assert p.threshold <= p.num_shares - 1
        assert (p.n, p.dropout, p.corrupt, p.sigma, p.eta) == (n, frac, frac, 40.0, 30.0)
    assert chosen[100].num_shares <= 40
    assert chosen[1000].num_shares <= 200
    # logarithmic growth: ten times the clients costs far less than ten times the holders
    assert chosen[10000].num_shares <= 1.5 * chosen[1000].num_shares
    assert chosen[1000].num_shares <= chosen[10000].num_shares


def test_choose_falls_back_to_complete_graph() -> None:
    params = choose_parameters(6, 0.17, 0.17)
    assert params.complete and params.origin is ParamOrigin.COMPLETE_FALLBACK
    assert (params.num_shares, params.threshold) == (6, 4)
    assert "no k < n" in params.explain()


@pytest.mark.parametrize(("n", "frac"), [(10, 0.0), (100, 0.1), (51, 0.2)])
def test_choose_complete_graph(n: int, frac: float) -> None:
    params = choose_parameters(n, frac, frac, complete=True)
    c = math.floor(frac * n + 1e-9)
    assert params.complete and params.num_shares == n
    assert params.threshold == (n + c) // 2 + 1  # smallest t with 2t > n + c
    assert params.log2_security_failure == -math.inf
    assert params.log2_correctness_failure == -math.inf
    assert params.origin is ParamOrigin.COMPLETE_REQUESTED


def test_choose_refuses_too_few_clients() -> None:
    with pytest.raises(ConfigError) as err:
        choose_parameters(5, 0.2, 0.2)
    assert err.value.field == "dropout"
    with pytest.raises(ConfigError) as err:
        choose_parameters(10, 0.0, 0.9, complete=True)
    assert err.value.field == "corrupt"
    with pytest.raises(ConfigError) as err:
        choose_parameters(2, 0.0, 0.0)
    assert err.value.field == "n"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"n": 1}, "n"),
        ({"n": 10, "dropout": 1.0}, "dropout"),
        ({"n": 10, "corrupt": -0.1}, "corrupt"),
        ({"n": 10, "sigma": 0.0}, "sigma"),
        ({"n": 10, "eta": math.nan}, "eta"),
    ],
)
def test_choose_validates(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(ConfigError) as err:
        choose_parameters(**kwargs)  # type: ignore[arg-type]
    assert err.value.field == field


@pytest.mark.parametrize(
    ("k", "t", "field"),
    [
        (1, 1, "num_shares"),
        (11, 6, "num_shares"),
        (5, 1, "threshold"),
        (5, 6, "threshold"),
        (6, 3, "threshold"),
        (7, 3, "threshold"),
    ],
)
def test_check_parameters_hard_conditions(k: int, t: int, field: str) -> None:
    with pytest.raises(ConfigError) as err:
        check_parameters(10, k, t, 0.1, 0.1, 40.0, 30.0)
    assert err.value.field == field


def test_check_parameters_reports_soft_failure() -> None:
    weak = check_parameters(1000, 40, 25, 0.1, 0.1, 40.0, 30.0)
    assert not weak.secure and not weak.correct
    assert weak.origin is ParamOrigin.GIVEN and not weak.complete
    assert "NOT met" in weak.explain()
    chosen = choose_parameters(1000)
    again = check_parameters(1000, chosen.num_shares, chosen.threshold, 0.1, 0.1, 40.0, 30.0)
    assert (again.log2_security_failure, again.log2_correctness_failure) == (
        chosen.log2_security_failure,
        chosen.log2_correctness_failure,
    )
    assert again.secure and again.correct


def test_explain_and_neighbours() -> None:
    params = choose_parameters(100)
    text = params.explain()
    assert f"k = {params.num_shares}" in text and f"t = {params.threshold}" in text
    assert "smallest" in text and "Hypergeom(99, 10," in text
    assert "Monte Carlo" not in text
    with_mc = params.explain(mc_trials=10, gen=np.random.default_rng(0))
    assert "Monte Carlo, 10 trials" in with_mc and "0.00%" in with_mc
    with pytest.raises(ConfigError):
        params.explain(mc_trials=10)
    graph = params.neighbours(range(100), np.random.default_rng(0))
    check_harary(graph, list(range(100)), params.num_shares)
    full = GraphParams(
        5, 5, 3, 0.0, 0.0, 40.0, 30.0, True, -math.inf, -math.inf, ParamOrigin.GIVEN
    ).neighbours(range(5), np.random.default_rng(0))
    assert full == complete_neighbours(range(5))


@pytest.mark.parametrize("seed", range(5))
def test_uint64_ids_get_the_graph_drawn_on_positions(seed: int) -> None:
    """Ids are relabelled positions: the same seed draws the same graph on 0..n-1 (the
    Flower workflow passes its uint64 node ids straight to ``GraphParams.neighbours``)."""
    gen = np.random.default_rng(seed)
    ids = sorted({int(v) for v in gen.integers(0, 2**64 - 1, size=40, dtype=np.uint64)})
    for params in (check_parameters(len(ids), 9, 7), choose_parameters(len(ids))):
        on_ids = params.neighbours(ids, np.random.default_rng(seed))
        on_positions = params.neighbours(range(len(ids)), np.random.default_rng(seed))
        mapped = {ids[i]: tuple(sorted(ids[j] for j in vs)) for i, vs in on_positions.items()}
        assert on_ids == mapped and list(on_ids) == list(mapped)


def test_harary_accepts_uint64_ids() -> None:
    """Flower's node ids are uint64; ids beyond int64 must work (and stay Python ints)."""
    ids = [2**64 - 1 - 7919 * i for i in range(30)]
    g = harary_neighbours(ids, 7, np.random.default_rng(0))
    assert set(g) == set(ids)
    assert all(u in g[v] for u in g for v in g[u])
    assert {len(vs) for vs in g.values()} == {6}
    assert all(type(v) is int for vs in g.values() for v in vs)
