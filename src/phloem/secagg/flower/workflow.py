"""The server side of phloem's secure aggregation in Flower: a fit workflow.

:class:`PhloemSecAggWorkflow` goes where Flower's ``SecAggPlusWorkflow`` goes,
``DefaultWorkflow(fit_workflow=PhloemSecAggWorkflow(...))``, and runs one
:class:`~phloem.secagg.server.SecAggServer` per round over Flower's ``Grid``:

1. **plan** -- ask the strategy which clients to sample (``configure_fit``), choose the
   SecAgg+ graph (:func:`~phloem.secagg.graph.choose_parameters` or the given ``num_shares``
   and ``threshold``), the quantiser, and the ring dimension (all entries of the global model
   plus one for the weight);
2. **run the protocol** -- for each stage, send every addressed client its phloem message
   (wire bytes in a ``ConfigRecord``, see :mod:`phloem.secagg.flower._records`), collect the
   replies that arrive within ``timeout_s``, feed them to the server and advance. A client that
   errors, times out or sends something the server refuses is a dropout, at any stage;
3. **finish** -- decode the unmasked sum into the weighted mean, reshape it into the model's
   arrays and hand it to ``strategy.aggregate_fit`` the way Flower's workflow does: one
   ``FitRes`` per client whose input is in the sum, each carrying the aggregate (so FedAvg's
   weighted average of identical arrays returns the aggregate) and the client's own
   ``num_examples`` and metrics.

A round that cannot finish (too few clients left for the threshold) is logged and skipped,
leaving the global model unchanged, as Flower's workflow does.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import cast

import numpy as np
from flwr.app import Context, Message, MessageType, RecordDict
from flwr.common import (
    Code,
    FitRes,
    NDArrays,
    Status,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from flwr.compat.common.recorddict_compat import (
    arrayrecord_to_parameters,
    fitins_to_recorddict,
    parameters_to_arrayrecord,
    recorddict_to_fitres,
)
from flwr.server import LegacyContext
from flwr.server.client_proxy import ClientProxy
from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD
from flwr.serverapp import Grid

from phloem.core.errors import ConfigError, PhloemError, ProtocolError, SecAggAbort
from phloem.secagg.aggregate import Protocol
from phloem.secagg.crypto.prg import PrgKind
from phloem.secagg.driver import stage_name
from phloem.secagg.flower import _records
from phloem.secagg.graph import GraphParams, check_parameters, choose_parameters
from phloem.secagg.messages import MaskedInput, RoundConfig, Stage
from phloem.secagg.messages import Message as ProtocolMessage
from phloem.secagg.quantize import Quantizer
from phloem.secagg.ring import dtype_for_bits
from phloem.secagg.server import AggregateResult, SecAggServer

__all__ = [
    "MissingModError",
    "PhloemSecAggWorkflow",
    "Protocol",
    "RoundSummary",
    "WorkflowConfig",
]

LOGGER = _records.LOGGER


class MissingModError(PhloemError, RuntimeError):
    """The clients do not speak phloem's protocol: their ``ClientApp`` lacks the mod."""


