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
from scipy.stats import hypergeom  # a reference only: phloem.secagg does not import SciPy

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
from phloem.secagg.graph.search import _log_tail, _log_tails

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


# (population, successes, draws): draws from 2 to 2000, supports starting at 0 and above it,
# tails from 1 down to far below 1e-300 (e.g. 2000 of 5000 successes in 2000 draws)
TAIL_GRID = [
    (3, 1, 2),
    (10, 3, 2),
    (10, 9, 2),
    (20, 0, 7),
    (49, 5, 17),
    (99, 10, 32),
    (99, 10, 98),
    (99, 99, 50),
    (199, 20, 60),
    (499, 50, 95),
    (999, 100, 114),
    (999, 500, 600),
    (1999, 200, 300),
    (2000, 1000, 2000),
    (2999, 300, 2000),
    (3000, 2500, 2000),
    (9999, 1000, 145),
    (9999, 5000, 2000),
]


def test_log_tails_match_scipy() -> None:
    """Every ``ln P[X >= x]``, ``x = 0..draws + 1``, against SciPy's ``logsf(x - 1)``: exactly
    ``0.0`` up to the lowest point of the support and ``-inf`` above the highest, within
    ``1e-9`` relative in between, plus ``5e-10`` absolute for the tails that are nearly 1 (both
    sides carry the rounding of log-factorials near ``ln 10^4! ~ 8e4``, a few ``1e-11``)."""
    smallest = 0.0
    for population, successes, draws in TAIL_GRID:
        lowest = max(0, draws - (population - successes))
        highest = min(successes, draws)
        x = np.arange(draws + 2)
        want = np.asarray(hypergeom.logsf(x - 1, population, successes, draws), dtype=float)
        got = _log_tails(population, successes, draws)
        assert got.shape == want.shape
        assert np.all(got[: lowest + 1] == 0.0)
        assert np.all(got[highest + 1 :] == -math.inf)
        inside = slice(lowest + 1, highest + 1)
        np.testing.assert_allclose(got[inside], want[inside], rtol=1e-9, atol=5e-10)
        assert np.all(np.diff(got[: highest + 1]) <= 0)  # tails never grow with x
        if highest > lowest:
            smallest = min(smallest, float(got[highest]))
    assert smallest < math.log(1e-300)  # the grid does reach the extreme tails


