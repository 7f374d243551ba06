"""Run one secure-aggregation round in process, with dropout injection and accounting.

:class:`InProcessTransport` is the in-process :class:`~phloem.secagg.transport.Transport`: the
clients live in this process and answer one after another. Every message goes through the wire
encoding (:func:`phloem.secagg.messages.encode` and :func:`~phloem.secagg.messages.decode`) so
the byte counts are those a network would carry, and the time of each client call is measured
separately from the server's (the clients run one after another, so client time is per-client
compute, not wall time of a parallel round). :func:`run_round` builds the clients and runs the
round with :func:`phloem.secagg.transport.run_protocol`.

A client listed for a stage in ``dropout`` never answers that stage's request nor any later
one, whatever the stage: set-up, key sharing, masked input, consistency check or unmasking.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence

import numpy as np

from phloem.core.errors import ConfigError, ProtocolError, SecAggAbort
from phloem.secagg.client import SecAggClient
from phloem.secagg.crypto.keys import RandomBytes
from phloem.secagg.messages import Message, RoundConfig, decode, encode
from phloem.secagg.policy import ClientPolicy
from phloem.secagg.stages import PROTOCOL_STAGES, DropoutSchedule, Stage
from phloem.secagg.transport import RoundReport, StageStats, Transport, run_protocol

__all__ = [
    "STAGE_NAMES",
    "InProcessTransport",
    "RoundReport",
    "StageStats",
    "run_round",
    "stage_name",
]


def stage_name(stage: Stage) -> str:
    """The name of a protocol stage: ``stage.value``.

    Kept for older callers; a :class:`Stage` is its own name.
    """
    return stage.value


#: Kept for older callers: ``{name: stage}`` of
#: :data:`~phloem.secagg.stages.PROTOCOL_STAGES`. Use :class:`Stage` and ``Stage.parse``.
STAGE_NAMES: dict[str, Stage] = {s.value: s for s in PROTOCOL_STAGES}


def _drop_schedule(dropout: DropoutSchedule | None, clients: Collection[int]) -> dict[int, Stage]:
    """``{client: first stage it does not answer}`` from ``{stage: clients}``.

    A client listed at several stages drops at the earliest. Keys are :class:`Stage` members
    or their names.

    Raises
    ------
    ConfigError
        Naming ``dropout``: an unknown stage (listing the stages), or a client not in
        ``clients``.
    """
    drop_at: dict[int, Stage] = {}
    for name, ids in (dropout or {}).items():
        stage = Stage.parse(name, field="dropout")
        for u in ids:
            if u not in clients:
                raise ConfigError("dropout", f"client {u} is not in this round")
            prev = drop_at.get(u)
            drop_at[u] = stage if prev is None else min(prev, stage)
    return drop_at


class InProcessTransport(Transport):
    """Clients in this process, called one after another, that leave at scheduled stages.

    Parameters
    ----------
    clients
        The round's clients by id.
    drop_at
        ``{client: stage}``: the client answers no request of that stage or later.
    """

    def __init__(self, clients: Mapping[int, SecAggClient], drop_at: Mapping[int, Stage]) -> None:
        self.clients = clients
        self.drop_at = drop_at

    def exchange(
        self, stage: Stage, requests: Mapping[int, Message], stats: StageStats
    ) -> Iterator[tuple[int, bytes]]:
        for u, msg in requests.items():
            if u in self.drop_at and self.drop_at[u] <= stage:
                continue
            down = encode(msg)
            t0 = time.perf_counter()
            try:
                reply = encode(self.clients[u].handle(decode(down)))
            except (SecAggAbort, ProtocolError) as exc:  # the client drops out
                stats.refused.append(f"{u}: {exc}")
                continue
            stats.clients.append(u)
            stats.client_s.append(time.perf_counter() - t0)
            stats.down_bytes.append(len(down))
            stats.up_bytes.append(len(reply))
            # delivered at once: the server never holds more than one reply in flight
            yield u, reply


def run_round(
    config: RoundConfig,
    neighbours: Mapping[int, Sequence[int]],
    inputs: Mapping[int, np.ndarray] | Callable[[int, RoundConfig], np.ndarray],
    *,
    dropout: DropoutSchedule | None = None,
    rand: Callable[[int], RandomBytes] | None = None,
    policy: ClientPolicy | None = None,
) -> RoundReport:
    """One full round over the clients of ``neighbours``.

    Parameters
    ----------
    inputs
        Each client's ring vector, or ``f(client, config)`` that makes it when it is due.
    dropout
        ``{stage: clients}``: each client answers no request from that stage on. Keys are
        :class:`~phloem.secagg.stages.Stage` members or their names (``setup``,
        ``share_keys``, ``masked_input``, ``consistency``, ``unmask``).
    rand
        ``rand(client)`` -> that client's secret byte source (``os.urandom`` by default).
    policy
        Every client's :class:`~phloem.secagg.policy.ClientPolicy` (by default ``t > k / 2``
        and at least 2 clients).

    Returns
    -------
    RoundReport
        ``result`` is set on success; ``abort`` holds the reason otherwise.
    """
    drop_at = _drop_schedule(dropout, neighbours)

    def data_of(u: int) -> np.ndarray | Callable[[RoundConfig], np.ndarray]:
        if callable(inputs):
            return lambda cfg: inputs(u, cfg)
        return inputs[u]

    clients = {
        u: SecAggClient(u, data_of(u), rand=rand(u) if rand else os.urandom, policy=policy)
        for u in neighbours
    }
    return run_protocol(config, neighbours, InProcessTransport(clients, drop_at))
