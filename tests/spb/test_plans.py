"""Tests for :mod:`phloem.spb.plans`: the registry, each plan's depths, and bad parameters."""

from __future__ import annotations

import itertools

import pytest

from phloem.core.errors import ConfigError
from phloem.spb.plans.base import members
from phloem.spb.registries import DEPTH_PLANS


def plan(name: str, **params: object) -> object:
    cls = DEPTH_PLANS.get(name)
    return cls(cls.Params(**params))


def test_the_registry_lists_every_plan() -> None:
    assert {"static", "staircase", "rotating", "time-varying"} <= set(DEPTH_PLANS.names())


def test_static_gives_the_issues_pattern() -> None:
    assert plan("static").depths(4, 10) == (10, 10, 5, 5)  # type: ignore[attr-defined]
    assert plan("static", shallow_fraction=0.0).depths(3, 7) == (7, 7, 7)  # type: ignore[attr-defined]
    assert plan("static", depth_fraction=0.01).depths(2, 8) == (8, 1)  # type: ignore[attr-defined]


def test_staircase_falls_evenly_to_its_minimum() -> None:
    assert plan("staircase", min_fraction=0.25).depths(4, 8) == (8, 6, 4, 2)  # type: ignore[attr-defined]
    assert plan("staircase").depths(1, 8) == (8,)  # type: ignore[attr-defined]


def test_rotating_brings_every_rank_to_full_depth_once_per_cycle() -> None:
    p = plan("rotating", period=2)
    seen = [p.depths(4, 10, step, 16) for step in range(16)]  # type: ignore[attr-defined]
    assert seen[0] == seen[1] == (10, 10, 5, 5)
    assert seen[2] == (10, 5, 5, 10)
    for r in range(4):
        assert any(d[r] == 10 for d in seen[:8]) and any(d[r] == 5 for d in seen[:8])
    assert all(sorted(d) == [5, 5, 10, 10] for d in seen)  # the same multiset every step


def test_time_varying_is_deep_early_and_shallow_late() -> None:
    p = plan("time-varying", start_fraction=1.0, end_fraction=0.25, full_ranks=1)
    first, last = p.depths(3, 8, 0, 100), p.depths(3, 8, 99, 100)  # type: ignore[attr-defined]
    assert first == (8, 8, 8) and last == (8, 2, 2)
    mids = [p.depths(3, 8, s, 100)[1] for s in range(100)]  # type: ignore[attr-defined]
    assert mids == sorted(mids, reverse=True)  # never deeper later


def test_members_are_nested_and_grow_toward_the_output() -> None:
    groups = members((10, 10, 5, 5), 10)
    assert groups[0] == (0, 1) and groups[4] == (0, 1) and groups[5] == (0, 1, 2, 3)
    assert all(set(a) <= set(b) for a, b in itertools.pairwise(groups))
    assert members((2, 2), 4)[:2] == [(), ()]  # nobody reaches the first two blocks


@pytest.mark.parametrize(
    ("name", "field", "value"),
    [
        ("static", "shallow_fraction", 1.5),
        ("static", "depth_fraction", 0.0),
        ("static", "depth_fraction", float("nan")),
        ("staircase", "min_fraction", -0.1),
        ("rotating", "period", 0),
        ("time-varying", "full_ranks", -1),
        ("time-varying", "end_fraction", 2.0),
    ],
)
def test_bad_parameters_name_their_field(name: str, field: str, value: object) -> None:
    with pytest.raises(ConfigError) as err:
        plan(name, **{field: value})
    assert err.value.field == field


def test_time_varying_refuses_to_grow_deeper() -> None:
    with pytest.raises(ConfigError) as err:
        plan("time-varying", start_fraction=0.5, end_fraction=0.75)
    assert err.value.field == "end_fraction"


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ((0, 4), "world_size"),
        ((2, 0), "num_blocks"),
        ((2, 4, 5, 5), "step"),
        ((2, 4, 0, 0), "total_steps"),
    ],
)
def test_bad_arguments_name_their_field(args: tuple[int, ...], field: str) -> None:
    with pytest.raises(ConfigError) as err:
        plan("static").depths(*args)  # type: ignore[attr-defined]
    assert err.value.field == field


def test_listing_the_plans_imports_no_torch() -> None:
    """Help screens and config checks list the plans: that must stay cheap."""
    import subprocess
    import sys

    code = (
        "import sys; from phloem.spb.registries import DEPTH_PLANS; DEPTH_PLANS.names(); "
        "sys.exit('torch' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_freezeout_freezes_from_the_input_side_on_every_rank_alike() -> None:
    """Brock et al.'s linear schedule with t0 = 0.5 and L = 4: block l freezes at
    0.5 + 0.5 l / 4 of the run (0.5, 0.625, 0.75); the last block never does."""
    p = plan("freezeout", t0=0.5)
    at = {s: p.depths(2, 4, s, 8) for s in range(8)}  # type: ignore[attr-defined]
    assert [at[s][0] for s in range(8)] == [4, 4, 4, 4, 3, 2, 1, 1]
    assert all(len(set(d)) == 1 for d in at.values())  # the same depth on every rank
    with pytest.raises(ConfigError) as err:
        plan("freezeout", t0=1.0)
    assert err.value.field == "t0"


def test_full_is_every_rank_at_every_block() -> None:
    assert plan("full").depths(3, 6, 5, 10) == (6, 6, 6)  # type: ignore[attr-defined]
    assert DEPTH_PLANS.get("full").Params  # no keys


def _profile(backward: list[int], saved: list[int]) -> object:
    from phloem.spb.accounting import BlockCost, Profile, StepCost

    depths = tuple(
        StepCost(d + 1, 0, b, s) for d, (b, s) in enumerate(zip(backward, saved, strict=True))
    )
    blocks = tuple(BlockCost(f"b{i}", 0, 0, 0, 0, 0, 0.0, 0.0) for i in range(len(depths)))
    return Profile("m", 8, 1, blocks, depths, (0.0,) * len(depths))


def test_the_profile_plan_takes_the_deepest_depth_within_its_budgets() -> None:
    """Backward FLOPs at depths 1..5 are 5, 20, 45, 80, 100 (a CNN whose early blocks cost
    most); half of a full worker's (50) allows depth 3, not the block count's half."""
    from phloem.spb.plans.profiled import depth_within

    prof = _profile([5, 20, 45, 80, 100], [1, 2, 3, 9, 10])
    assert depth_within(prof, 0.5, 1.0) == 3  # type: ignore[arg-type]
    assert depth_within(prof, 0.5, 0.2) == 2  # the bytes budget binds  # type: ignore[arg-type]
    assert depth_within(prof, 0.01, 1.0) == 1  # at least one block  # type: ignore[arg-type]
    p = plan("profile", shallow_fraction=0.5, backward_budget=0.5)
    with pytest.raises(RuntimeError, match="fit"):
        p.depths(4, 5)  # type: ignore[attr-defined]
    p.fit(prof)  # type: ignore[attr-defined]
    assert p.depths(4, 5) == (5, 5, 3, 3)  # type: ignore[attr-defined]
    with pytest.raises(RuntimeError, match="6-block"):  # fitted to a 5-block model
        p.depths(4, 6)  # type: ignore[attr-defined]
