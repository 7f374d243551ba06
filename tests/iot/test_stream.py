"""Tracker: any-time lines over a stream, checked against per-window answers computed directly."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from iot_synth import HIERARCHY, corpus, event, observations

from phloem.iot.events import Event, Observation
from phloem.iot.identify import Identifier
from phloem.iot.stream import Tracker

T0 = 1_700_000_000.0


@pytest.fixture(scope="module")
def identifier() -> Identifier:
    return Identifier.train(corpus(), hierarchy=HIERARCHY, checkpoints=(0, 2, 10),
                            target_false_unknown=0.05)  # fmt: skip


def kinds(lines: list[dict[str, Any]], key: str) -> list[str]:
    return [ln["event"] for ln in lines if ln["key"] == key]


def reference_first_confident(idt: Identifier, e: Event, threshold: float) -> float | None:
    """Slow and obvious: ask at every query time, return the first confident one."""
    for q in e.queries:
        a = idt.answer(e, q.t, explain=False)
        if not a.unknown and a.confidence >= threshold:
            return q.t
    return None


@pytest.mark.parametrize("device", sorted(HIERARCHY))
@pytest.mark.parametrize("threshold", [0.5, 0.9, 0.999])
def test_identified_at_the_first_confident_query(
    identifier: Identifier, device: str, threshold: float
) -> None:
    e = event(device, np.random.default_rng(11))
    lines = list(Tracker(identifier, confidence=threshold, horizon_s=60).run(observations(e)))
    assert kinds(lines, e.key)[0] == "join" and kinds(lines, e.key)[-1] == "final"
    expected = reference_first_confident(identifier, e, threshold)
    ident = [ln for ln in lines if ln["event"] == "identified"]
    if expected is None:
        assert ident == []
    else:
        (line,) = ident
        assert line["elapsed_s"] == pytest.approx(expected, abs=1e-3)
        assert line["device"] == device and line["confidence"] >= threshold - 1e-4
    final = lines[-1]
    assert final["identified_as"] == (device if expected is not None else None)
    assert final["n_queries"] == len(e.queries)


def test_horizon_ends_a_client_and_ignores_its_later_queries(identifier: Identifier) -> None:
    e = event("cam", np.random.default_rng(0))
    tr = Tracker(identifier, horizon_s=2.5)
    lines = [ln for ob in observations(e) for ln in tr.feed(ob)]
    lines += tr.advance(e.anchor_utc + 100)
    assert lines[-1]["event"] == "final" and lines[-1]["n_queries"] == len(e.window(2.5))
    assert lines[-1]["elapsed_s"] == 2.5
    assert tr.close() == []  # already final


def test_clients_are_independent_and_finals_come_on_time(identifier: Identifier) -> None:
    rng = np.random.default_rng(5)
    a, b = event("plug", rng), event("speaker", rng)
    obs = observations(a, "A") + [
        Observation(o.ts + 30, "B", o.kind, o.name, o.qtype, o.resolver, o.stack)
        for o in observations(b)
    ]
    obs.sort(key=lambda o: o.ts)
    lines = list(Tracker(identifier, horizon_s=20).run(obs))
    final_a = next(ln for ln in lines if ln["event"] == "final" and ln["key"] == "A")
    join_b = next(i for i, ln in enumerate(lines) if ln["event"] == "join" and ln["key"] == "B")
    # A's horizon (20 s) passed before B joined at +30 s: A's final is emitted first
    assert lines.index(final_a) < join_b
    assert final_a["device"] == "plug"
    assert [ln["device"] for ln in lines if ln["event"] == "final" and ln["key"] == "B"] == [
        "speaker"
    ]


def test_unknown_device_gets_an_unknown_line(identifier: Identifier) -> None:
    e = event("ghost", np.random.default_rng(0))
    lines = list(Tracker(identifier).run(observations(e)))
    assert kinds(lines, e.key) == ["join", "unknown", "final"]
    assert lines[-1]["unknown"] and lines[-1]["device"] is None


def test_dhcp_reanchors_and_first_query_mode_ignores_it(identifier: Identifier) -> None:
    e = event("bulb", np.random.default_rng(0))
    obs = [*observations(e), Observation(e.anchor_utc + 5, e.key, "dhcp"),
           *(Observation(o.ts + 6, o.key, o.kind, o.name, o.qtype, o.resolver, o.stack)
             for o in observations(e))]  # fmt: skip
    lines = list(Tracker(identifier, horizon_s=60).run(obs))
    assert kinds(lines, e.key).count("join") == 2
    assert [ln["anchor"] for ln in lines if ln["event"] == "join"] == ["first-query", "dhcp"]
    finals = [ln for ln in lines if ln["event"] == "final"]
    assert len(finals) == 2 and all(f["device"] == "bulb" for f in finals)
    lines = list(Tracker(identifier, anchor="first-query").run(obs))
    assert kinds(lines, e.key).count("join") == 1


def test_rejoin_after_silence(identifier: Identifier) -> None:
    e = event("cam", np.random.default_rng(0))
    later = [Observation(o.ts + 600, o.key, o.kind, o.name, o.qtype, o.resolver, o.stack)
             for o in observations(e)]  # fmt: skip
    obs = observations(e) + later
    assert kinds(list(Tracker(identifier, horizon_s=10).run(obs)), e.key).count("join") == 1
    rejoin = list(Tracker(identifier, horizon_s=10, rejoin_after_s=300).run(obs))
    assert [ln["anchor"] for ln in rejoin if ln["event"] == "join"] == ["first-query", "rejoin"]


def test_replay_is_deterministic(identifier: Identifier) -> None:
    obs = [o for d in HIERARCHY for o in observations(event(d, np.random.default_rng(9)), d)]
    obs.sort(key=lambda o: o.ts)
    assert list(Tracker(identifier).run(obs)) == list(Tracker(identifier).run(obs))


def test_bad_settings_are_refused(identifier: Identifier) -> None:
    with pytest.raises(ValueError, match="anchor"):
        Tracker(identifier, anchor="dhcp")
    with pytest.raises(ValueError, match="horizon_s"):
        Tracker(identifier, horizon_s=-1)
