"""identify_clients: one report per client, checked against the identifier asked directly."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from iot_synth import HIERARCHY, corpus, event, observations

from phloem.iot.clients import IdentifyParams, identify_clients
from phloem.iot.events import EventStats, Observation, events_from_observations
from phloem.iot.identify import Identifier


@pytest.fixture(scope="module")
def identifier() -> Identifier:
    return Identifier.train(corpus(), hierarchy=HIERARCHY, checkpoints=(0, 2, 10),
                            target_false_unknown=0.05)  # fmt: skip


def _stream() -> list[Observation]:
    rng = np.random.default_rng(5)
    obs = [o for i, d in enumerate(HIERARCHY) for o in observations(event(d, rng, i=i))]
    # one client that asks another resolver than everybody else, and one that only joins
    odd = event("bulb", rng, i=9)
    obs += [Observation(o.ts, "odd-mac", "query", o.name, o.qtype, "9.9.9.9", o.stack)
            for o in observations(odd)]  # fmt: skip
    obs.append(Observation(1_700_000_000.0 + 20_000, "quiet-mac", "dhcp"))
    return sorted(obs, key=lambda o: o.ts)


@pytest.mark.parametrize(("window_s", "top"), [(10.0, 3), (2.0, 1), (0.0, 2)])
def test_each_client_gets_the_identifiers_own_answer_and_timeline(
    identifier: Identifier, window_s: float, top: int
) -> None:
    obs = _stream()
    reports = identify_clients(identifier, obs, IdentifyParams(window_s, top))
    events = events_from_observations(obs)
    assert [r.answer.key for r in reports] == [e.key for e in events]
    early = [w for w in identifier.checkpoints if w < window_s]
    for r, e in zip(reports, events, strict=True):
        assert r.answer == identifier.answer(e, window_s, top=top)
        steps = [*(identifier.answer(e, w, explain=False) for w in early), r.answer]
        assert [(p.elapsed_s, p.device, p.confidence, p.unknown) for p in r.over_time] == [
            (a.elapsed_s, a.top[0].label, a.confidence, a.unknown) for a in steps
        ]
        assert r.names == tuple(sorted({q.name for q in e.window(window_s)}))
        assert r.no_dns == (not e.window(window_s))
        assert r.first_seen == datetime.fromtimestamp(e.anchor_utc, UTC).isoformat(
            timespec="seconds"
        )
    flagged = {r.answer.key: r.external_resolver for r in reports}
    assert flagged["odd-mac"] and not flagged["plug-mac"] and flagged["quiet-mac"] is False
    assert next(r for r in reports if r.answer.key == "quiet-mac").no_dns


def test_the_json_form_is_the_answers_then_the_report(identifier: Identifier) -> None:
    (report, *_) = identify_clients(identifier, _stream(), IdentifyParams(10.0))
    doc = report.to_dict()
    answer = report.answer.to_dict()
    assert list(doc)[: len(answer)] == list(answer) and {k: doc[k] for k in answer} == answer
    assert list(doc)[len(answer) :] == ["first_seen", "over_time", "names", "no_dns",
                                        "external_resolver"]  # fmt: skip
    assert doc["over_time"][-1] == {
        "s": 10.0,
        "device": report.answer.top[0].label,
        "p": round(report.answer.confidence, 3),
        "unknown": report.answer.unknown,
    }


def test_capture_start_anchors_every_client_at_the_first_packet(identifier: Identifier) -> None:
    obs = _stream()
    stats = EventStats(start_ts=obs[0].ts - 30.0)
    reports = identify_clients(identifier, obs, IdentifyParams(anchor="capture-start"), stats=stats)
    first = datetime.fromtimestamp(obs[0].ts - 30.0, UTC).isoformat(timespec="seconds")
    assert {r.first_seen for r in reports} == {first}
