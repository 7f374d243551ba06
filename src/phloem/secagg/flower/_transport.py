"""The Flower transport: phloem's protocol messages over a Flower ``Grid``.

:class:`GridTransport` is the :class:`~phloem.secagg.transport.Transport` of
:class:`~phloem.secagg.flower.PhloemSecAggWorkflow`: for each stage it wraps every request in a
Flower message (the phloem wire bytes in a ``ConfigRecord``, see :mod:`._records`; the
masked-input request also carries the client's ``FitIns`` and the quantiser), sends them with
:func:`send_and_receive` (Flower's push and pull, polled every ``poll_interval_s``) and yields
the replies' wire bytes to the round loop. A client that answers with an error, not at all
within ``timeout_s``, or with something unreadable is a dropout; its reason is kept, for
``strategy.aggregate_fit``'s ``failures``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from flwr.app import Message, MessageType, RecordDict
from flwr.common import FitRes
from flwr.compat.common.recorddict_compat import recorddict_to_fitres
from flwr.serverapp import Grid

from phloem.core.errors import PhloemError, ProtocolError
from phloem.secagg.flower import _records
from phloem.secagg.messages import Message as ProtocolMessage
from phloem.secagg.messages import SharesDelivery
from phloem.secagg.quantize import Quantizer
from phloem.secagg.stages import Stage
from phloem.secagg.transport import StageStats, Transport

LOGGER = _records.LOGGER


class MissingModError(PhloemError, RuntimeError):
    """The clients do not speak phloem's protocol: their ``ClientApp`` lacks the mod."""


@dataclass(frozen=True)
class Addressing:
    """What the transport needs to know of the round besides its messages."""

    server_round: int
    fitins: Mapping[int, RecordDict]  # each sampled node's FitIns, sent with the masked input
    quantizer: Quantizer
    timeout_s: float | None
    poll_interval_s: float = 0.1


class GridTransport(Transport):
    """Requests and replies as Flower messages over ``grid``; see the module docstring.

    After the round, :attr:`fitres` holds each node's ``FitRes`` (from its masked-input
    reply), :attr:`failures` why each node that dropped out did, and :attr:`down_bytes` /
    :attr:`up_bytes` the phloem payload bytes sent / received per stage.
    """

    def __init__(self, grid: Grid, round_: Addressing) -> None:
        self.grid = grid
        self.round = round_
        self.fitres: dict[int, FitRes] = {}
        self.failures: dict[int, BaseException] = {}
        self.down_bytes: dict[str, int] = {}
        self.up_bytes: dict[str, int] = {}
        self._asked: set[int] = set()
        self._replies: list[Message] = []

    def exchange(
        self, stage: Stage, requests: Mapping[int, ProtocolMessage], stats: StageStats
    ) -> Iterator[tuple[int, bytes]]:
        self._asked = set(requests)
        messages = [self._request(nid, msg, stage) for nid, msg in requests.items()]
        self.down_bytes[stage] = sum(_payload_bytes(m.content) for m in messages)
        self._replies = send_and_receive(
            self.grid, messages, self.round.timeout_s, self.round.poll_interval_s
        )
        self.up_bytes[stage] = sum(
            _payload_bytes(m.content) for m in self._replies if m.has_content()
        )
        for reply in self._replies:
            nid = reply.metadata.src_node_id
            if reply.has_error() and nid in self._asked:
                stats.refused.append(f"{nid}: {reply.error.reason}")
            data = self._payload(stage, nid, reply) if nid in self._asked else None
            if data is not None:
                yield nid, data

    def refused(self, stage: Stage, client: int, error: ProtocolError) -> None:
        self._drop(stage, client, error)

    def closing(self, stage: Stage, stats: StageStats) -> None:
        if stage is Stage.SETUP and stats.answered == 0:
            _check_mod(self._replies)
        for nid in self._asked - {m.metadata.src_node_id for m in self._replies}:
            self.failures.setdefault(nid, TimeoutError(f"client {nid}: no reply at {stage}"))
        LOGGER.debug("[%s] %d of %d clients answered", stage, stats.answered, len(self._asked))

    # -- one message each way ---------------------------------------------------------------
    def _request(self, nid: int, msg: ProtocolMessage, stage: Stage) -> Message:
        if isinstance(msg, SharesDelivery):  # the masked input: train first (not a re-mask)
            q = self.round.quantizer
            content = self.round.fitins[nid]
            spec = _records.QuantizerSpec(q.clip, q.levels, q.max_weight)
            content.config_records[_records.RECORD_KEY] = _records.pack(msg, stage, spec)
        else:
            content = RecordDict({_records.RECORD_KEY: _records.pack(msg, stage)})
        return Message(
            content=content,
            dst_node_id=nid,
            message_type=MessageType.TRAIN,
            group_id=str(self.round.server_round),
        )

    def _payload(self, stage: Stage, nid: int, reply: Message) -> bytes | None:
        """The phloem wire bytes of ``reply``, or ``None`` (recorded) when it is a dropout."""
        if reply.has_error():
            self.failures[nid] = RuntimeError(f"client {nid}: {reply.error.reason}")
            return None
        record = _records.find(reply.content)
        if record is None:
            raise MissingModError(missing_mod(f"client {nid} replied without it"))
        try:
            data = _records.payload(record)
            if stage is Stage.MASKED_INPUT and nid not in self.fitres:  # not a re-mask
                self.fitres[nid] = recorddict_to_fitres(reply.content, keep_input=False)
        except (ProtocolError, KeyError) as exc:
            self._drop(stage, nid, exc)
            return None
        return data

    def _drop(self, stage: Stage, nid: int, error: Exception) -> None:
        LOGGER.warning("client %d dropped at %s: %s", nid, stage, error)
        self.failures[nid] = error


