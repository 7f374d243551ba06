"""The server's round loop, written once, over a :class:`Transport` that carries the messages.

:func:`run_protocol` runs one round of :class:`~phloem.secagg.server.SecAggServer`: for each
stage in order it hands the stage's requests to the transport, feeds the server every reply that
comes back (a reply the server refuses makes its sender a dropout), and closes the stage, until
the sum is ready or the server aborts. It keeps the server's side of the accounting (server
time, wall time and who answered, per stage) in a :class:`RoundReport`.

What differs between deployments lives in the transport: how a request reaches a client, how
long to wait, what a lost client looks like, and what to measure on the way. phloem has two:

- :class:`phloem.secagg.driver.InProcessTransport` -- clients in this process, called one
  after another, with dropouts injected at chosen stages (per-client compute time and bytes);
- the Flower workflow's transport (:mod:`phloem.secagg.flower.workflow`) -- requests and
  replies travel as Flower messages over a ``Grid``; errors and timeouts are dropouts.

Replies travel as wire bytes (:func:`phloem.secagg.messages.encode`), so a transport never
needs to understand a message, and the loop decodes (and checks the claimed sender of) each
reply as part of the server's work.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from phloem.core.errors import ProtocolError, SecAggAbort
from phloem.secagg.messages import Message, RoundConfig, decode
from phloem.secagg.server import AggregateResult, SecAggServer
from phloem.secagg.stages import Stage

__all__ = ["RoundReport", "StageStats", "Transport", "run_protocol"]


@dataclass
class StageStats:
    """Per-stage accounting: per-client compute and bytes, server compute.

    The round loop fills ``server_s``, ``wall_s``, ``answered`` and the server's refusals in
    ``refused``; the transport may fill the per-client lists (who answered, with its compute
    time and bytes, aligned) and add its own refusals.
    """

    clients: list[int] = field(default_factory=list)  # who answered, aligned with the lists below
    client_s: list[float] = field(default_factory=list)
    down_bytes: list[int] = field(default_factory=list)
    up_bytes: list[int] = field(default_factory=list)
    server_s: float = 0.0
    answered: int = 0
    refused: list[str] = field(default_factory=list)
    #: seconds from handing the requests to the transport until the stage was closed
    wall_s: float = 0.0

    def summary(self) -> dict[str, float | int]:
        c = self.client_s or [0.0]
        return {
            "answered": self.answered,
            "client_mean_s": float(np.mean(c)),
            "client_max_s": float(np.max(c)),
            "server_s": self.server_s,
            "down_mean_bytes": int(np.mean(self.down_bytes)) if self.down_bytes else 0,
            "up_mean_bytes": int(np.mean(self.up_bytes)) if self.up_bytes else 0,
        }


@dataclass
class RoundReport:
    """What a round produced: the result or the abort, and the accounting.

    ``stages`` is keyed by :class:`~phloem.secagg.stages.Stage` (each equal to its name, so
    ``report.stages["unmask"]`` works), in protocol order; ``sets`` has the sizes of U1..U5
    that the server reached, also when it aborted. A stage that ran twice (the re-mask after
    an exclusion) has one entry with both exchanges' accounting.
    """

    result: AggregateResult | None
    abort: SecAggAbort | None
    stages: dict[Stage, StageStats]
    wall_s: float
    sets: dict[str, int] = field(default_factory=dict)
    #: clients the server left out for misbehaving, and why (also when the round aborted)
    excluded: dict[int, str] = field(default_factory=dict)
    #: holders whose revealed shares failed their commitments (ignored), and why
    faulty: dict[int, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.result is not None

    def upload_bytes_per_client(self) -> float:
        """Mean bytes one client sent in the round (over the clients in the last stage)."""
        per: dict[int, int] = {}
        for st in self.stages.values():
            for u, b in zip(st.clients, st.up_bytes, strict=True):
                per[u] = per.get(u, 0) + b
        finished = list(self.stages.values())[-1].clients if self.stages else []
        return float(np.mean([per[u] for u in finished])) if finished else 0.0

    def totals(self) -> dict[str, float]:
        """Client time (sum over stages of the per-client mean), server time, bytes per client."""
        return {
            "client_s": sum(float(np.mean(s.client_s)) for s in self.stages.values() if s.client_s),
            "server_s": sum(s.server_s for s in self.stages.values()),
            "up_bytes": sum(float(np.mean(s.up_bytes)) for s in self.stages.values() if s.up_bytes),
            "down_bytes": sum(
                float(np.mean(s.down_bytes)) for s in self.stages.values() if s.down_bytes
            ),
        }


class Transport(ABC):
    """Carries one round's requests to the clients and their replies back to the server.

    One method to implement, :meth:`exchange`; two optional hooks with no-op defaults.
    """

    @abstractmethod
    def exchange(
        self, stage: Stage, requests: Mapping[int, Message], stats: StageStats
    ) -> Iterable[tuple[int, bytes]]:
        """Send each client its request of ``stage``; yield ``(client, reply wire bytes)``.

        Yield replies as they arrive: the server adds each masked input to its running sum
        before the next is asked for, so a lazy iterator keeps one reply in memory at a time.
        A client that errors, times out or cannot be reached is simply not yielded (it is a
        dropout); the transport may record it, and its own measurements, in ``stats``.
        """

    def refused(self, stage: Stage, client: int, error: ProtocolError) -> None:  # noqa: B027
        """Hook: the server refused ``client``'s reply at ``stage``; the client is out."""

    def closing(self, stage: Stage, stats: StageStats) -> None:  # noqa: B027
        """Hook: every reply of ``stage`` is in (``stats.answered`` of them accepted); the
        server closes the stage next. May raise to stop the round."""


