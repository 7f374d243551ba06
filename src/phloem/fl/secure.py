"""Secure aggregation inside the simulator: ``[aggregation] name = "secagg" | "secagg+"``.

The adapter between :mod:`phloem.fl` and :mod:`phloem.secagg`, one implementation of the
aggregation contract of :mod:`phloem.fl.aggregation`. After the clients have run, it runs a real
protocol round (:func:`phloem.secagg.aggregate.secure_mean`: X25519, Shamir, AES-CTR masks, the
wire encoding) over each client's uplink flattened field by field
(:meth:`~phloem.fl.algorithms.base.Uplink.flatten`), weighted by the client's weight. The server
learns only the weighted sum and the sum of weights of the included clients: the algorithm gets
a :class:`DecodedAggregate` that serves the weighted mean and total of each field from them, so
it computes the same quantities as from the individual uplinks, up to quantisation error.

A round whose protocol aborts (too few clients left for the threshold) changes nothing: the
outcome has no aggregate, so the server model and the clients' states stay as they were, and
the history row says why.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Self

import numpy as np
import torch

from phloem.core.errors import ConfigError
from phloem.fl.aggregation import (
    Aggregation,
    AggregationStats,
    DropoutModel,
    RoundOutcome,
    RoundPlan,
    SecureRoundStats,
)
from phloem.fl.algorithms.base import Aggregate, Message, U, weighted_sum
from phloem.fl.registries import AGGREGATIONS
from phloem.secagg import Protocol, SecAggSettings
from phloem.secagg.aggregate import secure_mean

__all__ = ["DecodedAggregate", "SecAgg", "SecAggPlus", "SecureAggregation"]


@dataclass(frozen=True)
class DecodedAggregate(Aggregate[U]):
    """The securely aggregated weighted mean of the uplinks, and the sum of their weights.

    ``mean(field)`` is the decoded mean's field, ``total(field)`` that times ``weight``; both
    go through :func:`weighted_sum`, the same float operations as the pseudo-client the
    simulator used before, so secure histories stayed bit-identical.
    """

    mean_uplink: U
    weight: float

    def mean(self, field: Callable[[U], torch.Tensor]) -> torch.Tensor:
        return weighted_sum([field(self.mean_uplink)], np.array([1.0]))

    def total(self, field: Callable[[U], torch.Tensor]) -> torch.Tensor:
        return weighted_sum([field(self.mean_uplink)], np.array([self.weight]))


@dataclass(frozen=True)
class SecureAggregation(Aggregation):
    """A SecAgg (``settings.protocol``) round per simulator round, with a dropout model.

    Its config parameters are :class:`~phloem.secagg.SecAggSettings` itself: the
    ``[aggregation]`` keys are its fields; the registered ``secagg`` and ``secagg+`` fix the
    protocol.
    """

    name: ClassVar[str] = "secure"
    description: ClassVar[str] = "secure aggregation with the protocol of its settings"
    Params: ClassVar[type[SecAggSettings]] = SecAggSettings
    #: parameters the registered kinds set themselves (their protocol)
    fixed_params: ClassVar[dict[str, Any]] = {}
    settings: SecAggSettings = field(default_factory=SecAggSettings)
    dropout: DropoutModel | None = None

    def __post_init__(self) -> None:
        protocol = self.fixed_params.get("protocol")
        if protocol is not None and self.settings.protocol is not protocol:
            object.__setattr__(self, "settings", replace(self.settings, protocol=protocol))

    @classmethod
    def from_params(cls, params: SecAggSettings, *, dropout: DropoutModel | None) -> Self:
        return cls(params, dropout)

    def check_cohort(self, n: int) -> None:
        try:
            self.settings.parameters(n)
            self.settings.quantizer(n)
            refused = self.settings.refusal(n)
        except ConfigError as e:
            raise e.with_field(f"aggregation.{e.field}") from None
        if refused is not None:  # every client would refuse every round: say so now
            raise ConfigError(
                "aggregation.threshold",
                f"the clients would refuse a cohort of {n}: {refused}",
                ["a secure pair (phloem secagg params)", "num_shares and threshold unset"],
            )

    def aggregate(
        self,
        plan: RoundPlan,
        messages: Sequence[Message[U]],
        round_: int,
        gen: np.random.Generator,
    ) -> RoundOutcome[U]:
        cohort = plan.uploading
        if not messages:  # everyone left before uploading: nothing to aggregate
            return RoundOutcome(None, 0.0, AggregationStats(plan.dropped, SecureRoundStats(False)))
        # as float32 when the model is: the quantiser computes in float64 without a copy
        flat = {
            int(u): m.uplink.flatten().numpy() for u, m in zip(cohort.ids, messages, strict=True)
        }
        weights = {int(u): float(w) for u, w in zip(cohort.ids, cohort.weights, strict=True)}
        # clients that drop before uploading still take part in the protocol's first stages
        res = secure_mean(
            flat,
            self.settings,
            weights=weights,
            gen=gen,
            round_id=round_,
            dropout=plan.dropout,
            all_clients=[int(u) for u in plan.cohort.ids],
        )
        totals = res.report.totals()
        stats = SecureRoundStats(
            ok=res.report.ok,
            included=len(res.included),
            wall_s=res.report.wall_s,
            up_bytes=totals["up_bytes"],
            down_bytes=totals["down_bytes"],
        )
        # the protocol's real upload, not the float bits of the uplinks
        up_bits = 8.0 * float(totals["up_bytes"]) * float(len(res.included))
        if res.mean is None:
            stats = replace(stats, abort=str(res.report.abort))
            return RoundOutcome(None, up_bits, AggregationStats(plan.dropped, stats))
        if set(res.included) != {int(u) for u in cohort.ids}:  # pragma: no cover - invariant
            raise AssertionError("secure aggregation included a different set of clients")
        stats = replace(stats, max_error=res.error_bound)
        decoded = DecodedAggregate(messages[0].uplink.unflatten(res.mean), res.weight)
        return RoundOutcome(decoded, up_bits, AggregationStats(plan.dropped, stats))


@AGGREGATIONS.register
@dataclass(frozen=True)
class SecAgg(SecureAggregation):
    """SecAgg: every client shares its secrets with every other (a complete graph)."""

    name: ClassVar[str] = "secagg"
    description: ClassVar[str] = "SecAgg, complete graph (Bonawitz et al., CCS 2017)"
    fixed_params: ClassVar[dict[str, Any]] = {"protocol": Protocol.SECAGG}


@AGGREGATIONS.register
@dataclass(frozen=True)
class SecAggPlus(SecureAggregation):
    """SecAgg+: a sparse random graph whose size grows with ``log n`` (the default)."""

    name: ClassVar[str] = "secagg+"
    description: ClassVar[str] = "SecAgg+, sparse random graph (Bell et al., CCS 2020)"
    fixed_params: ClassVar[dict[str, Any]] = {"protocol": Protocol.SECAGG_PLUS}