@pytest.mark.parametrize(("population", "successes", "draws"), TAIL_GRID)
def test_log_tail_matches_scipy(population: int, successes: int, draws: int) -> None:
    lowest = max(0, draws - (population - successes))
    highest = min(successes, draws)
    points = {-3, -1, 0, 1, 2, lowest - 1, lowest, lowest + 1, highest - 1, highest, highest + 1}
    points |= {draws, draws + 1, draws + 5, *range(0, draws + 1, max(1, draws // 40))}
    table = _log_tails(population, successes, draws)
    for x in sorted(points):
        got = _log_tail(x, population, successes, draws)
        if x <= lowest:
            assert got == 0.0
        elif x > highest:
            assert got == -math.inf
        else:
            want = float(hypergeom.logsf(x - 1, population, successes, draws))
            assert got == pytest.approx(want, rel=1e-9, abs=5e-10)
            assert got == table[x]


# (dropout, corrupt, sigma, eta) -> {n: (k, t)}, from the SciPy-based search (scipy.stats.hypergeom
# logsf/logpmf) at commit 9343468, run before the tails were computed without SciPy (one entry
# changed since, by a fix to the search, not by the tails: see below)
CHOSEN_BY_SCIPY = {
    (0.1, 0.1, 40.0, 30.0): {
        5: (3, 2),
        10: (6, 4),
        50: (18, 12),
        100: (33, 22),
        200: (61, 41),
        300: (80, 54),
        400: (89, 60),
        500: (96, 65),
        1000: (115, 78),
        2000: (127, 86),
        5000: (139, 94),
        10000: (146, 99),
    },
    (0.05, 0.05, 40.0, 30.0): {
        5: (3, 2),
        10: (3, 2),
        50: (9, 6),
        100: (18, 12),
        200: (33, 22),
        300: (44, 30),
        400: (50, 34),
        500: (53, 36),
        1000: (63, 43),
        2000: (69, 47),
        5000: (72, 49),
        10000: (75, 51),
    },
    (0.2, 0.1, 40.0, 30.0): {
        5: (5, 3),  # the complete graph, as no k < 5 works
        10: (8, 5),
        50: (28, 17),
        100: (53, 32),
        200: (97, 59),
        300: (131, 81),
        400: (157, 98),
        500: (176, 110),
        1000: (231, 145),
    },
    (0.1, 0.2, 40.0, 30.0): {
        # SciPy's search said (4, 3); but with n = 5 the Harary graph for k = 4 gives one
        # client 4 neighbours, and at that client t = 3 misses the security target. Since
        # issue 10 security is evaluated at the client with the most holders
        5: (5, 4),
        10: (7, 5),
        50: (23, 17),
        100: (43, 32),
        200: (79, 58),
        300: (104, 76),
        400: (121, 88),
        500: (132, 96),
        1000: (163, 118),
    },
    (0.2, 0.2, 40.0, 30.0): {  # n = 5 is refused (too few clients)
        10: (9, 6),
        50: (33, 22),
        100: (63, 42),
        200: (123, 82),
        300: (173, 116),
        400: (210, 141),
        500: (241, 162),
        1000: (342, 230),
    },
    (0.1, 0.1, 20.0, 15.0): {
        5: (3, 2),
        10: (6, 4),
        50: (18, 12),
        100: (33, 22),
        200: (49, 33),
        300: (56, 38),
        400: (62, 42),
        500: (65, 44),
        1000: (74, 50),
    },
    (0.1, 0.1, 64.0, 40.0): {
        5: (3, 2),
        10: (6, 4),
        50: (18, 12),
        100: (33, 22),
        200: (63, 42),
        300: (89, 60),
        400: (104, 71),
        500: (117, 80),
        1000: (146, 100),
    },
    (0.3, 0.05, 40.0, 30.0): {
        5: (5, 3),  # the complete graph
        10: (9, 5),
        50: (35, 19),
        100: (68, 37),
        200: (127, 69),
        300: (172, 94),
        400: (209, 115),
        500: (244, 135),
        1000: (363, 204),
    },
    (0.0, 0.1, 40.0, 30.0): {
        5: (3, 2),
        10: (4, 3),
        50: (8, 7),
        100: (13, 12),
        200: (16, 15),
        300: (17, 16),
        400: (17, 16),
        500: (18, 17),
        1000: (18, 17),
    },
    (0.1, 0.0, 40.0, 30.0): {
        5: (3, 2),
        10: (5, 3),
        50: (13, 7),
        100: (23, 12),
        200: (35, 18),
        300: (39, 20),
        400: (43, 22),
        500: (43, 22),
        1000: (49, 25),
    },
    (0.15, 0.15, 10.0, 8.0): {
        5: (3, 2),
        10: (6, 4),
        50: (24, 16),
        100: (43, 29),
        200: (58, 39),
        300: (67, 45),
        400: (76, 51),
        500: (79, 53),
        1000: (94, 63),
    },
}


@pytest.mark.parametrize("targets", list(CHOSEN_BY_SCIPY))
def test_choose_matches_the_scipy_based_search(targets: tuple[float, float, float, float]) -> None:
    got = {}
    for n in CHOSEN_BY_SCIPY[targets]:
        params = choose_parameters(n, *targets)
        assert params.secure and params.correct
        got[n] = (params.num_shares, params.threshold)
    assert got == CHOSEN_BY_SCIPY[targets]


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


@pytest.mark.parametrize("targets", [(0.1, 0.1, 40.0, 30.0), (0.05, 0.2, 40.0, 30.0)])
def test_every_client_of_a_chosen_graph_meets_the_security_target(
    targets: tuple[float, float, float, float],
) -> None:
    """With odd n and odd k - 1 one Harary vertex has k + 1 holders: the choice must be secure
    at that client too (its own policy checks exactly its own k)."""
    from phloem.secagg.graph.search import security_failure_log2

    _, corrupt, sigma, _ = targets
    for n in range(5, 160, 2):
        try:
            params = choose_parameters(n, *targets)
        except ConfigError:
            continue
        graph = params.neighbours(list(range(n)), np.random.default_rng(n))
        for holders in {len(vs) + 1 for vs in graph.values()}:
            log2_p = security_failure_log2(n, holders, params.threshold, corrupt)
            assert log2_p <= -sigma, (n, params.num_shares, params.threshold, holders)
