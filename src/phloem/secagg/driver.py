"""Run one secure-aggregation round in process, with dropout injection and accounting.

Every message goes through the wire encoding (:func:`phloem.secagg.messages.encode` and
:func:`~phloem.secagg.messages.decode`) so the byte counts are those a network would carry, and
the time of each client call and of each server step is measured separately (the clients run
one after another, so client time is per-client compute, not wall time of a parallel round).

A client listed for a stage in ``dropout`` never answers that stage's request nor any later
one, whatever the stage: set-up, key sharing, masked input, consistency check or unmasking.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from phloem.core.errors import ConfigError, ProtocolError, SecAggAbort
from phloem.secagg.client import SecAggClient
from phloem.secagg.crypto.keys import RandomBytes
from phloem.secagg.messages import Message, RoundConfig, Stage, decode, encode
from phloem.secagg.server import AggregateResult, SecAggServer

__all__ = ["STAGE_NAMES", "RoundReport", "StageStats", "run_round", "stage_name"]


def stage_name(stage: Stage) -> str:
    """The lower-case name of a protocol stage (``setup``, ``share_keys``, ...)."""
    return stage.name.lower()


#: stage names accepted in ``dropout`` (the stage whose request the client never answers):
#: ``setup``, ``share_keys``, ``masked_input``, ``consistency``, ``unmask``, in protocol order
STAGE_NAMES: dict[str, Stage] = {stage_name(s): s for s in Stage if s is not Stage.DONE}


@dataclass
class StageStats:
    """Per-stage accounting: per-client compute and bytes, server compute."""

    clients: list[int] = field(default_factory=list)  # who answered, aligned with the lists below
    client_s: list[float] = field(default_factory=list)
    down_bytes: list[int] = field(default_factory=list)
    up_bytes: list[int] = field(default_factory=list)
    server_s: float = 0.0
    answered: int = 0
    refused: list[str] = field(default_factory=list)

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
    """What a round produced: the result or the abort, and the accounting."""

    result: AggregateResult | None
    abort: SecAggAbort | None
    stages: dict[str, StageStats]
    wall_s: float

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


def run_round(
    config: RoundConfig,
    neighbours: Mapping[int, Sequence[int]],
    inputs: Mapping[int, np.ndarray] | Callable[[int, RoundConfig], np.ndarray],
    *,
    dropout: Mapping[str, Collection[int]] | None = None,
    rand: Callable[[int], RandomBytes] | None = None,
) -> RoundReport:
    """One full round over the clients of ``neighbours``.

    Parameters
    ----------
    inputs
        Each client's ring vector, or ``f(client, config)`` that makes it when it is due.
    dropout
        ``{stage name: clients}``: see :data:`STAGE_NAMES`.
    rand
        ``rand(client)`` -> that client's secret byte source (``os.urandom`` by default).

    Returns
    -------
    RoundReport
        ``result`` is set on success; ``abort`` holds the reason otherwise.
    """
    drop_at: dict[int, Stage] = {}
    for name, ids in (dropout or {}).items():
        if name not in STAGE_NAMES:
            raise ConfigError("dropout", f"unknown stage {name!r}", list(STAGE_NAMES))
        for u in ids:
            if u not in neighbours:
                raise ConfigError("dropout", f"client {u} is not in this round")
            prev = drop_at.get(u)
            drop_at[u] = STAGE_NAMES[name] if prev is None else min(prev, STAGE_NAMES[name])

    def data_of(u: int) -> np.ndarray | Callable[[RoundConfig], np.ndarray]:
        if callable(inputs):
            return lambda cfg: inputs(u, cfg)
        return inputs[u]

    clients = {
        u: SecAggClient(u, data_of(u), rand=rand(u) if rand else os.urandom) for u in neighbours
    }
    stats: dict[str, StageStats] = {}
    t_round = time.perf_counter()
    t0 = time.perf_counter()
    server = SecAggServer(config, neighbours)
    outbox: dict[int, Message] = server.start()
    stats[stage_name(Stage.SETUP)] = StageStats(server_s=time.perf_counter() - t0)
    try:
        while outbox:
            stage = server.stage
            st = stats.setdefault(stage_name(stage), StageStats())
            for u, msg in outbox.items():
                if u in drop_at and drop_at[u] <= stage:
                    continue
                down = encode(msg)
                t0 = time.perf_counter()
                try:
                    reply = encode(clients[u].handle(decode(down)))
                except (SecAggAbort, ProtocolError) as exc:  # the client drops out
                    st.refused.append(f"{u}: {exc}")
                    continue
                st.clients.append(u)
                st.client_s.append(time.perf_counter() - t0)
                st.down_bytes.append(len(down))
                st.up_bytes.append(len(reply))
                # delivered at once: the server never holds more than one reply in flight
                t0 = time.perf_counter()
                try:
                    server.receive(decode(reply))
                    st.answered += 1
                except ProtocolError as exc:  # refused by the server: a dropout too
                    st.refused.append(f"{u} (server): {exc}")
                st.server_s += time.perf_counter() - t0
            t0 = time.perf_counter()
            try:  # closing a stage is booked to that stage
                outbox = server.advance()
            finally:
                st.server_s += time.perf_counter() - t0
    except SecAggAbort as exc:
        return RoundReport(None, exc, stats, time.perf_counter() - t_round)
    return RoundReport(server.result, None, stats, time.perf_counter() - t_round)
