"""Partitioners: exact cover of the rows, skew statistics with fixed seeds, errors for people."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phloem.data import Partition, dirichlet, iid, natural, shards


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _assert_exact_cover(part: Partition, n: int) -> None:
    """Every row in exactly one client, no client empty, indices sorted int64."""
    for c in part.clients:
        assert c.dtype == np.int64 and len(c) > 0
        assert np.all(np.diff(c) > 0)
    np.testing.assert_array_equal(np.sort(np.concatenate(part.clients)), np.arange(n))


def _mean_label_entropy(part: Partition, labels: np.ndarray, num_classes: int) -> float:
    counts = part.label_counts(labels, num_classes).astype(float)
    p = counts / counts.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.where(p > 0, p * np.log(p), 0.0).sum(axis=1)
    return float(h.mean())


LABELS = np.repeat(np.arange(10), 300)  # 3000 rows, 10 balanced classes


# ------------------------------------------------------------------------------------ iid


def test_iid_near_equal_sizes_and_exact_cover() -> None:
    part = iid(1003, 10, _rng())
    _assert_exact_cover(part, 1003)
    assert part.scheme == "iid"
    assert part.sizes().max() - part.sizes().min() <= 1


def test_partitions_are_deterministic_given_the_generator() -> None:
    makers: list[Callable[[np.random.Generator], Partition]] = [
        lambda r: iid(500, 7, r),
        lambda r: dirichlet(LABELS, 7, 0.5, r),
        lambda r: shards(LABELS, 7, 2, r),
    ]
    for make in makers:
        a, b, c = make(_rng(1)), make(_rng(1)), make(_rng(2))
        assert all(np.array_equal(x, y) for x, y in zip(a.clients, b.clients, strict=True))
        assert not all(np.array_equal(x, y) for x, y in zip(a.clients, c.clients, strict=True))


# ------------------------------------------------------------------------------------ dirichlet


def test_dirichlet_exact_cover_and_meta() -> None:
    part = dirichlet(LABELS, 20, 0.3, _rng(), min_size=5)
    _assert_exact_cover(part, len(LABELS))
    assert part.scheme == "dirichlet"
    assert part.sizes().min() >= 5
    assert part.meta["alpha"] == 0.3 and int(part.meta["tries"]) >= 1


def test_small_alpha_is_much_more_skewed_than_large_alpha() -> None:
    skewed = np.mean(
        [_mean_label_entropy(dirichlet(LABELS, 20, 0.1, _rng(s)), LABELS, 10) for s in range(3)]
    )
    mild = np.mean(
        [_mean_label_entropy(dirichlet(LABELS, 20, 100.0, _rng(s)), LABELS, 10) for s in range(3)]
    )
    assert mild > 0.95 * np.log(10)  # close to uniform labels per client
    assert skewed < 0.5 * mild


def test_dirichlet_gives_up_with_a_clear_message() -> None:
    labels = np.zeros(20, dtype=np.int64)
    with pytest.raises(ValueError, match=r"client \d+ still had only .* increase alpha"):
        dirichlet(labels, 10, 0.01, _rng(), min_size=2, max_tries=3)


# ------------------------------------------------------------------------------------ shards


def test_shards_exact_cover_and_few_labels_per_client() -> None:
    part = shards(LABELS, 50, 2, _rng())  # 100 shards of 30 rows: each inside one class
    _assert_exact_cover(part, len(LABELS))
    assert part.scheme == "shards" and part.meta["shard_size"] == 30
    distinct = (part.label_counts(LABELS, 10) > 0).sum(axis=1)
    assert distinct.max() <= 2
    assert np.all(part.sizes() == 60)


def test_shards_straddling_label_boundaries_add_at_most_one_label_each() -> None:
    labels = _rng(5).integers(0, 10, 997)
    part = shards(labels, 30, 3, _rng())
    _assert_exact_cover(part, 997)
    distinct = (part.label_counts(labels, 10) > 0).sum(axis=1)
    assert distinct.max() <= 2 * 3
    assert distinct.mean() <= 3 + 1.5


# ------------------------------------------------------------------------------------ natural


def test_natural_keeps_writers_whole() -> None:
    groups = _rng(3).integers(100, 140, 2000)
    part = natural(groups)
    _assert_exact_cover(part, 2000)
    assert part.num_clients == len(np.unique(groups))
    owners = [set(groups[c].tolist()) for c in part.clients]
    assert all(len(o) == 1 for o in owners)
    assert len(set().union(*owners)) == part.num_clients


def test_natural_with_selected_client_ids_and_string_groups() -> None:
    groups = np.array(["w2", "w1", "w2", "w3", "w1"])
    part = natural(groups, client_ids=["w3", "w1"])
    assert [c.tolist() for c in part.clients] == [[3], [1, 4]]
    with pytest.raises(ValueError, match=r"client 1 \(group 'w9'\) would be empty"):
        natural(groups, client_ids=["w1", "w9"])
    with pytest.raises(ValueError, match="repeats"):
        natural(groups, client_ids=["w1", "w1"])


# ------------------------------------------------------------------------------------ errors

BadCall = Callable[[], object]


@pytest.mark.parametrize(
    ("call", "words"),
    [
        (lambda: iid(10, 0, _rng()), "num_clients must be at least 1"),
        (lambda: iid(10, 11, _rng()), "num_clients=11 exceeds"),
        (lambda: iid(0, 1, _rng()), "num_samples"),
        (lambda: dirichlet(LABELS, 5, 0.0, _rng()), "alpha must be"),
        (lambda: dirichlet(LABELS, 5, -1.0, _rng()), "alpha must be"),
        (lambda: dirichlet(LABELS, 5, float("nan"), _rng()), "alpha must be"),
        (lambda: dirichlet(LABELS, 5, 1.0, _rng(), min_size=0), "min_size"),
        (lambda: dirichlet(LABELS, 5, 1.0, _rng(), min_size=700), "min_size"),
        (lambda: dirichlet(LABELS[:3], 4, 1.0, _rng()), "num_clients=4 exceeds"),
        (lambda: dirichlet(LABELS.astype(float), 5, 1.0, _rng()), "integer"),
        (lambda: dirichlet(LABELS - 1, 5, 1.0, _rng()), "non-negative"),
        (lambda: shards(LABELS, 5, 0, _rng()), "shards_per_client must be"),
        (lambda: shards(LABELS, 1000, 4, _rng()), "shards_per_client to at most 3"),
        (lambda: shards(LABELS, 0, 2, _rng()), "num_clients"),
        (lambda: natural(np.array([])), "groups"),
    ],
)
def test_bad_arguments_raise_clear_errors(call: BadCall, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        call()


def test_non_integer_counts_are_type_errors() -> None:
    with pytest.raises(TypeError, match="num_clients must be an integer"):
        iid(10, 2.5, _rng())  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------ properties


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_iid_is_always_a_partition_of_range_n(data: st.DataObject) -> None:
    n = data.draw(st.integers(1, 400), label="n")
    k = data.draw(st.integers(1, n), label="num_clients")
    seed = data.draw(st.integers(0, 2**32 - 1), label="seed")
    part = iid(n, k, _rng(seed))
    assert part.num_clients == k
    _assert_exact_cover(part, n)


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_dirichlet_is_always_a_partition_of_range_n(data: st.DataObject) -> None:
    labels = np.array(
        data.draw(st.lists(st.integers(0, 6), min_size=1, max_size=300), label="labels")
    )
    k = data.draw(st.integers(1, min(len(labels), 12)), label="num_clients")
    alpha = data.draw(st.floats(0.05, 50.0), label="alpha")
    seed = data.draw(st.integers(0, 2**32 - 1), label="seed")
    try:
        part = dirichlet(labels, k, alpha, _rng(seed), max_tries=20)
    except ValueError as exc:  # allowed only as the documented give-up
        assert "increase alpha" in str(exc)
        return
    assert part.num_clients == k
    _assert_exact_cover(part, len(labels))
