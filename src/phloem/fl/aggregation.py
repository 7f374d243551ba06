"""How the simulator's server receives a round's uplinks: the aggregation contract.

Each round, :func:`phloem.fl.simulate` asks the round's :class:`Aggregation`

1. for a :class:`RoundPlan`: which sampled clients drop out, and at which protocol stage
   (:class:`DropoutModel`). A client that drops before its masked input would be sent never
   contributes, so it leaves the cohort before it trains (and its state stays as it was);
2. after the clients have run, for a :class:`RoundOutcome`: the cohort's
   :class:`~phloem.fl.algorithms.base.Aggregate` (``None`` when the round changes nothing), the
   uplink bits the round cost, and its statistics for the history.

:class:`PlainAggregation` (``[aggregation] name = "plain"``) hands the algorithm every uplink;
:mod:`phloem.fl.secure` registers ``secagg`` and ``secagg+``, which run a real protocol round
and hand it only the decoded weighted sum. Client states are committed, and the server
updated, only when the outcome has an aggregate.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Self

import numpy as np

from phloem.core.errors import ConfigError
from phloem.core.history import Row
from phloem.core.registry import NoParams
from phloem.fl.algorithms.base import Aggregate, Cohort, Message, U, WeightedAggregate
from phloem.fl.config import ANY_STAGE, parse_dropout_stage
from phloem.fl.registries import AGGREGATIONS
from phloem.secagg.stages import PROTOCOL_STAGES, Stage

__all__ = [
    "ANY_STAGE",
    "Aggregation",
    "AggregationStats",
    "DropoutModel",
    "PlainAggregation",
    "RoundOutcome",
    "RoundPlan",
    "SecureRoundStats",
    "parse_dropout_stage",
]

#: stages after which the client's input is already with the server
_AFTER_UPLOAD = frozenset(s for s in PROTOCOL_STAGES if s > Stage.MASKED_INPUT)


@dataclass(frozen=True)
class DropoutModel:
    """Each sampled client independently drops out with probability ``rate``.

    ``stage`` is where: a protocol :class:`~phloem.secagg.Stage` (or its name), or ``"any"``
    (``None``) for a uniformly random stage.
    """

    rate: float = 0.0
    stage: Stage | str | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate <= 1.0:
            raise ConfigError("aggregation.dropout", f"{self.rate} is not a probability", ["0..1"])
        object.__setattr__(self, "stage", parse_dropout_stage(self.stage))

    def draw(self, ids: np.ndarray, gen: np.random.Generator) -> dict[Stage, list[int]]:
        """``{stage: clients}`` for one round."""
        out: dict[Stage, list[int]] = {}
        if self.rate == 0.0:
            return out
        drops = ids[gen.random(ids.size) < self.rate]
        for u in drops:
            stage = self.stage
            if not isinstance(stage, Stage):
                stage = PROTOCOL_STAGES[int(gen.integers(len(PROTOCOL_STAGES)))]
            out.setdefault(stage, []).append(int(u))
        return out


@dataclass(frozen=True)
class RoundPlan:
    """The round's sampled cohort and who drops out where."""

    cohort: Cohort
    dropout: dict[Stage, list[int]]

    @property
    def uploading(self) -> Cohort:
        """The members whose input reaches the server (they train)."""
        gone = {u for s, us in self.dropout.items() if s not in _AFTER_UPLOAD for u in us}
        return self.cohort.subset(np.array([u not in gone for u in self.cohort.ids], dtype=bool))

    @property
    def dropped(self) -> int:
        """How many sampled clients drop out, at any stage."""
        return sum(len(v) for v in self.dropout.values())


@dataclass(frozen=True)
class SecureRoundStats:
    """What a secure-aggregation round reports (``None``: the protocol did not run)."""

    ok: bool
    included: int | None = None
    wall_s: float | None = None
    up_bytes: float | None = None
    down_bytes: float | None = None
    abort: str | None = None
    max_error: float | None = None

    def row(self) -> Row:
        out: Row = {"secagg_ok": int(self.ok)}
        if self.included is not None:
            out["secagg_included"] = self.included
            out["secagg_s"] = self.wall_s
            out["secagg_up_bytes"] = self.up_bytes
            out["secagg_down_bytes"] = self.down_bytes
        if self.abort is not None:
            out["secagg_abort"] = self.abort
        if self.max_error is not None:
            out["secagg_max_error"] = self.max_error
        return out