@dataclass(frozen=True)
class WorkflowConfig:
    """Validated parameters of :class:`PhloemSecAggWorkflow` (see its docstring)."""

    num_shares: int | None = None
    threshold: int | None = None
    protocol: Protocol = Protocol.SECAGG_PLUS
    clipping_range: float = 8.0
    levels: int | None = None
    modulus_bits: int = 32
    max_weight: float = 1000.0
    timeout_s: float | None = None
    dropout: float = 0.1
    corrupt: float = 0.1
    sigma: float = 40.0
    eta: float = 30.0
    prg: PrgKind = PrgKind.AES_CTR
    consistency_check: bool = False
    seed: int | None = None

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "protocol", Protocol(self.protocol))
        except ValueError as exc:
            raise ConfigError("protocol", f"{self.protocol!r} is unknown", list(Protocol)) from exc
        try:
            object.__setattr__(self, "prg", PrgKind(self.prg))
        except ValueError as exc:
            raise ConfigError("prg", f"{self.prg!r} is unknown", list(PrgKind)) from exc
        self._check_graph()
        for name in ("clipping_range", "max_weight"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(name, f"{value!r} must be a positive finite number", ["> 0"])
        if self.levels is not None and self.levels < 1:
            raise ConfigError("levels", f"{self.levels} quantisation levels", [">= 1", None])
        dtype_for_bits(self.modulus_bits)
        if self.timeout_s is not None and not self.timeout_s > 0:
            raise ConfigError("timeout_s", f"{self.timeout_s!r} seconds", ["> 0", None])
        for name in ("dropout", "corrupt"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(name, f"{getattr(self, name)!r} is not a fraction", ["[0, 1)"])

    def _check_graph(self) -> None:
        if self.protocol is Protocol.SECAGG and self.num_shares is not None:
            raise ConfigError(
                "num_shares",
                "plain SecAgg shares with every sampled client; leave num_shares unset "
                "or use protocol='secagg+'",
            )
        if self.protocol is Protocol.SECAGG_PLUS and (self.num_shares is None) != (
            self.threshold is None
        ):
            raise ConfigError(
                "threshold" if self.threshold is None else "num_shares",
                "give both num_shares and threshold, or neither (then they are chosen for "
                "the sampled clients from dropout, corrupt, sigma and eta)",
            )


@dataclass
class RoundSummary:
    """What one secure-aggregation round did (``PhloemSecAggWorkflow.last_round``)."""

    server_round: int
    sampled: int
    graph: GraphParams
    quantizer: Quantizer
    #: clients still in after each stage (U1..U5, as :class:`AggregateResult` names them)
    sets: dict[str, int] = field(default_factory=dict)
    #: wall-clock seconds of each stage, clients' work and transport included
    stage_s: dict[str, float] = field(default_factory=dict)
    #: phloem payload bytes sent to / received from clients, per stage
    down_bytes: dict[str, int] = field(default_factory=dict)
    up_bytes: dict[str, int] = field(default_factory=dict)
    #: clients whose inputs are in the aggregate
    included: tuple[int, ...] = ()
    aborted: str | None = None


@dataclass
class _Plan:
    server_round: int
    proxies: dict[int, ClientProxy]
    fitins: dict[int, RecordDict]
    graph: GraphParams
    neighbours: dict[int, tuple[int, ...]]
    quantizer: Quantizer
    layout: list[tuple[tuple[int, ...], np.dtype[np.generic]]]
    config: RoundConfig


@dataclass
class _Collected:
    fitres: dict[int, FitRes] = field(default_factory=dict)
    failures: dict[int, BaseException] = field(default_factory=dict)


class PhloemSecAggWorkflow:
    """Flower fit workflow running phloem's SecAgg / SecAgg+ (drop-in for ``SecAggPlusWorkflow``).

    Use it as ``DefaultWorkflow(fit_workflow=PhloemSecAggWorkflow(...))`` with
    ``ClientApp(client_fn, mods=[phloem_secagg_mod])`` on the clients. Each client uploads
    ``[w * clip(params), w]`` quantised and masked in Z_(2^modulus_bits), ``w`` its
    ``num_examples`` capped at ``max_weight``; the server learns only the sum, and turns it
    into the weighted mean of the clients' parameters.

    Parameters
    ----------
    num_shares, threshold
        SecAgg+ graph: share holders per client, itself included (``k``), and shares that
        reconstruct a secret (``t``, with ``k / 2 < t <= k``). Give both, or neither: then
        :func:`~phloem.secagg.graph.choose_parameters` picks the cheapest pair that meets the
        security and correctness targets for the sampled clients. ``num_shares`` larger than
        the number of sampled clients means the complete graph.
    protocol
        ``"secagg+"`` (sparse graph) or ``"secagg"`` (complete graph; ``num_shares`` unset).
    clipping_range
        Parameters are clipped to ``[-clipping_range, clipping_range]`` before quantisation.
    levels
        Quantisation levels; ``None`` takes the finest that cannot overflow for the sampled
        clients, ``(2^modulus_bits - 1) // n``. The decoded weighted mean is within
        ``1.5 * n * max_weight * step / W`` of the exact one, ``step = 2 * clipping_range /
        levels`` and ``W`` the clients' total weight (see :mod:`phloem.secagg.quantize`).
    modulus_bits
        Ring Z_(2^modulus_bits); 32 sends 4 bytes an entry.
    max_weight
        Cap on a client's weight (its ``num_examples``); larger weights are capped, with a
        warning on the client.
    timeout_s
        Seconds to wait for replies at each stage; ``None`` waits for every reply. Late
        clients are dropouts.
    dropout, corrupt, sigma, eta
        Design fractions of dropped and corrupt clients and the security / correctness
        targets in bits, used to choose (or, when given, to check) ``num_shares`` and
        ``threshold``.
    prg
        Mask generator (:class:`~phloem.secagg.crypto.prg.PrgKind`).
    consistency_check
        Add Bonawitz et al.'s consistency round (signatures on the survivor set), which
        protects against a server that lies about who dropped.
    seed
        Seeds the random relabelling of the SecAgg+ graph (fresh OS entropy if ``None``).

    Raises
    ------
    ConfigError
        On invalid parameters (at construction). A round whose sampled clients are too few
        for the parameters is logged and skipped, not raised.
    MissingModError
        When no client answers the set-up with phloem's record: the ``ClientApp`` lacks
        :data:`~phloem.secagg.flower.phloem_secagg_mod`.
    """

    def __init__(
        self,
        num_shares: int | None = None,
        threshold: int | None = None,
        *,
        protocol: Protocol | str = Protocol.SECAGG_PLUS,
        clipping_range: float = 8.0,
        levels: int | None = None,
        modulus_bits: int = 32,
        max_weight: float = 1000.0,
        timeout_s: float | None = None,
        dropout: float = 0.1,
        corrupt: float = 0.1,
        sigma: float = 40.0,
        eta: float = 30.0,
        prg: PrgKind | str = PrgKind.AES_CTR,
        consistency_check: bool = False,
        seed: int | None = None,
    ) -> None:
        self.config = WorkflowConfig(
            num_shares=num_shares,
            threshold=threshold,
            protocol=cast(Protocol, protocol),  # validated (str -> enum) by WorkflowConfig
            clipping_range=clipping_range,
            levels=levels,
            modulus_bits=modulus_bits,
            max_weight=max_weight,
            timeout_s=timeout_s,
            dropout=dropout,
            corrupt=corrupt,
            sigma=sigma,
            eta=eta,
            prg=cast(PrgKind, prg),
            consistency_check=consistency_check,
            seed=seed,
        )
        self.last_round: RoundSummary | None = None

    # -- the round ------------------------------------------------------------------------
    def __call__(self, grid: Grid, context: Context) -> None:
        """Run one secure-aggregation fit round (called by ``DefaultWorkflow``)."""
        if not isinstance(context, LegacyContext):
            raise TypeError(
                f"PhloemSecAggWorkflow runs inside DefaultWorkflow with a LegacyContext, "
                f"got {type(context).__name__}"
            )
        plan = self._plan(context)
        if plan is None:
            return
        summary = RoundSummary(plan.server_round, len(plan.proxies), plan.graph, plan.quantizer)
        self.last_round = summary
        LOGGER.info(
            "phloem secure aggregation: %d clients, num_shares=%d, threshold=%d, "
            "%d entries in Z_2^%d, %d levels",
            len(plan.proxies),
            plan.graph.num_shares,
            plan.graph.threshold,
            plan.config.dim,
            plan.config.modulus_bits,
            plan.quantizer.levels,
        )
        collected = _Collected()
        result = self._run_protocol(grid, plan, collected, summary)
        if result is not None:
            self._finish(context, plan, result, collected, summary)

    def _plan(self, context: LegacyContext) -> _Plan | None:
        cfg = self.config
        server_round = int(
            cast(int, context.state.config_records[MAIN_CONFIGS_RECORD]["current_round"])
        )
        parameters = arrayrecord_to_parameters(
            context.state.array_records[MAIN_PARAMS_RECORD], keep_input=True
        )
        layout = [(a.shape, a.dtype) for a in parameters_to_ndarrays(parameters)]
        if not layout:
            raise ConfigError(
                "strategy.initial_parameters",
                "the global model has no parameters to aggregate: give the strategy "
                "initial_parameters, or let a client provide them (get_parameters)",
            )
        instructions = context.strategy.configure_fit(
            server_round, parameters, context.client_manager
        )
        if not instructions:
            LOGGER.info("configure_fit: no clients selected, round %d skipped", server_round)
            return None
        proxies = {proxy.node_id: proxy for proxy, _ in instructions}
        try:
            graph = self._graph(len(proxies))
        except ConfigError as exc:
            if exc.field not in ("n", "corrupt", "dropout"):
                raise
            # The sample, not the configuration, is at fault: another round may draw more.
            LOGGER.error(
                "%s; round %d skipped (raise the strategy's min_fit_clients and "
                "min_available_clients so that every round samples enough clients)",
                exc,
                server_round,
            )
            return None
        gen = np.random.default_rng(None if cfg.seed is None else [cfg.seed, server_round])
        if cfg.levels is None:
            quantizer = Quantizer.for_clients(
                len(proxies), cfg.clipping_range, cfg.modulus_bits, cfg.max_weight
            )
        else:
            quantizer = Quantizer(cfg.clipping_range, cfg.levels, cfg.modulus_bits, cfg.max_weight)
            quantizer.check(len(proxies))
        dim = sum(math.prod(shape) for shape, _ in layout) + 1
        return _Plan(
            server_round=server_round,
            proxies=proxies,
            fitins={
                p.node_id: fitins_to_recorddict(ins, keep_input=True) for p, ins in instructions
            },
            graph=graph,
            # any int ids, Flower's uint64 node ids included (drawn on positions)
            neighbours=graph.neighbours(sorted(proxies), gen),
            quantizer=quantizer,
            layout=layout,
            config=RoundConfig(
                round_id=server_round,
                dim=dim,
                modulus_bits=cfg.modulus_bits,
                threshold=graph.threshold,
                prg=cfg.prg.value,
                consistency_check=cfg.consistency_check,
            ),
        )

    def _graph(self, n: int) -> GraphParams:
        cfg = self.config
        complete = cfg.protocol is Protocol.SECAGG
        if cfg.threshold is None:
            return choose_parameters(
                n, cfg.dropout, cfg.corrupt, cfg.sigma, cfg.eta, complete=complete
            )
        k = n if complete or cfg.num_shares is None else min(cfg.num_shares, n)
        params = check_parameters(n, k, cfg.threshold, cfg.dropout, cfg.corrupt, cfg.sigma, cfg.eta)
        if not (params.secure and params.correct):
            LOGGER.warning(
                "num_shares=%d, threshold=%d over %d clients miss the targets "
                "(dropout=%g, corrupt=%g):\n%s",
                k,
                cfg.threshold,
                n,
                cfg.dropout,
                cfg.corrupt,
                params.explain(),
            )
        return params

    def _run_protocol(
        self, grid: Grid, plan: _Plan, collected: _Collected, summary: RoundSummary
    ) -> AggregateResult | None:
        server = SecAggServer(plan.config, plan.neighbours)
        outbox: dict[int, ProtocolMessage] = server.start()
        while outbox:
            stage, t0 = server.stage, time.perf_counter()
            name = stage_name(stage)
            requests = [self._request(plan, nid, msg, stage) for nid, msg in outbox.items()]
            summary.down_bytes[name] = sum(_payload_bytes(m.content) for m in requests)
            replies = list(grid.send_and_receive(requests, timeout=self.config.timeout_s))
            summary.up_bytes[name] = sum(
                _payload_bytes(m.content) for m in replies if m.has_content()
            )
            answered = self._collect(server, stage, replies, set(outbox), collected)
            if stage is Stage.SETUP and answered == 0:
                _check_mod(replies)
            for nid in set(outbox) - {m.metadata.src_node_id for m in replies}:
                collected.failures.setdefault(
                    nid, TimeoutError(f"client {nid}: no reply at {name}")
                )
            LOGGER.debug("[%s] %d of %d clients answered", name, answered, len(outbox))
            try:
                outbox = server.advance()
            except SecAggAbort as exc:
                summary.aborted = str(exc)
                LOGGER.error("%s; round %d skipped", exc, plan.server_round)
                return None
            finally:
                summary.stage_s[name] = time.perf_counter() - t0
                summary.sets = dict(server.sizes)
        return server.result

    def _request(self, plan: _Plan, nid: int, msg: ProtocolMessage, stage: Stage) -> Message:
        if stage is Stage.MASKED_INPUT:
            q = plan.quantizer
            content = plan.fitins[nid]
            spec = _records.QuantizerSpec(q.clip, q.levels, q.max_weight)
            content.config_records[_records.RECORD_KEY] = _records.pack(msg, stage, spec)
        else:
            content = RecordDict({_records.RECORD_KEY: _records.pack(msg, stage)})
        return Message(
            content=content,
            dst_node_id=nid,
            message_type=MessageType.TRAIN,
            group_id=str(plan.server_round),
        )

    def _collect(
        self,
        server: SecAggServer,
        stage: Stage,
        replies: Iterable[Message],
        asked: set[int],
        collected: _Collected,
    ) -> int:
        """Feed the valid replies to the server; the others are dropouts. Returns how many."""
        answered = 0
        for reply in replies:
            nid = reply.metadata.src_node_id
            if nid not in asked:
                continue
            if reply.has_error():
                collected.failures[nid] = RuntimeError(f"client {nid}: {reply.error.reason}")
                continue
            record = _records.find(reply.content)
            if record is None:
                raise MissingModError(_missing_mod(f"client {nid} replied without it"))
            fitres: FitRes | None = None
            try:
                msg = _records.unpack(record)
                sender = getattr(msg, "sender", None)
                if sender != nid:
                    raise ProtocolError(f"reply from node {nid} claims to come from {sender}")
                if isinstance(msg, MaskedInput):
                    fitres = recorddict_to_fitres(reply.content, keep_input=False)
                server.receive(msg)
            except (ProtocolError, KeyError) as exc:
                LOGGER.warning("client %d dropped at %s: %s", nid, stage_name(stage), exc)
                collected.failures[nid] = exc
                continue
            if fitres is not None:
                collected.fitres[nid] = fitres
            answered += 1
        return answered

    def _finish(
        self,
        context: LegacyContext,
        plan: _Plan,
        result: AggregateResult,
        collected: _Collected,
        summary: RoundSummary,
    ) -> None:
        summary.included = result.included
        try:
            mean = plan.quantizer.decode_mean(result.total, len(result.included))
        except ConfigError as exc:
            summary.aborted = str(exc)
            LOGGER.error(
                "cannot decode the aggregate (%s); round %d skipped", exc, plan.server_round
            )
            return
        parameters = ndarrays_to_parameters(_unflatten(mean, plan.layout))
        ok = Status(code=Code.OK, message="phloem secure aggregate")
        results = [
            (
                plan.proxies[nid],
                FitRes(
                    ok,
                    parameters,
                    collected.fitres[nid].num_examples,
                    collected.fitres[nid].metrics,
                ),
            )
            for nid in result.included
        ]
        failures: list[tuple[ClientProxy, FitRes] | BaseException] = list(
            collected.failures.values()
        )
        LOGGER.info(
            "aggregate_fit: %d clients in the secure sum, %d failures",
            len(results),
            len(failures),
        )
        aggregated, metrics = context.strategy.aggregate_fit(plan.server_round, results, failures)
        if aggregated:
            context.state.array_records[MAIN_PARAMS_RECORD] = parameters_to_arrayrecord(
                aggregated, keep_input=True
            )
            context.history.add_metrics_distributed_fit(
                server_round=plan.server_round, metrics=metrics
            )


def _payload_bytes(content: RecordDict) -> int:
    record = _records.find(content)
    data = None if record is None else record.get("message")
    return len(data) if isinstance(data, bytes) else 0


def _unflatten(
    flat: np.ndarray, layout: list[tuple[tuple[int, ...], np.dtype[np.generic]]]
) -> NDArrays:
    """Split the decoded mean into the model's arrays (float dtypes kept, others float64)."""
    out: NDArrays = []
    start = 0
    for shape, dtype in layout:
        size = math.prod(shape)
        part = flat[start : start + size].reshape(shape)
        out.append(part.astype(dtype) if np.issubdtype(dtype, np.floating) else part)
        start += size
    return out


def _missing_mod(detail: str) -> str:
    return (
        f"no phloem secure-aggregation record in the clients' replies ({detail}). "
        "PhloemSecAggWorkflow needs its client mod: build the ClientApp as "
        "ClientApp(client_fn=..., mods=[phloem_secagg_mod]) with "
        "`from phloem.secagg.flower import phloem_secagg_mod` (it replaces Flower's "
        "secaggplus_mod; the two protocols do not interoperate)"
    )


def _check_mod(replies: list[Message]) -> None:
    """No client answered the set-up: if they all errored, the mod is the likely cause."""
    errors = [m for m in replies if m.has_error()]
    if errors and len(errors) == len(replies):
        first = errors[0]
        raise MissingModError(
            _missing_mod(
                f"all {len(errors)} replies to the set-up were errors; the first, from client "
                f"{first.metadata.src_node_id}: {first.error.reason}"
            )
        )
