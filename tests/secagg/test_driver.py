"""Tests for :mod:`phloem.secagg.driver`: whole rounds against the plain sum.

The central property (DESIGN.md rule 11): under any dropout pattern, at any stage, a round
either returns exactly ``sum(inputs[u] for u in included) mod 2^bits`` -- checked with Python
integers -- or aborts; and which of the two happens, where, and over which clients, is what
the independent reference :func:`secagg_reference.expected_outcome` says from the dropout
sets alone. Both the complete graph (SecAgg) and Harary graphs (SecAgg+) are covered.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from secagg_reference import expected_outcome, plain_sum, random_inputs

import phloem.secagg.driver as driver_mod
import phloem.secagg.transport as transport_mod
from phloem.core.errors import ConfigError
from phloem.secagg.crypto.keys import insecure_random_bytes
from phloem.secagg.graph import complete_neighbours, harary_neighbours
from phloem.secagg.messages import MaskedInput, Message, RoundConfig, Stage
from phloem.secagg.ring import dtype_for_bits
from phloem.secagg.server import SecAggServer

STAGE_ORDER = list(driver_mod.STAGE_NAMES)  # setup, share_keys, masked_input, ...
BITS = [8, 16, 20, 32, 64]


# --------------------------------------------------------------------------- scenarios


@dataclass(frozen=True)
class Scenario:
    graph: dict[int, tuple[int, ...]]
    t: int
    bits: int
    dim: int
    consistency: bool
    dropout: dict[str, list[int]]
    seed: int


@st.composite
def scenarios(draw: st.DrawFn, harary: bool) -> Scenario:
    n = draw(st.integers(2, 25))
    ids = sorted(draw(st.lists(st.integers(0, 2**40), min_size=n, max_size=n, unique=True)))
    seed = draw(st.integers(0, 2**32 - 1))
    if harary:
        graph = harary_neighbours(ids, draw(st.integers(2, n)), np.random.default_rng(seed))
    else:
        graph = complete_neighbours(ids)
    degrees = [len(vs) for vs in graph.values()]
    # clients refuse t <= k / 2; the server refuses a graph where some client would
    assume((max(degrees) + 1) // 2 + 1 <= min(degrees) + 1)
    t = draw(st.integers((max(degrees) + 1) // 2 + 1, min(degrees) + 1))
    num_drops = draw(st.integers(0, n))
    dropped = draw(st.lists(st.sampled_from(ids), min_size=num_drops, max_size=num_drops))
    dropout: dict[str, list[int]] = {}
    for u in dropped:  # a client listed twice drops at the earlier stage
        dropout.setdefault(draw(st.sampled_from(STAGE_ORDER)), []).append(u)
    bits = draw(st.sampled_from(BITS))
    return Scenario(graph, t, bits, draw(st.integers(1, 50)), draw(st.booleans()), dropout, seed)


def drop_stages(dropout: Mapping[str, Sequence[int]]) -> dict[int, Stage]:
    out: dict[int, Stage] = {}
    for name, ids in dropout.items():
        for u in ids:
            out[u] = min(out.get(u, Stage.DONE), driver_mod.STAGE_NAMES[name])
    return out


def check_round(s: Scenario) -> None:
    graph, t, bits, dim, seed = s.graph, s.t, s.bits, s.dim, s.seed
    config = RoundConfig(seed, dim, bits, t, consistency_check=s.consistency)
    inputs = random_inputs(sorted(graph), dim, bits, seed)
    report = driver_mod.run_round(
        config, graph, inputs, dropout=s.dropout, rand=lambda u: insecure_random_bytes(seed ^ u)
    )
    want = expected_outcome(graph, t, drop_stages(s.dropout), s.consistency)
    if not want.ok:
        assert report.result is None and report.abort is not None, "round should have aborted"
        assert report.abort.stage == want.stage, (report.abort, want)
        assert str(t) in report.abort.reason
        return
    assert report.abort is None, f"round should have succeeded: {report.abort} ({want})"
    assert report.result is not None
    assert set(report.result.included) == want.included
    assert list(report.result.included) == sorted(want.included)
    assert report.result.sets == want.sizes
    total = report.result.total
    assert total.dtype == dtype_for_bits(bits) and total.shape == (dim,)
    assert [int(x) for x in total] == plain_sum(inputs, sorted(want.included), bits)


# --------------------------------------------------------------------------- exact sums


@settings(max_examples=100, deadline=None)
@given(scenarios(harary=False))
def test_secagg_sum_is_exact_or_aborts_as_the_reference_says(s: Scenario) -> None:
    check_round(s)


@settings(max_examples=100, deadline=None)
@given(scenarios(harary=True))
def test_secagg_plus_sum_is_exact_or_aborts_as_the_reference_says(s: Scenario) -> None:
    check_round(s)


@pytest.mark.parametrize("harary", [False, True], ids=["complete", "harary"])
@pytest.mark.parametrize("stage", STAGE_ORDER)
def test_dropouts_at_each_stage_leave_an_exact_sum(stage: str, harary: bool) -> None:
    ids = list(range(10, 22))
    graph = (
        harary_neighbours(ids, 8, np.random.default_rng(1)) if harary else complete_neighbours(ids)
    )
    t = 5 if harary else 7  # above half of the 8 or 12 holders
    s = Scenario(graph, t, 32, 17, True, {stage: [11, 16]}, 5)
    # a scenario in which the round must go through, without the two clients
    want = expected_outcome(graph, t, drop_stages(s.dropout), True)
    assert want.ok and (11 in want.included) == (stage in ("consistency", "unmask"))
    check_round(s)


CYCLE5 = {u: ((u - 1) % 5, (u + 1) % 5) for u in range(5)}


@pytest.mark.parametrize(
    ("graph", "t", "dropout", "stage"),
    [
        (complete_neighbours(range(6)), 4, {"consistency": [0, 1, 2]}, "consistency"),
        (complete_neighbours(range(6)), 4, {"consistency": [0, 1]}, None),
        (complete_neighbours(range(6)), 4, {"setup": [0, 1, 2]}, "setup"),
        (complete_neighbours(range(6)), 4, {"share_keys": [0, 1, 2]}, "share_keys"),
        # a 5-cycle with t = 3: one client leaving starves its two neighbours, then the rest
        (CYCLE5, 3, {"setup": [0]}, "setup"),
        (CYCLE5, 3, {"share_keys": [0]}, "share_keys"),
        (CYCLE5, 3, {"unmask": [0]}, "unmask"),
        (CYCLE5, 3, {}, None),
        # a path with t = 2: 1 leaving strands 0 only
        ({0: (1,), 1: (0, 2), 2: (1, 3), 3: (2, 4), 4: (3,)}, 2, {"setup": [1]}, None),
        ({0: (1,), 1: (0, 2), 2: (1, 3), 3: (2, 4), 4: (3,)}, 2, {"share_keys": [4]}, None),
    ],
)
def test_hand_picked_boundaries(
    graph: dict[int, tuple[int, ...]], t: int, dropout: dict[str, list[int]], stage: str | None
) -> None:
    assert expected_outcome(graph, t, drop_stages(dropout), True).stage == stage
    check_round(Scenario(dict(graph), t, 16, 5, True, dropout, 9))


def test_reference_agrees_on_hand_worked_cases() -> None:
    """The reference itself, on cases small enough to work out on paper."""
    path = {0: (1,), 1: (0, 2), 2: (1,)}  # 0 - 1 - 2
    # t = 2: everyone needs one live neighbour; 1 dropping at setup starves 0 and 2
    assert expected_outcome(path, 2, {1: Stage.SETUP}, False).stage == "setup"
    # 0 dropping at setup leaves 1 - 2, enough for t = 2
    out = expected_outcome(path, 2, {0: Stage.SETUP}, False)
    assert out.ok and out.included == {1, 2}
    # 2 sends no masked input: its key needs 2 holders, but only 1 is a neighbour
    assert expected_outcome(path, 2, {2: Stage.MASKED_INPUT}, False).stage == "unmask"
    k4 = complete_neighbours([0, 1, 2, 3])
    out = expected_outcome(k4, 3, {3: Stage.MASKED_INPUT}, False)
    assert out.ok and out.included == {0, 1, 2} and out.sizes["U5"] == 3
    assert expected_outcome(k4, 3, {2: Stage.UNMASK, 3: Stage.UNMASK}, False).stage == "unmask"
    # consistency dropouts count as unmask dropouts when the check is off
    out = expected_outcome(k4, 3, {3: Stage.CONSISTENCY}, False)
    assert out.ok and out.included == {0, 1, 2, 3} and out.sizes["U5"] == 3
    assert expected_outcome(k4, 3, {2: Stage.CONSISTENCY, 3: Stage.CONSISTENCY}, True).stage == (
        "consistency"
    )


# --------------------------------------------------------------------------- accounting


def _round(**kw: object) -> driver_mod.RoundReport:
    graph = complete_neighbours(list(range(6)))
    config = RoundConfig(3, 12, 32, 4, consistency_check=bool(kw.pop("consistency", False)))
    inputs = random_inputs(list(graph), 12, 32, 0)
    return driver_mod.run_round(config, graph, inputs, **kw)  # type: ignore[arg-type]


def test_stage_stats_are_populated() -> None:
    rep = _round(consistency=True, dropout={"masked_input": [4], "unmask": [5]})
    assert rep.ok
    assert list(rep.stages) == STAGE_ORDER
    answered = {"setup": 6, "share_keys": 6, "masked_input": 5, "consistency": 5, "unmask": 4}
    for name, st_ in rep.stages.items():
        assert st_.answered == answered[name]
        assert len(st_.client_s) == len(st_.up_bytes) == len(st_.down_bytes) == st_.answered
        assert all(b > 0 for b in st_.up_bytes + st_.down_bytes)
        assert all(s >= 0 for s in st_.client_s) and st_.server_s >= 0
        summary = st_.summary()
        assert summary["answered"] == answered[name] and summary["up_mean_bytes"] > 0
    # a 2^32 masked input of 12 entries is 48 bytes of payload plus a small header
    assert all(48 < b < 48 + 64 for b in rep.stages["masked_input"].up_bytes)
    totals = rep.totals()
    assert totals["up_bytes"] > 0 and totals["down_bytes"] > 0 and totals["server_s"] > 0
    assert rep.wall_s > 0


def test_upload_bytes_per_client_is_the_mean_over_clients_that_finished() -> None:
    rep = _round(dropout={"masked_input": [4]})
    per: dict[int, int] = {}
    for st_ in rep.stages.values():
        for u, b in zip(st_.clients, st_.up_bytes, strict=True):
            per[u] = per.get(u, 0) + b
    finished = rep.stages["unmask"].clients
    assert sorted(finished) == [0, 1, 2, 3, 5]
    assert rep.upload_bytes_per_client() == pytest.approx(np.mean([per[u] for u in finished]))


def test_stage_names_are_the_protocol_stages_in_order() -> None:
    assert STAGE_ORDER == ["setup", "share_keys", "masked_input", "consistency", "unmask"]
    assert all(driver_mod.stage_name(s) == name for name, s in driver_mod.STAGE_NAMES.items())
    assert list(driver_mod.STAGE_NAMES.values()) == sorted(set(Stage) - {Stage.DONE})


def test_unknown_stage_in_dropout_is_a_config_error_naming_dropout() -> None:
    with pytest.raises(ConfigError, match="dropout") as err:
        _round(dropout={"maskedinput": [1]})
    assert err.value.field == "dropout" and "masked_input" in str(err.value)
    with pytest.raises(ConfigError, match="dropout"):
        _round(dropout={"unmask": [99]})


def test_callable_inputs_are_made_when_due() -> None:
    graph = complete_neighbours(list(range(5)))
    config = RoundConfig(1, 9, 16, 3, num_clients=5)
    calls: list[int] = []

    def make(u: int, cfg: RoundConfig) -> np.ndarray:
        assert cfg == config
        calls.append(u)
        return np.full(cfg.dim, 1000 * u + 1, dtype=np.uint16)

    rep = driver_mod.run_round(config, graph, make, dropout={"share_keys": [2]})
    assert rep.result is not None
    assert sorted(calls) == [0, 1, 3, 4]  # 2 dropped before its input was due
    assert [int(x) for x in rep.result.total] == [(1 + 1001 + 3001 + 4001) % 2**16] * 9


def test_abort_is_reported_not_raised() -> None:
    rep = _round(dropout={"masked_input": [0, 1, 2, 3]})
    assert not rep.ok and rep.abort is not None and rep.abort.stage == "masked_input"
    assert "2 clients sent masked inputs, threshold is 4" in rep.abort.reason


def test_seeded_randomness_makes_rounds_reproducible(monkeypatch: pytest.MonkeyPatch) -> None:
    uploads: list[dict[int, np.ndarray]] = []

    class Recording(SecAggServer):
        def receive(self, msg: Message) -> None:
            if isinstance(msg, MaskedInput):
                uploads[-1][msg.sender] = msg.vector.copy()
            super().receive(msg)

    monkeypatch.setattr(transport_mod, "SecAggServer", Recording)  # the round loop's server
    totals = []
    for seed in (11, 11, 12):
        uploads.append({})
        rep = _round(rand=lambda u, s=seed: insecure_random_bytes(s * 100 + u))
        assert rep.result is not None
        totals.append(rep.result.total)
    np.testing.assert_array_equal(totals[0], totals[1])
    np.testing.assert_array_equal(totals[0], totals[2])  # same inputs, same sum
    assert uploads[0].keys() == uploads[1].keys() == set(range(6))
    for u in uploads[0]:
        np.testing.assert_array_equal(uploads[0][u], uploads[1][u])
        assert not np.array_equal(uploads[0][u], uploads[2][u])  # other seed, other masks
    # without injected randomness the masks are fresh
    uploads.append({})
    _round()
    assert not np.array_equal(uploads[0][0], uploads[3][0])
