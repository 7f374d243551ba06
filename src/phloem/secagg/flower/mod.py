"""The client side of phloem's secure aggregation in Flower: a ``ClientApp`` mod.

``ClientApp(client_fn=..., mods=[phloem_secagg_mod])`` is all a client needs. The mod answers
the messages of :class:`~phloem.secagg.flower.PhloemSecAggWorkflow` (those whose content holds
the :data:`~phloem.secagg.flower.RECORD_KEY` record) with a
:class:`~phloem.secagg.client.SecAggClient`, and passes every other message (evaluation,
``get_parameters``, a plain ``fit`` of another workflow) to the wrapped app unchanged.

On the masked-input request it calls the wrapped app's ``fit`` (``call_next``), flattens the
returned arrays into one vector, quantises it together with the client's weight
(``num_examples``, capped at ``max_weight``) with :class:`~phloem.secagg.quantize.Quantizer`
and sends the masked ring vector. The reply keeps the ``FitRes`` it wraps -- status,
``num_examples`` and metrics, which Flower's strategies expect, exactly as Flower's
``secaggplus_mod`` does -- with its arrays removed: only the masked vector leaves the node.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from flwr.app import ArrayRecord, Context, Message, RecordDict
from flwr.clientapp.typing import ClientAppCallable, Mod
from flwr.common import parameters_to_ndarrays
from flwr.compat.common.recorddict_compat import recorddict_to_fitres

from phloem.core.errors import ProtocolError
from phloem.secagg.client import SecAggClient
from phloem.secagg.flower import _records, _state
from phloem.secagg.messages import Message as ProtocolMessage
from phloem.secagg.messages import RoundConfig, Setup, SharesDelivery, Stage
from phloem.secagg.policy import ClientPolicy

__all__ = ["DuplicateSetupError", "make_phloem_secagg_mod", "phloem_secagg_mod"]

GeneratorFactory = Callable[[int, int], np.random.Generator]


def _fresh_generator(node_id: int, round_id: int) -> np.random.Generator:
    return np.random.default_rng()


def _fit_input(
    msg: Message,
    ctxt: Context,
    call_next: ClientAppCallable,
    record_quantizer: _records.QuantizerSpec,
    gen_of: GeneratorFactory,
    out: list[Message],
) -> Callable[[RoundConfig], np.ndarray]:
    """The input function of the masked-input stage: train, flatten, quantise."""

    def make_input(cfg: RoundConfig) -> np.ndarray:
        reply = call_next(msg, ctxt)
        if reply.has_error():
            raise ProtocolError(f"the ClientApp's fit failed: {reply.error.reason}")
        try:
            fitres = recorddict_to_fitres(reply.content, keep_input=True)
        except KeyError as exc:
            raise ProtocolError(
                f"the ClientApp's reply is not a FitRes (missing {exc}): phloem_secagg_mod, "
                "like Flower's secaggplus_mod, wraps a ClientApp(client_fn=...) whose client "
                "implements fit"
            ) from exc
        arrays = parameters_to_ndarrays(fitres.parameters)
        flat = np.concatenate(
            [np.asarray(a, dtype=np.float64).ravel() for a in arrays] or [np.zeros(0)]
        )
        if flat.size != cfg.dim - 1:
            raise ProtocolError(
                f"the model has {flat.size} parameters, the round aggregates {cfg.dim - 1} "
                "(the server's global model): client and server models differ"
            )
        quantizer = record_quantizer.build(cfg.modulus_bits)
        weight = float(fitres.num_examples)
        if weight > quantizer.max_weight:
            _records.LOGGER.warning(
                "num_examples = %s exceeds max_weight = %s: this client's weight is capped "
                "at max_weight (raise max_weight in PhloemSecAggWorkflow to avoid it)",
                fitres.num_examples,
                quantizer.max_weight,
            )
            weight = quantizer.max_weight
        out.append(reply)
        return quantizer.encode(flat, weight, gen_of(msg.metadata.dst_node_id, cfg.round_id))

    return make_input


def _reply(msg: Message, reply: ProtocolMessage, stage: Stage, fit: Message | None) -> Message:
    """The Flower reply: the fit reply's records without arrays, plus phloem's record."""
    if fit is None:
        content = RecordDict()
    else:
        content = fit.content
        for key in list(content.array_records):
            content.array_records[key] = ArrayRecord()
    content.config_records[_records.RECORD_KEY] = _records.pack(reply, stage)
    return Message(content, reply_to=msg)


class DuplicateSetupError(ProtocolError):
    """A set-up arrived for a round this node is already in: refused, the round's state kept.

    The server sends one set-up per node and round; a second one is a replay or a server bug.
    Accepting it would silently throw away the keys and shares of the round in progress, so
    the mod answers it with an error instead and leaves the round's state as it was. The
    set-up of a *new* round is always accepted, even when an older round never finished here.
    """


def _round_in_progress(
    ctxt: Context, request: ProtocolMessage
) -> tuple[SecAggClient, _state.InputSlot] | None:
    """The stored client ``request`` continues, or ``None`` for a set-up of a new round.

    Raises, *without* touching the stored state, on a message that must not disturb the
    round in progress: :class:`DuplicateSetupError` for a second set-up of that round, a
    :class:`ProtocolError` for a later-stage message of another round (stale or replayed).
    """
    try:
        stored = _state.load(ctxt.state)
    except ProtocolError:
        _state.clear(ctxt.state)
        if not isinstance(request, Setup):
            raise
        stored = None  # an unreadable old state holds no round worth keeping
    current = None if stored is None or stored[0].config is None else stored[0].config.round_id
    if isinstance(request, Setup):
        if current == request.round_id:
            assert stored is not None
            raise DuplicateSetupError(
                f"node {request.client} got a second set-up for round {request.round_id}, "
                f"which is in progress here (at stage {stored[0].stage}): refused, the round "
                "goes on with the first set-up (a replayed message, or two workflows sharing "
                "one round id)"
            )
        if current is not None:
            _records.LOGGER.info(
                "set-up of round %d while round %d was unfinished here: the old round's "
                "state is dropped",
                request.round_id,
                current,
            )
        return None
    if stored is None:
        raise ProtocolError(
            f"got {type(request).__name__} but this node holds no round in progress "
            "(it missed the set-up, or its state was lost)"
        )
    if current is not None and current != request.round_id:
        raise ProtocolError(
            f"got {type(request).__name__} of round {request.round_id} while round {current} "
            "is in progress here: refused (stale or replayed), the round in progress goes on"
        )
    return stored


#: the policy of :data:`phloem_secagg_mod`: the targets of the workflow's defaults (10% of the
#: clients corrupt, 2^-40), so a round planned by a default workflow passes at every client
DEFAULT_POLICY = ClientPolicy(tolerate_corrupt=0.1, sigma=40.0)


def make_phloem_secagg_mod(
    generator: GeneratorFactory | None = None,
    policy: ClientPolicy = DEFAULT_POLICY,
) -> Mod:
    """A client mod answering phloem's secure aggregation; see :data:`phloem_secagg_mod`.

    Parameters
    ----------
    generator
        ``generator(node_id, round_id)`` -> the :class:`numpy.random.Generator` of the
        stochastic rounding in that round (it needs no secrecy: the masks use ``os.urandom``
        whatever this is). By default a fresh, OS-seeded generator; pass e.g.
        ``lambda node, rnd: np.random.default_rng([seed, node, rnd])`` for reproducible runs.
    policy
        What this node accepts from the server (:class:`~phloem.secagg.policy.ClientPolicy`):
        it refuses (answers with an error, i.e. drops out of) a round whose number of
        clients, share holders or threshold violates it. The default tolerates 10% corrupt
        clients at 2^-40, the workflow's default targets; a server given ``num_shares`` and
        ``threshold`` that miss them is refused.

    Returns
    -------
    Mod
        ``mod(msg, ctxt, call_next) -> Message`` for ``ClientApp(..., mods=[mod])``.
    """
    gen_of = generator or _fresh_generator

    def phloem_secagg_mod(msg: Message, ctxt: Context, call_next: ClientAppCallable) -> Message:
        record = _records.find(msg.content) if msg.has_content() else None
        if record is None:
            return call_next(msg, ctxt)
        try:
            request = _records.unpack(record)
        except BaseException:
            _state.clear(ctxt.state)  # this node is out of the round (Flower replies an error)
            raise
        stored = _round_in_progress(ctxt, request)  # raises, state untouched, on a replay
        try:
            if stored is None:
                slot = _state.InputSlot()
                client = SecAggClient(msg.metadata.dst_node_id, slot, policy=policy)
            else:
                client, slot = stored
            stage = client.stage
            fit: list[Message] = []
            if isinstance(request, SharesDelivery):
                slot.fn = _fit_input(
                    msg, ctxt, call_next, _records.quantizer_of(record), gen_of, fit
                )
            try:
                reply = client.handle(request)
            finally:
                slot.fn = None
        except BaseException:
            _state.clear(ctxt.state)  # this node is out of the round (Flower replies an error)
            raise
        if client.stage is Stage.DONE:
            _state.clear(ctxt.state)
        else:
            _state.save(ctxt.state, client, slot)
        return _reply(msg, reply, stage, fit[0] if fit else None)

    return phloem_secagg_mod


phloem_secagg_mod: Mod = make_phloem_secagg_mod()
"""Flower client mod running phloem's SecAgg / SecAgg+ client (OS-seeded rounding).

Use it where Flower's ``secaggplus_mod`` goes: ``ClientApp(client_fn, mods=[phloem_secagg_mod])``,
together with :class:`~phloem.secagg.flower.PhloemSecAggWorkflow` on the server. The
:class:`~phloem.secagg.client.SecAggClient` of the current round is kept, pickled, in
``ctxt.state`` between stages (see :mod:`phloem.secagg.flower._state`); a client that fails a
check or cannot train raises, which Flower reports to the server as an error reply, and the
server treats that client as dropped out.
"""