def run_protocol(
    config: RoundConfig, neighbours: Mapping[int, Sequence[int]], transport: Transport
) -> RoundReport:
    """Run one round of a :class:`SecAggServer` for ``config`` over ``transport``.

    Parameters
    ----------
    config, neighbours
        The round's public parameters and its symmetric neighbour graph.
    transport
        How requests reach the clients and replies come back.

    Returns
    -------
    RoundReport
        ``result`` is set on success; ``abort`` holds the reason otherwise. Set-up time of the
        server is booked to the ``setup`` stage, closing a stage to that stage.

    Raises
    ------
    ConfigError
        When the server refuses ``config`` or ``neighbours``. Whatever the transport raises
        also propagates.
    """
    t_round = t0 = time.perf_counter()
    server = SecAggServer(config, neighbours)
    outbox: dict[int, Message] = server.start()
    stats: dict[Stage, StageStats] = {Stage.SETUP: StageStats(server_s=time.perf_counter() - t0)}
    try:
        while outbox:
            stage = server.stage
            st = stats.setdefault(stage, StageStats())
            t_stage = time.perf_counter()
            for client, reply in transport.exchange(stage, outbox, st):
                _deliver(server, transport, st, client, reply)
            transport.closing(stage, st)
            t0 = time.perf_counter()
            try:  # closing a stage is booked to that stage
                outbox = server.advance()
            finally:
                st.server_s += time.perf_counter() - t0
                st.wall_s = time.perf_counter() - t_stage
    except SecAggAbort as exc:
        result: AggregateResult | None = None
        abort: SecAggAbort | None = _with_refusals(exc, stats.get(Stage.parse(exc.stage)))
    else:
        result, abort = server.result, None
    return RoundReport(
        result,
        abort,
        stats,
        time.perf_counter() - t_round,
        dict(server.sizes),
        dict(server.excluded),
        dict(server.faulty),
    )


def _with_refusals(abort: SecAggAbort, stats: StageStats | None) -> SecAggAbort:
    """``abort`` with, when clients dropped out of its stage by refusing, how many and the
    first reason (a round that clients refuse, e.g. for their policy, says why)."""
    if stats is None or not stats.refused:
        return abort
    count = len(stats.refused)
    return SecAggAbort(
        abort.stage, f"{abort.reason}; {count} refused at this stage, first: {stats.refused[0]}"
    )


def _deliver(
    server: SecAggServer, transport: Transport, st: StageStats, client: int, reply: bytes
) -> None:
    """Hand one reply to the server; a reply it refuses makes ``client`` a dropout."""
    stage = server.stage
    t0 = time.perf_counter()
    try:
        msg = decode(reply)
        sender = getattr(msg, "sender", None)
        if sender != client:
            raise ProtocolError(f"reply from client {client} claims to come from {sender}")
        server.receive(msg)
        st.answered += 1
    except ProtocolError as exc:
        st.refused.append(f"{client} (server): {exc}")
        transport.refused(stage, client, exc)
    st.server_s += time.perf_counter() - t0
