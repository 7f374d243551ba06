"""The server side of phloem's secure aggregation in Flower: a fit workflow.

:class:`PhloemSecAggWorkflow` goes where Flower's ``SecAggPlusWorkflow`` goes,
``DefaultWorkflow(fit_workflow=PhloemSecAggWorkflow(...))``, and runs one
:class:`~phloem.secagg.server.SecAggServer` per round over Flower's ``Grid``:

1. **plan** -- ask the strategy which clients to sample (``configure_fit``), and plan the round
   from the workflow's :class:`~phloem.secagg.settings.SecAggSettings`: the SecAgg+ graph
   (:func:`~phloem.secagg.graph.choose_parameters` or the given ``num_shares`` and
   ``threshold``), the quantiser, and the ring dimension (all entries of the global model plus
   one for the weight);
2. **run the protocol** -- :func:`phloem.secagg.transport.run_protocol`, the same round loop as
   the in-process driver, over a Flower transport (:mod:`phloem.secagg.flower._transport`):
   each stage's messages travel as wire bytes in a ``ConfigRecord`` (see
   :mod:`phloem.secagg.flower._records`) and the replies that arrive within ``timeout_s`` are
   fed to the server. A client that errors, times out or sends something the server refuses is
   a dropout, at any stage;
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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import cast

import numpy as np
from flwr.app import Context, RecordDict
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
)
from flwr.server import LegacyContext
from flwr.server.client_proxy import ClientProxy
from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD
from flwr.serverapp import Grid

from phloem.core.errors import ConfigError
from phloem.secagg.flower import _records
from phloem.secagg.flower._transport import Addressing, GridTransport, MissingModError
from phloem.secagg.graph import GraphParams
from phloem.secagg.messages import RoundConfig
from phloem.secagg.quantize import Quantizer
from phloem.secagg.server import AggregateResult
from phloem.secagg.settings import PrgKind, Protocol, SecAggSettings
from phloem.secagg.transport import run_protocol

__all__ = [
    "MissingModError",
    "PhloemSecAggWorkflow",
    "Protocol",
    "RoundSummary",
    "WorkflowConfig",
]

LOGGER = _records.LOGGER

#: the constructor's Flower-compatible names of :class:`SecAggSettings` fields
FLOWER_NAMES = {
    "clip": "clipping_range",
    "tolerate_dropout": "dropout",
    "tolerate_corrupt": "corrupt",
}

#: errors of these fields (constructor names) mean the sampled clients are too few, not a
#: wrong configuration
_SAMPLE_FIELDS = frozenset({"clients", "n", "dropout", "corrupt"})


#: the fewest clients a round can have: with two, each learns the other's input from the sum
#: (phloem's settings refuse fewer than 3 with a secure threshold)
MIN_CLIENTS = 3


def _positive(value: object) -> bool:
    """A real number above zero (not a bool, not NaN)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


@contextmanager
def _flower_names() -> Iterator[None]:
    """Re-raise a :class:`ConfigError` under the constructor's name of its field."""
    try:
        yield
    except ConfigError as exc:
        raise exc.with_field(FLOWER_NAMES.get(exc.field, exc.field)) from None


