"""Slow, obvious references and a hand-cranked round for the SecAgg protocol tests.

- :func:`expected_outcome` says, from the graph, the threshold and who drops at which stage,
  whether a round must succeed (and over which clients) or abort (and at which stage). It is
  written from the protocol's rules, one client at a time, not from the server's code:

  * U1 / U2: the clients that answered the key advert / key sharing, after repeatedly
    removing any client left with fewer than ``t`` holders of its shares (itself included);
  * U3: the members of U2 that sent a masked input (the clients in the sum);
  * U4 (consistency check only): the members of U3 that signed U3; a signer goes on only if
    at least ``t - 1`` of its neighbours signed too (it checks their signatures);
  * U5: the members of U3 (U4) that answer the unmask request;
  * every member of U3 needs ``t`` of itself and its neighbours in U5 (mask-seed shares) and
    every member of U2 \\ U3 needs ``t`` of its neighbours in U5 (key shares).

- :func:`plain_sum` is the sum of the included inputs with Python integers mod ``2^bits``.
- :class:`Harness` runs a round stage by stage through the wire encoding, keeping every
  message, so tests can tamper with what the server sends or receives.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from phloem.core.errors import SecAggAbort
from phloem.secagg.client import SecAggClient
from phloem.secagg.crypto.keys import insecure_random_bytes
from phloem.secagg.graph import complete_neighbours
from phloem.secagg.messages import Message, RoundConfig, Stage, decode, encode
from phloem.secagg.ring import dtype_for_bits
from phloem.secagg.server import AggregateResult, SecAggServer

NEVER = Stage.DONE  # "drops at stage DONE" = never drops


@dataclass(frozen=True)
class Outcome:
    ok: bool
    stage: str | None  # where the round aborts (None on success)
    included: frozenset[int]  # U3 on success
    sizes: dict[str, int]


def _alive(group: set[int], stage: Stage, drop: Mapping[int, Stage]) -> set[int]:
    """Members of ``group`` still answering at ``stage``."""
    return {u for u in group if drop.get(u, NEVER) > stage}


def _enough_holders(group: set[int], graph: Mapping[int, Sequence[int]], t: int) -> set[int]:
    """Remove, one client at a time, any client with fewer than ``t - 1`` neighbours left."""
    left = set(group)
    while True:
        starved = [u for u in sorted(left) if len(set(graph[u]) & left) + 1 < t]
        if not starved:
            return left
        left.remove(starved[0])


def expected_outcome(
    graph: Mapping[int, Sequence[int]], t: int, drop: Mapping[int, Stage], consistency: bool
) -> Outcome:
    sizes: dict[str, int] = {}

    def abort(stage: str) -> Outcome:
        return Outcome(False, stage, frozenset(), sizes)

    u1 = _enough_holders(_alive(set(graph), Stage.SETUP, drop), graph, t)
    sizes["U1"] = len(u1)
    if len(u1) < t:
        return abort("setup")
    u2 = _enough_holders(_alive(u1, Stage.SHARE_KEYS, drop), graph, t)
    sizes["U2"] = len(u2)
    if len(u2) < t:
        return abort("share_keys")
    u3 = _alive(u2, Stage.MASKED_INPUT, drop)
    sizes["U3"] = len(u3)
    if len(u3) < t:
        return abort("masked_input")
    if consistency:
        u4 = _alive(u3, Stage.CONSISTENCY, drop)
        sizes["U4"] = len(u4)
        if len(u4) < t:
            return abort("consistency")
        u5 = {u for u in _alive(u4, Stage.UNMASK, drop) if len(set(graph[u]) & u4) + 1 >= t}
    else:
        # without the check a client dropping "at the consistency stage" misses the unmask
        u5 = _alive(u3, Stage.UNMASK, drop)
    sizes["U5"] = len(u5)
    if len(u5) < t:
        return abort("unmask")
    for u in u3:
        if len(({u} | set(graph[u])) & u5) < t:
            return abort("unmask")
    for u in u2 - u3:
        if len(set(graph[u]) & u5) < t:
            return abort("unmask")
    return Outcome(True, None, frozenset(u3), sizes)


def plain_sum(inputs: Mapping[int, np.ndarray], included: Sequence[int], bits: int) -> list[int]:
    """``sum(inputs[u] for u in included) mod 2^bits`` entry by entry, in Python integers."""
    dim = len(next(iter(inputs.values())))
    return [sum(int(inputs[u][i]) for u in included) % (1 << bits) for i in range(dim)]


def random_inputs(ids: Sequence[int], dim: int, bits: int, seed: int) -> dict[int, np.ndarray]:
    """Uniform ring vectors, one per client, in the ring's dtype."""
    gen = np.random.default_rng(seed)
    dt = dtype_for_bits(bits)
    return {u: gen.integers(0, 1 << bits, size=dim, dtype=np.uint64).astype(dt) for u in ids}