def send_and_receive(
    grid: Grid, messages: list[Message], timeout_s: float | None, poll_interval_s: float
) -> list[Message]:
    """``grid.send_and_receive`` with a poll interval of our choosing.

    Flower's own ``send_and_receive`` sleeps a fixed 3 s between two pulls in a deployment
    (``flwr.superlink.grid.http_grid``), so every stage would last a multiple of 3 s however
    fast the clients answer. This one pushes the same way and pulls every
    ``poll_interval_s`` until every message is answered or ``timeout_s`` has passed.
    """
    pending = set(grid.push_messages(messages))
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    replies: list[Message] = []
    while pending:
        got = list(grid.pull_messages(pending))
        replies.extend(got)
        pending.difference_update(m.metadata.reply_to_message_id for m in got)
        if not pending:
            break
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            time.sleep(min(poll_interval_s, left))
        else:
            time.sleep(poll_interval_s)
    return replies


def _payload_bytes(content: RecordDict) -> int:
    record = _records.find(content)
    data = None if record is None else record.get("message")
    return len(data) if isinstance(data, bytes) else 0


def missing_mod(detail: str) -> str:
    """The message of a :class:`MissingModError`: what is missing, and how to add it."""
    return (
        f"no phloem secure-aggregation record in the clients' replies ({detail}). "
        "PhloemSecAggWorkflow needs its client mod: build the ClientApp as "
        "ClientApp(client_fn=..., mods=[phloem_secagg_mod]) with "
        "`from phloem.secagg.flower import phloem_secagg_mod` (it replaces Flower's "
        "secaggplus_mod; the two protocols do not interoperate)"
    )


#: in an error reply, what says that phloem's mod answered (and refused the round)
_REFUSAL = "refused the round"


def _check_mod(replies: list[Message]) -> None:
    """No client answered the set-up: if they all errored, the mod is the likely cause --
    unless the errors are the mod's own refusals (the round violated the clients' policy;
    the round's abort then says why)."""
    errors = [m for m in replies if m.has_error()]
    if any(_REFUSAL in (m.error.reason or "") for m in errors):
        return
    if errors and len(errors) == len(replies):
        first = errors[0]
        raise MissingModError(
            missing_mod(
                f"all {len(errors)} replies to the set-up were errors; the first, from client "
                f"{first.metadata.src_node_id}: {first.error.reason}"
            )
        )
