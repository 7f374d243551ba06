"""stream.monitor: the loop behind ``phloem iot monitor``, against Tracker.run as reference."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from iot_synth import HIERARCHY, corpus, event, observations

from phloem.core.errors import ConfigError
from phloem.iot.events import Observation
from phloem.iot.identify import Identifier
from phloem.iot.stream import Stopped, Tracker, Watched, json_lines, monitor

TICK_S = 0.02


@pytest.fixture(scope="module")
def identifier() -> Identifier:
    return Identifier.train(corpus(), hierarchy=HIERARCHY, checkpoints=(0, 2, 10),
                            target_false_unknown=0.05)  # fmt: skip


def _stream() -> list[Observation]:
    rng = np.random.default_rng(3)
    obs = [o for i, d in enumerate(HIERARCHY) for o in observations(event(d, rng, i=i))]
    return sorted(obs, key=lambda o: o.ts)


def _collect() -> tuple[list[dict[str, Any]], Any]:
    lines: list[dict[str, Any]] = []
    return lines, lines.extend


def test_a_replay_emits_what_tracker_run_yields(identifier: Identifier) -> None:
    lines, emit = _collect()
    stop = threading.Event()
    reason = monitor(Tracker(identifier), _stream(), emit, stop=stop)
    assert reason is Stopped.END and stop.is_set()
    assert lines == list(Tracker(identifier).run(_stream()))
    assert {ln["key"] for ln in lines if ln["event"] == "final"} == {f"{d}-mac" for d in HIERARCHY}


def test_json_lines_writes_one_object_per_line(identifier: Identifier) -> None:
    sink = io.StringIO()
    monitor(Tracker(identifier), _stream(), json_lines(sink))
    expected = list(Tracker(identifier).run(_stream()))
    assert [json.loads(x) for x in sink.getvalue().splitlines()] == expected


def _live(obs: list[Observation], stop: threading.Event) -> Iterator[Observation]:
    """A followed source: yields what there is, then waits for more until stopped."""
    yield from obs
    while not stop.wait(TICK_S):
        pass


def test_a_live_source_stops_when_idle_and_every_client_gets_its_final(
    identifier: Identifier,
) -> None:
    obs = _stream()
    lines, emit = _collect()
    stop = threading.Event()
    # a horizon no wall clock reaches during the test: only the stop brings the finals
    tracker = Tracker(identifier, horizon_s=1e12)
    reason = monitor(
        tracker, _live(obs, stop), emit, live=True, stop=stop, idle_timeout_s=0.1, tick_s=TICK_S
    )
    assert reason is Stopped.IDLE
    reference = list(Tracker(identifier, horizon_s=1e12).run(obs))
    assert [ln for ln in lines if ln["event"] != "final"] == [
        ln for ln in reference if ln["event"] != "final"
    ]
    finals = [ln for ln in lines if ln["event"] == "final"]
    assert [f["key"] for f in finals] == [f["key"] for f in reference if f["event"] == "final"]


def test_an_interrupt_still_gives_the_finals(identifier: Identifier) -> None:
    obs = _stream()

    def interrupted() -> Iterator[Observation]:
        yield obs[0]
        raise KeyboardInterrupt

    lines, emit = _collect()
    assert monitor(Tracker(identifier), interrupted(), emit) is Stopped.INTERRUPTED
    assert lines[0]["event"] == "join"
    assert [ln["event"] for ln in lines if ln["key"] == obs[0].key][-1] == "final"


def test_a_live_source_failing_is_raised_after_the_finals(identifier: Identifier) -> None:
    obs = _stream()

    class BrokenError(RuntimeError):
        pass

    def failing() -> Iterator[Observation]:
        yield obs[0]
        raise BrokenError("capture died")

    lines, emit = _collect()
    with pytest.raises(BrokenError):
        monitor(Tracker(identifier), failing(), emit, live=True, tick_s=TICK_S)
    assert lines[-1]["event"] == "final" and lines[-1]["key"] == obs[0].key


def test_bad_idle_timeout_names_it(identifier: Identifier) -> None:
    with pytest.raises(ConfigError) as info:
        monitor(Tracker(identifier), [], lambda lines: None, idle_timeout_s=-1.0)
    assert info.value.field == "idle_timeout_s"


def test_watched_reads_a_replay_in_utc_and_knows_when_it_is_live(tmp_path: Path) -> None:
    log = tmp_path / "pihole.log"
    log.write_text("Jan  2 03:04:05 dnsmasq[1]: query[A] a.io from 10.0.0.9\n")
    replay = Watched(log, year=2024)
    assert not replay.live and Watched(log, follow=True).live and Watched(interface="lo").live
    obs, stats = replay.open(threading.Event())
    (ob,) = obs
    assert ob.ts == datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp()
    assert stats.kind == "dnsmasq"