def wire(msg: Message) -> Message:
    """``msg`` after a trip through the wire encoding."""
    return decode(encode(msg))


@dataclass
class Harness:
    """One round, cranked by hand: ``outbox`` is what the server wants to send next."""

    config: RoundConfig
    graph: dict[int, tuple[int, ...]]
    inputs: dict[int, np.ndarray]
    clients: dict[int, SecAggClient]
    server: SecAggServer
    outbox: dict[int, Message]
    sent: list[dict[int, Message]] = field(default_factory=list)  # every outbox, in order
    received: list[dict[int, Message]] = field(default_factory=list)  # every stage's replies
    refused: dict[int, SecAggAbort] = field(default_factory=dict)  # clients that dropped out

    @classmethod
    def make(
        cls,
        n: int = 5,
        t: int = 3,
        *,
        dim: int = 8,
        bits: int = 16,
        consistency: bool = False,
        graph: dict[int, tuple[int, ...]] | None = None,
        inputs: dict[int, np.ndarray] | None = None,
        seed: int = 0,
        round_id: int = 7,
        prg: str = "aes-ctr",
    ) -> Harness:
        graph = graph if graph is not None else complete_neighbours(list(range(n)))
        config = RoundConfig(round_id, dim, bits, t, prg=prg, consistency_check=consistency)
        inputs = inputs if inputs is not None else random_inputs(sorted(graph), dim, bits, seed)
        clients = {
            u: SecAggClient(u, inputs[u], rand=insecure_random_bytes(1000 * seed + u))
            for u in graph
        }
        server = SecAggServer(config, graph)
        outbox = server.start()
        return cls(config, graph, inputs, clients, server, outbox, [dict(outbox)])

    def answer(
        self, skip: frozenset[int] | set[int] = frozenset(), tolerate: bool = False
    ) -> dict[int, Message]:
        """Every client in the outbox but ``skip`` handles its message; the server gets it.

        With ``tolerate``, a client that aborts (:class:`SecAggAbort`) drops out, as in the
        driver; otherwise its error propagates.
        """
        replies: dict[int, Message] = {}
        for u, msg in self.outbox.items():
            if u in skip:
                continue
            try:
                replies[u] = wire(self.clients[u].handle(wire(msg)))
            except SecAggAbort as exc:
                if not tolerate:
                    raise
                self.refused[u] = exc
                continue
            self.server.receive(replies[u])
        self.received.append(replies)
        return replies

    def advance(self) -> dict[int, Message]:
        self.outbox = self.server.advance()
        self.sent.append(dict(self.outbox))
        return self.outbox

    def step(
        self, skip: frozenset[int] | set[int] = frozenset(), tolerate: bool = False
    ) -> dict[int, Message]:
        self.answer(skip, tolerate)
        return self.advance()

    def run(self, drop: Mapping[int, Stage] | None = None) -> AggregateResult:
        """Crank to the end; a client dropping at a stage skips it and every later one."""
        drop = drop or {}
        while self.outbox:
            stage = self.server.stage
            self.step({u for u in self.outbox if drop.get(u, NEVER) <= stage}, tolerate=True)
        assert self.server.result is not None
        return self.server.result
