"""Train the deployable any-time identifier on the doh_iot corpus (``phloem iot train``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from phloem.core.errors import ConfigError
from phloem.iot.events import Event
from phloem.iot.feature_sets import FeatureSet
from phloem.iot.identify import CHECKPOINTS, Identifier
from phloem.iot.model_kinds import ModelKind
from phloem.iot.protocols.base import check_day, check_seconds, train_days_until

__all__ = ["TrainParams", "Trained", "train_identifier"]


@dataclass(frozen=True)
class TrainParams:
    """How the identifier is trained.

    Attributes
    ----------
    train_until
        Last day trained on (``YYYY-MM-DD``); the days after it are left for testing.
    checkpoints_s
        Seconds after the anchor the any-time model learns to answer at.
    confidence
        Top probability at which an answer counts as confident, in (0, 1].
    target_false_unknown
        Share of known-device events the unknown detectors may flag, in [0, 1).
    """

    train_until: str = "2023-10-25"
    checkpoints_s: tuple[float, ...] = CHECKPOINTS
    confidence: float = 0.9
    target_false_unknown: float = 0.01

    def __post_init__(self) -> None:
        if not 0.0 < self.confidence <= 1.0:
            raise ConfigError("confidence", f"{self.confidence} is not in (0, 1]")
        if not 0.0 <= self.target_false_unknown < 1.0:
            raise ConfigError(
                "target_false_unknown", f"{self.target_false_unknown} is not in [0, 1)"
            )
        check_seconds("checkpoints_s", self.checkpoints_s)
        check_day("train_until", self.train_until)


@dataclass(frozen=True)
class Trained:
    """A trained identifier and how many events it was trained on."""

    identifier: Identifier
    n_events: int


def train_identifier(
    features: FeatureSet,
    model: ModelKind,
    params: TrainParams | None = None,
    *,
    events: Sequence[Event] | None = None,
    hierarchy: Mapping[str, tuple[str, str]] | None = None,
) -> Trained:
    """Train an :class:`~phloem.iot.identify.Identifier` on the days up to ``train_until``.

    Parameters
    ----------
    features, model
        Built components (``FEATURE_SETS.get("full")()``, ``MODEL_KINDS.get("logreg")()``).
    params
        Training parameters (default: ``TrainParams()``).
    events, hierarchy
        Labelled events and the device -> (manufacturer, category) map (default: the doh_iot
        corpus and its ``labels.csv``).

    Raises
    ------
    ConfigError
        ``train_until`` leaves no training or no later day.
    """
    p = params if params is not None else TrainParams()
    if events is None:
        from phloem.iot.corpus import load_corpus

        events = load_corpus()
    train, _ = train_days_until(events, p.train_until)
    if hierarchy is None:
        from phloem.iot.dataset import load_hierarchy

        hierarchy = load_hierarchy()
    idt = Identifier.train(
        train,
        spec=features.spec(),
        model=model.factory(),
        checkpoints=p.checkpoints_s,
        hierarchy=hierarchy,
        target_false_unknown=p.target_false_unknown,
        confidence=p.confidence,
    )
    return Trained(idt, len(train))