@dataclass(frozen=True)
class WorkflowConfig:
    """Validated parameters of :class:`PhloemSecAggWorkflow`: the protocol's settings and the
    workflow's own Flower knobs (see the workflow's docstring for each).

    Besides validating its fields, it refuses the two spellings Flower's ``SecAggPlusWorkflow``
    has no counterpart for, so that the workflow stays a faithful drop-in: ``num_shares``
    without ``threshold`` (or the reverse) with SecAgg+, and any ``num_shares`` with plain
    SecAgg. (:class:`SecAggSettings` alone accepts both: it derives ``t = k // 2 + 1``, and
    plain SecAgg ignores ``num_shares``.)
    """

    settings: SecAggSettings = field(default_factory=SecAggSettings)
    max_weight: float = 1000.0
    timeout_s: float | None = None
    seed: int | None = None
    poll_interval_s: float = 0.1

    def __post_init__(self) -> None:
        if not isinstance(self.settings, SecAggSettings):
            raise ConfigError("settings", f"{type(self.settings).__name__}", ["SecAggSettings"])
        self._check_pair()
        if not (math.isfinite(self.max_weight) and self.max_weight > 0):
            raise ConfigError(
                "max_weight", f"{self.max_weight!r} must be a positive finite number", ["> 0"]
            )
        if self.timeout_s is not None and not _positive(self.timeout_s):
            raise ConfigError("timeout_s", f"{self.timeout_s!r} seconds", ["> 0", None])
        seed = self.seed
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
            raise ConfigError("seed", f"{seed!r} cannot seed a generator", ["int >= 0", None])
        poll = self.poll_interval_s
        if not (_positive(poll) and math.isfinite(poll)):
            raise ConfigError(
                "poll_interval_s", f"{poll!r} seconds between polls", ["finite number > 0"]
            )
        self._check_smallest_round()

    def _check_smallest_round(self) -> None:
        """What no number of clients can fix is refused now, not at the first round.

        The round's sample size ``n`` is known only at round time, and with it the SecAgg+
        graph and the quantiser's overflow bound; but a threshold at most half the share
        holders is insecure for every ``n`` above ``num_shares``, and a quantiser that
        overflows for the smallest round phloem runs (:data:`MIN_CLIENTS` clients) overflows
        for every round.
        """
        s = self.settings
        k, t = s.num_shares, s.threshold
        if s.protocol is Protocol.SECAGG_PLUS and k is not None and t is not None and 2 * t <= k:
            raise ConfigError(
                "threshold",
                f"t = {t} <= num_shares / 2 = {k / 2:g}: the server could collect t shares "
                "of both a client's mask seed and its key and unmask it",
                [f"{k // 2 + 1}..{k}"],
            )
        try:
            s.quantizer(MIN_CLIENTS, self.max_weight)
        except ConfigError as exc:
            raise ConfigError(
                exc.field,
                f"even the smallest round ({MIN_CLIENTS} clients) cannot use it: {exc.problem}",
                exc.allowed,
            ) from None

    def _check_pair(self) -> None:
        s = self.settings
        if s.protocol is Protocol.SECAGG and s.num_shares is not None:
            raise ConfigError(
                "num_shares",
                "plain SecAgg shares with every sampled client; leave num_shares unset "
                "or use protocol='secagg+'",
            )
        if s.protocol is Protocol.SECAGG_PLUS and (s.num_shares is None) != (s.threshold is None):
            raise ConfigError(
                "threshold" if s.threshold is None else "num_shares",
                "give both num_shares and threshold, or neither (then they are chosen for "
                "the sampled clients from dropout, corrupt, sigma and eta)",
            )


@dataclass
class RoundSummary:
    """What one secure-aggregation round did (``PhloemSecAggWorkflow.last_round``).

    Per-stage dictionaries are keyed by :class:`~phloem.secagg.stages.Stage` (each equal to
    its name: ``summary.up_bytes["masked_input"]``).
    """

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
    #: clients the server left out for misbehaving (bad keys, rejected shares), and why
    excluded: dict[int, str] = field(default_factory=dict)
    #: holders whose revealed shares failed their commitments (ignored), and why
    faulty: dict[int, str] = field(default_factory=dict)


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


