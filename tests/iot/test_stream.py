"""Tracker: any-time lines over a stream, checked against per-window answers computed directly."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from iot_synth import HIERARCHY, corpus, event, observations

from phloem.iot.events import Event, Observation, Query
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


def test_lines_are_answers_at_the_query_times(identifier: Identifier) -> None:
    """Every identified/revised/unknown/final line is the identifier's own answer (with its
    drivers where explained) for the queries seen so far, judged at the tracker's threshold."""
    rng = np.random.default_rng(21)
    for dev in [*HIERARCHY, "ghost"]:
        e = event(dev, rng)
        for threshold, explain in ((0.5, True), (0.999, True), (0.9, False)):
            obs = observations(e)
            lines = list(Tracker(identifier, confidence=threshold, explain=explain).run(obs))
            seen: list[Query] = []
            for ob in obs:
                seen.append(Query(ob.ts - e.anchor_utc, ob.name, ob.qtype, ob.resolver, ob.stack))
            for line in lines:
                if line["event"] == "join":
                    continue
                n = line["n_queries"]  # within the horizon: answered at the n-th query
                so_far = Event(e.key, e.anchor_utc, tuple(seen[:n]))
                detail = explain and line["event"] != "unknown"
                want = identifier.answer(
                    so_far, seen[n - 1].t, explain=detail, confidence=threshold
                ).to_dict()
                got = {k: v for k, v in line.items() if k not in ("event", "t", "identified_as")}
                assert got == want
                if line["event"] in ("identified", "revised"):
                    assert line["confident"] and line["confidence"] >= threshold - 1e-4


def test_finals_due_together_come_in_order_of_first_join(identifier: Identifier) -> None:
    """A rejoined client keeps its place: finals due at once come in the order the keys were
    first seen, as they did when every client was scanned."""
    q = observations(event("plug", np.random.default_rng(0)))[0]

    def at(ts: float, key: str) -> Observation:
        return Observation(T0 + ts, key, "query", q.name, q.qtype, q.resolver, q.stack)

    tr = Tracker(identifier, horizon_s=10, rejoin_after_s=5, explain=False)
    lines = [ln for ob in (at(0, "A"), at(1, "B"), at(10.5, "A")) for ln in tr.feed(ob)]
    # A's horizon passed at 10.5 s: its final line, then it joins again (after B)
    assert [(ln["event"], ln["key"]) for ln in lines if ln["event"] != "identified"] == [
        ("join", "A"), ("join", "B"), ("final", "A"), ("join", "A")
    ]  # fmt: skip
    finals = [ln["key"] for ln in tr.advance(T0 + 100) if ln["event"] == "final"]
    assert finals == ["A", "B"]
    assert tr.close() == []
    # final clients keep no queries; a rejoin starts from none
    assert all(c.done and c.queries == [] for c in tr.clients.values())


def test_close_gives_open_clients_their_finals_in_order_of_first_join(
    identifier: Identifier,
) -> None:
    q = observations(event("cam", np.random.default_rng(0)))[0]
    obs = [Observation(T0 + t, k, "query", q.name, q.qtype, q.resolver, q.stack)
           for t, k in ((0, "A"), (1, "B"), (2, "C"), (12, "A"))]  # fmt: skip
    tr = Tracker(identifier, horizon_s=11, rejoin_after_s=5, explain=False)
    lines = [ln for ob in obs for ln in tr.feed(ob)]
    assert [ln["key"] for ln in lines if ln["event"] == "final"] == ["A"]
    assert [ln["key"] for ln in tr.close()] == ["A", "B", "C"]
