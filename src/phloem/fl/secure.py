"""How the simulator's server receives the cohort's updates: plain, SecAgg or SecAgg+.

The adapter between :mod:`phloem.fl` and :mod:`phloem.secagg`. Each round it

1. draws which sampled clients drop out, and at which protocol stage (:class:`DropoutModel`);
   a client that drops before its masked input is sent never contributes, so it is taken out
   of the cohort before it trains (and its persistent state stays as it was);
2. after the clients have run, aggregates their messages. ``plain`` hands them to the
   algorithm as they are. ``secagg`` / ``secagg+`` run a real protocol round
   (:func:`phloem.secagg.aggregate.secure_mean`: X25519, Shamir, AES-CTR masks, the wire
   encoding) over the concatenation of every vector a client sends, weighted by its weight,
   and hand the algorithm ONE pseudo-message (the decoded weighted mean) with ONE pseudo
   client whose weight is the decoded sum of weights. Algorithms aggregate only through
   ``weighted_sum`` with ``cohort.normalised`` or ``cohort.weights``, so they compute the same
   quantities as from the individual messages, up to quantisation error.

A round whose protocol aborts (too few clients left for the threshold) changes nothing: the
server model stays, the clients' states are restored, and the history row says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from phloem.core.errors import ConfigError
from phloem.fl.algorithms.base import Cohort, Message
from phloem.fl.config import AggregationName
from phloem.secagg.aggregate import Protocol, SecAggSettings, secure_mean
from phloem.secagg.driver import STAGE_NAMES
from phloem.secagg.messages import Stage

__all__ = ["AggregationName", "Aggregator", "DropoutModel", "RoundPlan", "protocol_of"]

#: stages after which the client's input is already with the server
_AFTER_UPLOAD = frozenset(name for name, s in STAGE_NAMES.items() if s > Stage.MASKED_INPUT)


def protocol_of(name: AggregationName) -> Protocol:
    """The secure-aggregation protocol an ``[aggregation] name`` runs.

    ``plain`` runs none; it maps to the settings' default, ``secagg+``, which it never uses.
    """
    return Protocol.SECAGG if name is AggregationName.SECAGG else Protocol.SECAGG_PLUS


@dataclass(frozen=True)
class DropoutModel:
    """Each sampled client independently drops out with probability ``rate``.

    ``stage`` is where: a protocol stage name, or ``any`` for a uniformly random stage.
    """

    rate: float = 0.0
    stage: str = "any"

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate <= 1.0:
            raise ConfigError("aggregation.dropout", f"{self.rate} is not a probability", ["0..1"])
        if self.stage != "any" and self.stage not in STAGE_NAMES:
            raise ConfigError(
                "aggregation.dropout_stage", f"unknown stage {self.stage!r}", ["any", *STAGE_NAMES]
            )

    def draw(self, ids: np.ndarray, gen: np.random.Generator) -> dict[str, list[int]]:
        """``{stage: clients}`` for one round."""
        out: dict[str, list[int]] = {}
        if self.rate == 0.0:
            return out
        drops = ids[gen.random(ids.size) < self.rate]
        names = list(STAGE_NAMES)
        for u in drops:
            stage = names[int(gen.integers(len(names)))] if self.stage == "any" else self.stage
            out.setdefault(stage, []).append(int(u))
        return out


@dataclass(frozen=True)
class RoundPlan:
    """The round's full cohort and who drops where."""

    cohort: Cohort
    dropout: dict[str, list[int]]

    @property
    def uploading(self) -> Cohort:
        """The members whose input reaches the server (they train)."""
        gone = {u for s, us in self.dropout.items() if s not in _AFTER_UPLOAD for u in us}
        keep = np.array([u not in gone for u in self.cohort.ids], dtype=bool)
        c = self.cohort
        return Cohort(c.ids[keep], c.weights[keep], c.num_clients)


@dataclass(frozen=True)
class Aggregator:
    """Plain or secure aggregation of a round's messages, with a dropout model.

    ``name`` decides the protocol: ``settings.protocol`` is replaced by :func:`protocol_of`.
    """

    name: AggregationName = AggregationName.PLAIN
    settings: SecAggSettings = field(default_factory=SecAggSettings)
    dropout: DropoutModel = field(default_factory=DropoutModel)

    def __post_init__(self) -> None:
        protocol = protocol_of(self.name)
        if self.secure and self.settings.protocol is not protocol:
            object.__setattr__(self, "settings", replace(self.settings, protocol=protocol))

    @property
    def secure(self) -> bool:
        return self.name is not AggregationName.PLAIN

    def plan(self, cohort: Cohort, gen: np.random.Generator) -> RoundPlan:
        return RoundPlan(cohort, self.dropout.draw(cohort.ids, gen))

    def aggregate(
        self,
        plan: RoundPlan,
        messages: Sequence[Message],
        round_: int,
        gen: np.random.Generator,
    ) -> tuple[Sequence[Message] | None, Cohort, dict[str, Any]]:
        """``(messages, cohort, row)`` for the server update; ``messages=None`` if aborted.

        ``messages`` are those of ``plan.uploading`` in cohort order.
        """
        cohort = plan.uploading
        dropped = sum(len(v) for v in plan.dropout.values())
        if not messages:  # everyone left before uploading: nothing to aggregate
            return (
                None,
                cohort,
                {"dropped": dropped, "secagg_ok": 0} if self.secure else {"dropped": dropped},
            )
        if not self.secure:
            return messages, cohort, {"dropped": dropped}
        keys = list(messages[0].vectors)
        # as float32 when the model is: the quantiser computes in float64 without a copy
        flat = {
            int(u): torch.cat([m.vectors[k].reshape(-1) for k in keys]).numpy()
            for u, m in zip(cohort.ids, messages, strict=True)
        }
        weights = {int(u): float(w) for u, w in zip(cohort.ids, cohort.weights, strict=True)}
        # clients that drop before uploading still take part in the protocol's first stages
        ids = [int(u) for u in plan.cohort.ids]
        res = secure_mean(
            flat,
            self.settings,
            weights=weights,
            gen=gen,
            round_id=round_,
            dropout=plan.dropout,
            all_clients=ids,
        )
        totals = res.report.totals()
        row: dict[str, Any] = {
            "dropped": dropped,
            "secagg_ok": int(res.report.ok),
            "secagg_included": len(res.included),
            "secagg_s": res.report.wall_s,
            "secagg_up_bytes": totals["up_bytes"],
            "secagg_down_bytes": totals["down_bytes"],
        }
        if res.mean is None:
            row["secagg_abort"] = str(res.report.abort)
            return None, cohort, row
        included = set(res.included)
        if included != {int(u) for u in cohort.ids}:  # pragma: no cover - protocol invariant
            raise AssertionError("secure aggregation included a different set of clients")
        template = messages[0]
        vectors: dict[str, torch.Tensor] = {}
        offset = 0
        for k in keys:
            ref = template.vectors[k]
            part = res.mean[offset : offset + ref.numel()]
            vectors[k] = torch.from_numpy(part.copy()).to(ref.dtype).reshape(ref.shape)
            offset += ref.numel()
        pseudo = Message(vectors, 0, 0.0, 0)
        pseudo_cohort = Cohort(np.array([-1]), np.array([res.weight]), cohort.num_clients)
        row["secagg_max_error"] = res.error_bound
        return [pseudo], pseudo_cohort, row