class PhloemSecAggWorkflow:
    """Flower fit workflow running phloem's SecAgg / SecAgg+ (drop-in for ``SecAggPlusWorkflow``).

    Use it as ``DefaultWorkflow(fit_workflow=PhloemSecAggWorkflow(...))`` with
    ``ClientApp(client_fn, mods=[phloem_secagg_mod])`` on the clients. Each client uploads
    ``[w * clip(params), w]`` quantised and masked in Z_(2^modulus_bits), ``w`` its
    ``num_examples`` capped at ``max_weight``; the server learns only the sum, and turns it
    into the weighted mean of the clients' parameters.

    The constructor speaks Flower's language; its protocol parameters become a
    :class:`~phloem.secagg.settings.SecAggSettings` (``clipping_range`` is its ``clip``,
    ``dropout`` and ``corrupt`` its ``tolerate_dropout`` and ``tolerate_corrupt``; errors name
    the constructor's argument). :meth:`from_config` takes the settings directly.

    Parameters
    ----------
    num_shares, threshold
        SecAgg+ graph: share holders per client, itself included (``k``), and shares that
        reconstruct a secret (``t``, with ``k / 2 < t <= k``). ``k`` means what Flower's
        ``num_shares`` means (an integer one: the client keeps one share and sends one to each
        neighbour), and what :class:`SecAggSettings` means. Give both, or neither: then
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
        Design fractions of the sampled clients to tolerate dropping out / being corrupt, and
        the security / correctness targets in bits, used to choose (or, when given, to check)
        ``num_shares`` and ``threshold``.
    prg
        Mask generator (:class:`~phloem.secagg.crypto.prg.PrgKind`).
    consistency_check
        Add Bonawitz et al.'s consistency round (signatures on the survivor set), which
        protects against a server that lies about who dropped.
    seed
        Seeds the random relabelling of the SecAgg+ graph (fresh OS entropy if ``None``).
    poll_interval_s
        Seconds between two pulls of the clients' replies from the SuperLink while a stage
        waits for them. (Flower's ``Grid.send_and_receive``, which Flower's own workflows
        use, sleeps a fixed 3 s between pulls in a deployment.)

    Raises
    ------
    ConfigError
        On invalid parameters, at construction: every value out of range, and every choice
        that no number of clients can make work (a ``threshold`` at most ``num_shares / 2``,
        ``levels`` or ``modulus_bits`` that overflow even for the smallest round of 3
        clients). What depends on the round's sample size ``n`` -- a ``num_shares`` /
        ``threshold`` pair or ``dropout`` / ``corrupt`` tolerances too demanding for so few
        clients, ``levels`` that overflow for ``n`` clients -- can only be checked per round:
        such a round is logged and skipped (the model unchanged), except an overflowing
        ``levels``, which raises.
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
        poll_interval_s: float = 0.1,
    ) -> None:
        with _flower_names():
            settings = SecAggSettings(
                protocol=cast(Protocol, protocol),  # validated (str -> enum) by the settings
                num_shares=num_shares,
                threshold=threshold,
                tolerate_dropout=dropout,
                tolerate_corrupt=corrupt,
                sigma=sigma,
                eta=eta,
                modulus_bits=modulus_bits,
                clip=clipping_range,
                levels=levels,
                prg=cast(PrgKind, prg),
                consistency_check=consistency_check,
            )
            config = WorkflowConfig(settings, max_weight, timeout_s, seed, poll_interval_s)
        self._setup(config)

    @classmethod
    def from_config(cls, config: WorkflowConfig) -> PhloemSecAggWorkflow:
        """The workflow of ``config``: the settings under their own names, plus the Flower
        knobs (no renaming: errors were raised, naming the settings' fields, when ``config``
        was made)."""
        workflow = cls.__new__(cls)
        workflow._setup(config)
        return workflow

    def _setup(self, config: WorkflowConfig) -> None:
        self.config = config
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
        transport = GridTransport(
            grid,
            Addressing(
                plan.server_round,
                plan.fitins,
                plan.quantizer,
                self.config.timeout_s,
                self.config.poll_interval_s,
            ),
        )
        try:
            report = run_protocol(plan.config, plan.neighbours, transport)
        finally:
            summary.down_bytes, summary.up_bytes = transport.down_bytes, transport.up_bytes
        summary.stage_s = {stage: st.wall_s for stage, st in report.stages.items()}
        summary.sets = report.sets
        summary.excluded, summary.faulty = report.excluded, report.faulty
        for nid, why in report.excluded.items():
            LOGGER.warning("client %d left out of round %d: %s", nid, plan.server_round, why)
        if report.result is None:
            summary.aborted = str(report.abort)
            LOGGER.error("%s; round %d skipped", report.abort, plan.server_round)
            return
        self._finish(context, plan, report.result, transport, summary)

    def _plan(self, context: LegacyContext) -> _Plan | None:
        """Sample the clients and plan their round; ``None`` when the round is skipped."""
        cfg, settings = self.config, self.config.settings
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
        dim = sum(math.prod(shape) for shape, _ in layout) + 1
        gen = np.random.default_rng(None if cfg.seed is None else [cfg.seed, server_round])
        try:
            with _flower_names():
                # any int ids, Flower's uint64 node ids included (drawn on positions)
                config, neighbours, graph = settings.plan(sorted(proxies), dim, server_round, gen)
        except ConfigError as exc:
            if exc.field not in _SAMPLE_FIELDS:
                raise
            # The sample, not the configuration, is at fault: another round may draw more.
            LOGGER.error(
                "%s; round %d skipped (raise the strategy's min_fit_clients and "
                "min_available_clients so that every round samples enough clients)",
                exc,
                server_round,
            )
            return None
        self._warn_if_missed(graph)
        return _Plan(
            server_round=server_round,
            proxies=proxies,
            fitins={
                p.node_id: fitins_to_recorddict(ins, keep_input=True) for p, ins in instructions
            },
            graph=graph,
            neighbours=neighbours,
            quantizer=settings.quantizer(len(proxies), cfg.max_weight),
            layout=layout,
            config=config,
        )

    def _warn_if_missed(self, graph: GraphParams) -> None:
        """A given ``(num_shares, threshold)`` that misses its targets is logged, not refused."""
        if self.config.settings.threshold is None or (graph.secure and graph.correct):
            return
        LOGGER.warning(
            "num_shares=%d, threshold=%d over %d clients miss the targets "
            "(dropout=%g, corrupt=%g):\n%s",
            graph.num_shares,
            graph.threshold,
            graph.n,
            graph.dropout,
            graph.corrupt,
            graph.explain(),
        )

    def _finish(
        self,
        context: LegacyContext,
        plan: _Plan,
        result: AggregateResult,
        transport: GridTransport,
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
                    transport.fitres[nid].num_examples,
                    transport.fitres[nid].metrics,
                ),
            )
            for nid in result.included
        ]
        failures: list[tuple[ClientProxy, FitRes] | BaseException] = list(
            transport.failures.values()
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