@dataclass(frozen=True)
class AggregationStats:
    """A round's aggregation columns: clients dropped, the secure protocol's report, and the
    privacy mechanism's columns (:mod:`phloem.fl.privacy`)."""

    dropped: int
    secure: SecureRoundStats | None = None
    privacy: Row | None = None

    def row(self) -> Row:
        out: Row = {"dropped": self.dropped}
        if self.secure is not None:
            out.update(self.secure.row())
        if self.privacy is not None:
            out.update(self.privacy)
        return out


@dataclass(frozen=True)
class RoundOutcome(Generic[U]):
    """What one round's aggregation produced.

    Attributes
    ----------
    aggregate
        What the server update reads; ``None`` when the round changes nothing (no uplink
        arrived, or the secure protocol aborted).
    up_bits
        Uplink bits the round cost (the messages' own count, or the protocol's real bytes).
    stats
        The history columns of the aggregation (``None`` adds none).
    """

    aggregate: Aggregate[U] | None
    up_bits: float
    stats: AggregationStats | None = None


class Aggregation(ABC):
    """How the server receives a round's uplinks; registered by ``name``.

    Attributes
    ----------
    dropout
        Who drops out (``None``: nobody, and no ``dropped`` column in the history).
    """

    name: ClassVar[str]
    description: ClassVar[str]
    Params: ClassVar[type[Any]] = NoParams
    dropout: DropoutModel | None

    @classmethod
    @abstractmethod
    def from_params(cls, params: Any, *, dropout: DropoutModel | None) -> Self:
        """The aggregation with its config parameters and dropout model."""

    def check_cohort(self, n: int) -> None:  # noqa: B027 - optional hook, no-op by default
        """Refuse, before any round runs, settings that cannot serve cohorts of ``n`` clients.

        Raises
        ------
        ConfigError
            Naming the ``aggregation`` field at fault.
        """

    def plan(self, cohort: Cohort, gen: np.random.Generator) -> RoundPlan:
        """Who of ``cohort`` drops out where (from the round's aggregation stream)."""
        return RoundPlan(cohort, {} if self.dropout is None else self.dropout.draw(cohort.ids, gen))

    @abstractmethod
    def aggregate(
        self,
        plan: RoundPlan,
        messages: Sequence[Message[U]],
        round_: int,
        gen: np.random.Generator,
    ) -> RoundOutcome[U]:
        """The outcome of the round; ``messages`` are ``plan.uploading``'s, in cohort order."""

    def nothing_uploaded(
        self, server: Any, outcome: RoundOutcome[Any], gen: np.random.Generator
    ) -> RoundOutcome[Any]:
        """The outcome of a round in which no client uploaded (an empty cohort, or everyone
        dropped before uploading); ``outcome`` is the aggregation's own (``aggregate``'s, or
        an empty one), ``gen`` the round's aggregation stream. Default: ``outcome``, which
        changes nothing; a privacy mechanism releases its noise here."""
        return outcome


@AGGREGATIONS.register
@dataclass(frozen=True)
class PlainAggregation(Aggregation):
    """The server sees every uplink (no protection); dropouts as in a secure round."""

    name: ClassVar[str] = "plain"
    description: ClassVar[str] = "the server sees every client's uplink (no protection)"
    dropout: DropoutModel | None = None

    @classmethod
    def from_params(cls, params: NoParams, *, dropout: DropoutModel | None) -> Self:
        # nobody dropping: nothing to report, no `dropped` column
        return cls(dropout if dropout is not None and dropout.rate > 0 else None)

    def aggregate(
        self,
        plan: RoundPlan,
        messages: Sequence[Message[U]],
        round_: int,
        gen: np.random.Generator,
    ) -> RoundOutcome[U]:
        stats = None if self.dropout is None else AggregationStats(plan.dropped)
        up_bits = float(sum(m.bits for m in messages))
        if not messages:  # everyone left before uploading: nothing to aggregate
            return RoundOutcome(None, up_bits, stats)
        return RoundOutcome(
            WeightedAggregate([m.uplink for m in messages], plan.uploading), up_bits, stats
        )
