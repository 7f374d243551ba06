"""The throughput model and its bundled tables."""

from __future__ import annotations

import csv
import hashlib

import pytest

from phloem.jigsaw.apps import (
    APPLICATIONS,
    TABLES,
    load_colocation,
    load_throughput,
    placement_of,
)

MODEL = load_throughput()


def test_bundled_tables_are_the_shared_ones(data_file) -> None:  # type: ignore[no-untyped-def]
    for app in APPLICATIONS:
        for name in ("placements.csv", "scalability.csv"):
            shared = data_file(f"traces/pollux/traces/{app}/{name}")
            mine = TABLES / "pollux" / app / name
            assert (
                hashlib.sha256(mine.read_bytes()).digest()
                == hashlib.sha256(shared.read_bytes()).digest()
            )
    shared = data_file("traces/pollux/workloads/workload-1.csv")
    assert (TABLES / "workloads" / "pollux-1x-workload-1.csv").read_bytes() == shared.read_bytes()


def test_bundled_gavel_extract_equals_the_full_table(data_file) -> None:  # type: ignore[no-untyped-def]
    full = load_colocation(data_file("traces/gavel/simulation_throughputs.json"))
    mine = load_colocation()
    assert full.types == mine.types and len(full.types) == 26
    for a in full.types:
        for b in full.types:
            assert mine.factor(a, b) == pytest.approx(full.factor(a, b), rel=1e-12)


@pytest.mark.parametrize("app", sorted(APPLICATIONS))
def test_measured_rows_are_reproduced_exactly(app: str) -> None:
    with (TABLES / "pollux" / app / "placements.csv").open() as fh:
        rows = [r for r in csv.DictReader(fh) if r["placement"] == "4"]
    for r in rows:
        lb = int(r["local_bsz"])
        it = MODEL.iteration(app, (4,), 4 * lb)
        assert it.sync_s == pytest.approx(float(r["sync_time"]))
        assert it.compute_s == pytest.approx(float(r["step_time"]) - float(r["sync_time"]))
        assert it.samples == 4 * lb


def test_gradient_accumulation_beyond_the_largest_per_gpu_batch() -> None:
    big = MODEL.max_local_bsz("cifar10")
    one = MODEL.iteration("cifar10", (1,), big)
    three = MODEL.iteration("cifar10", (1,), 3 * big)
    assert three.compute_s == pytest.approx(3 * one.compute_s)  # three accumulation steps
    assert three.sync_s == pytest.approx(one.sync_s)  # one synchronisation
    assert three.samples == 3 * big


def test_eight_gpu_nodes_synchronise_like_measured_four_gpu_nodes() -> None:
    four = MODEL.iteration("imagenet", (4, 4), 1600)
    eight = MODEL.iteration("imagenet", (8, 8), 3200)
    assert eight.sync_s == pytest.approx(four.sync_s)
    assert eight.compute_s == pytest.approx(four.compute_s)
    assert eight.throughput == pytest.approx(2 * four.throughput)


def test_placements_outside_the_tables_are_finite() -> None:
    for p in ((8,) * 16, (1,) * 40, (4,) * 30, (2, 8, 3)):
        it = MODEL.iteration("bert", p, 12 * sum(p))
        assert it.compute_s > 0 and 0 <= it.sync_s < float("inf")


def test_statistical_efficiency_is_mccandlish_form() -> None:
    app = APPLICATIONS["cifar10"]
    assert app.efficiency(128) == 1.0 and app.efficiency(64) == 1.0
    b = app.noise_scale
    assert b is not None
    assert app.efficiency(2048) == pytest.approx((b + 128) / (b + 2048))


def test_placement_of_counts_gpus_per_node() -> None:
    assert placement_of((0, 1, 5, 9, 10, 11), 4) == (1, 2, 3)
    assert placement_of((), 4) == ()
