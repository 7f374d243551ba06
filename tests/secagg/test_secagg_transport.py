"""Tests for :mod:`phloem.secagg.transport`: the one server round loop, over any transport.

Transports written here, independently of the in-process driver, run whole rounds through
:func:`run_protocol`; the reference is the same as the driver's (``secagg_reference``): from the
graph, the threshold and who is lost at which stage alone, whether the round must succeed and
over whom -- and then the sum must be exactly the plain sum of those clients' inputs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from secagg_reference import expected_outcome, plain_sum, random_inputs

import phloem.secagg.transport as transport_mod
from phloem.core.errors import ProtocolError, SecAggAbort
from phloem.secagg.client import SecAggClient
from phloem.secagg.crypto.keys import insecure_random_bytes
from phloem.secagg.driver import InProcessTransport, run_round
from phloem.secagg.graph import complete_neighbours, harary_neighbours
from phloem.secagg.messages import Message, RoundConfig, decode, encode
from phloem.secagg.server import SecAggServer
from phloem.secagg.stages import PROTOCOL_STAGES, Stage
from phloem.secagg.transport import StageStats, Transport, run_protocol

Graph = dict[int, tuple[int, ...]]


class LossyTransport(Transport):
    """Clients in reverse order; from its stage in ``lost`` on, a client still computes every
    reply but the network loses it (the client does not know it is out)."""

    def __init__(self, clients: Mapping[int, SecAggClient], lost: Mapping[int, Stage]) -> None:
        self.clients, self.lost = clients, lost
        self.closed: list[tuple[Stage, int]] = []
        self.refusals: list[tuple[Stage, int]] = []

    def exchange(
        self, stage: Stage, requests: Mapping[int, Message], stats: StageStats
    ) -> Iterator[tuple[int, bytes]]:
        for u in sorted(requests, reverse=True):
            try:
                reply = encode(self.clients[u].handle(decode(encode(requests[u]))))
            except (SecAggAbort, ProtocolError):  # a client that gives up is a dropout
                continue
            if u not in self.lost or self.lost[u] > stage:
                yield u, reply

    def refused(self, stage: Stage, client: int, error: ProtocolError) -> None:
        self.refusals.append((stage, client))

    def closing(self, stage: Stage, stats: StageStats) -> None:
        self.closed.append((stage, stats.answered))


def make_clients(
    graph: Graph, inputs: Mapping[int, np.ndarray], seed: int
) -> dict[int, SecAggClient]:
    return {u: SecAggClient(u, inputs[u], rand=insecure_random_bytes(seed + u)) for u in graph}


def check_against_reference(
    graph: Graph, t: int, lost: dict[int, Stage], consistency: bool, seed: int
) -> LossyTransport:
    config = RoundConfig(seed % 1000, 9, 16, t, consistency_check=consistency)
    inputs = random_inputs(sorted(graph), 9, 16, seed)
    transport = LossyTransport(make_clients(graph, inputs, seed), lost)
    report = run_protocol(config, graph, transport)
    want = expected_outcome(graph, t, lost, consistency)
    assert report.sets == want.sizes
    if not want.ok:
        assert report.result is None and report.abort is not None
        assert report.abort.stage == want.stage
        return transport
    assert report.abort is None and report.result is not None
    assert set(report.result.included) == want.included
    assert [int(x) for x in report.result.total] == plain_sum(inputs, sorted(want.included), 16)
    return transport


@st.composite
def rounds(draw: st.DrawFn) -> tuple[Graph, int, dict[int, Stage], bool, int]:
    n = draw(st.integers(3, 14))
    seed = draw(st.integers(0, 2**31))
    ids = list(range(10, 10 + n))
    if draw(st.booleans()):
        graph = harary_neighbours(ids, draw(st.integers(2, n)), np.random.default_rng(seed))
    else:
        graph = complete_neighbours(ids)
    degrees = [len(vs) for vs in graph.values()]
    # clients refuse t <= k / 2; the server refuses a graph where some client would
    assume((max(degrees) + 1) // 2 + 1 <= min(degrees) + 1)
    t = draw(st.integers((max(degrees) + 1) // 2 + 1, min(degrees) + 1))
    lost = draw(st.dictionaries(st.sampled_from(ids), st.sampled_from(PROTOCOL_STAGES)))
    return graph, t, lost, draw(st.booleans()), seed


@settings(max_examples=60, deadline=None)
@given(rounds())
def test_any_transport_gives_the_exact_sum_or_the_reference_abort(
    case: tuple[Graph, int, dict[int, Stage], bool, int],
) -> None:
    graph, t, lost, consistency, seed = case
    transport = check_against_reference(graph, t, lost, consistency, seed)
    stages = [s for s, _ in transport.closed]
    assert stages == sorted(set(stages)), "each stage is closed once, in protocol order"
    assert transport.refusals == []


def test_the_hooks_see_each_stage_and_each_refusal() -> None:
    """A reply claiming another sender is refused by the loop, and reported to the transport."""
    graph = complete_neighbours(list(range(6)))

    class Forging(LossyTransport):
        def exchange(
            self, stage: Stage, requests: Mapping[int, Message], stats: StageStats
        ) -> Iterator[tuple[int, bytes]]:
            for u, reply in super().exchange(stage, requests, stats):
                if u == 4 and stage is Stage.MASKED_INPUT:  # 4 passes its vector off as 0's
                    reply = encode(dataclasses.replace(decode(reply), sender=0))  # type: ignore[call-arg]
                yield u, reply

    inputs = random_inputs(list(graph), 9, 16, 3)
    transport = Forging(make_clients(graph, inputs, 3), {})
    report = run_protocol(RoundConfig(1, 9, 16, 4), graph, transport)
    assert transport.refusals == [(Stage.MASKED_INPUT, 4)]
    assert report.result is not None and report.result.included == (0, 1, 2, 3, 5)
    assert report.stages[Stage.MASKED_INPUT].refused[0].startswith("4 (server): ")
    answered = {Stage.SETUP: 6, Stage.SHARE_KEYS: 6, Stage.MASKED_INPUT: 5, Stage.UNMASK: 5}
    assert transport.closed == list(answered.items())
    assert [int(x) for x in report.result.total] == plain_sum(inputs, [0, 1, 2, 3, 5], 16)


def test_the_loop_takes_one_reply_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """The server receives each reply before the transport makes the next one."""
    log: list[tuple[str, int]] = []

    class Recording(SecAggServer):
        def receive(self, msg: Message) -> None:
            log.append(("received", getattr(msg, "sender", -1)))
            super().receive(msg)

    class Logging(InProcessTransport):
        def exchange(
            self, stage: Stage, requests: Mapping[int, Message], stats: StageStats
        ) -> Iterator[tuple[int, bytes]]:
            for u, reply in super().exchange(stage, requests, stats):
                log.append(("made", u))
                yield u, reply

    monkeypatch.setattr(transport_mod, "SecAggServer", Recording)
    graph = complete_neighbours(list(range(5)))
    inputs = random_inputs(list(graph), 4, 8, 0)
    run_protocol(RoundConfig(1, 4, 8, 3), graph, Logging(make_clients(graph, inputs, 0), {}))
    assert log[0::2] == [("made", u) for _, u in log[1::2]]
    assert log[1::2] == [("received", u) for _, u in log[0::2]]


def test_the_driver_is_the_loop_over_the_in_process_transport() -> None:
    graph = harary_neighbours(list(range(9)), 5, np.random.default_rng(2))
    inputs = random_inputs(list(graph), 6, 32, 1)
    config = RoundConfig(5, 6, 32, 3)
    rand = {u: insecure_random_bytes(70 + u) for u in graph}
    direct = run_round(config, graph, inputs, dropout={"share_keys": [4]}, rand=rand.__getitem__)
    clients = {u: SecAggClient(u, inputs[u], rand=insecure_random_bytes(70 + u)) for u in graph}
    looped = run_protocol(config, graph, InProcessTransport(clients, {4: Stage.SHARE_KEYS}))
    assert direct.result is not None and looped.result is not None
    np.testing.assert_array_equal(direct.result.total, looped.result.total)
    assert list(direct.stages) == list(looped.stages)
    for a, b in zip(direct.stages.values(), looped.stages.values(), strict=True):
        assert (a.clients, a.up_bytes, a.down_bytes, a.answered, a.refused) == (
            b.clients,
            b.up_bytes,
            b.down_bytes,
            b.answered,
            b.refused,
        )
