"""Train the deployable any-time identifier (``phloem iot train``).

The training data are the bundled doh_iot corpus (:data:`~phloem.iot.labelled.CORPUS`), a
user's own captures, logs and FTL databases with a labels file
(:mod:`phloem.iot.labelled`), or both; ``until`` keeps the days up to a date (by default every
day is used: a deployed model should learn from all it has), ``exclude`` leaves devices out.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from phloem.core.errors import ConfigError
from phloem.iot.events import ANCHOR_MODES, Event
from phloem.iot.feature_sets import FeatureSet
from phloem.iot.identify import CHECKPOINTS, Identifier
from phloem.iot.labelled import (
    CORPUS,
    Collected,
    LabelStats,
    check_devices,
    collect_labelled,
    load_key_labels,
)
from phloem.iot.model_kinds import ModelKind
from phloem.iot.protocols.base import check_day, check_seconds
from phloem.iot.sources import AUTO

__all__ = ["TrainInputs", "TrainParams", "Trained", "load_training_data", "train_identifier"]

_TARBALL = "dns_only_dev.tar.gz"


@dataclass(frozen=True)
class TrainParams:
    """How the identifier is trained.

    Attributes
    ----------
    until
        Last day trained on (``YYYY-MM-DD``, the events' UTC day; the corpus's: its folder
        day); ``None``: every day.
    exclude
        Devices left out of training (each must have training events).
    checkpoints_s
        Seconds after the anchor the any-time model learns to answer at.
    confidence
        Top probability at which an answer counts as confident, in (0, 1].
    target_false_unknown
        Share of known-device events the unknown detectors may flag, in [0, 1).
    """

    until: str | None = None
    exclude: tuple[str, ...] = ()
    checkpoints_s: tuple[float, ...] = CHECKPOINTS
    confidence: float = 0.9
    target_false_unknown: float = 0.01

    def __post_init__(self) -> None:
        if not (math.isfinite(self.confidence) and 0.0 < self.confidence <= 1.0):
            raise ConfigError("confidence", f"{self.confidence} is not in (0, 1]")
        if not (math.isfinite(self.target_false_unknown) and 0 <= self.target_false_unknown < 1):
            raise ConfigError(
                "target_false_unknown", f"{self.target_false_unknown} is not in [0, 1)"
            )
        check_seconds("checkpoints_s", self.checkpoints_s)
        if self.until is not None:
            check_day("until", self.until)


@dataclass(frozen=True)
class TrainInputs:
    """What the identifier is trained on.

    Attributes
    ----------
    paths
        Files, folders and glob patterns of captures, logs and FTL databases, and
        :data:`~phloem.iot.labelled.CORPUS` (or the corpus tarball's path) for the bundled
        doh_iot corpus.
    labels
        The labels file naming the clients of the user's files (see
        :mod:`phloem.iot.labelled`); needed unless the only input is the corpus.
    kind, year, anchor
        How the files are read: the source (``auto``: sniffed per file), the year of dnsmasq
        lines, what starts a client's clock.
    """

    paths: tuple[str, ...] = (CORPUS,)
    labels: Path | None = None
    kind: str = AUTO
    year: int | None = None
    anchor: str = "dhcp-or-first-query"

    def __post_init__(self) -> None:
        if not self.paths:
            raise ConfigError("paths", f"give captures, logs or folders to train on, or {CORPUS}")
        if self.anchor not in ANCHOR_MODES:
            raise ConfigError("anchor", f"unknown {self.anchor!r}", ANCHOR_MODES)


@dataclass
class Trained:
    """A trained identifier and what it was trained on.

    Attributes
    ----------
    identifier
        The model (its ``trained_on`` records the inputs too).
    n_events
        Events trained on (fitted and held out for calibration).
    collected
        What the user's files gave (``None``: only the corpus was read).
    labels
        What the labels file gave (``None``: no labels file).
    warnings
        Things the user should know (a calibration fallback), one line each.
    """

    identifier: Identifier
    n_events: int
    collected: Collected | None = None
    labels: LabelStats | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def per_device(self) -> dict[str, int]:
        return dict(self.identifier.trained_on.get("events_per_device", {}))


def _is_corpus(item: str) -> bool:
    return item == CORPUS or Path(item).name == _TARBALL


def load_training_data(
    inputs: TrainInputs,
) -> tuple[list[Event], dict[str, tuple[str, str]], Collected | None, LabelStats | None]:
    """The labelled events and the device -> (manufacturer, category) map of ``inputs``.

    Raises
    ------
    ConfigError
        A path names nothing (``paths``), user files without a labels file, or a bad labels
        file (``labels``).
    DataNotFoundError
        The corpus is named but not found.
    """
    from phloem.iot.batch import expand_inputs

    events: list[Event] = []
    hierarchy: dict[str, tuple[str, str]] = {}
    corpus = [p for p in inputs.paths if _is_corpus(p)]
    others = [p for p in inputs.paths if not _is_corpus(p)]
    if corpus:
        from phloem.iot.corpus import load_corpus
        from phloem.iot.dataset import load_hierarchy

        where = None if corpus[0] == CORPUS else corpus[0]
        events.extend(load_corpus(where))
        hierarchy.update(load_hierarchy(None if where is None else Path(where).parent))
    collected: Collected | None = None
    label_stats: LabelStats | None = None
    if others:
        files, missing = expand_inputs(others)
        if missing:
            raise ConfigError("paths", "; ".join(missing))
        if inputs.labels is None:
            raise ConfigError(
                "labels",
                f"{len(files)} file(s) to train on but no labels file naming their clients "
                "(a CSV with a mac or ip column, device, manufacturer, category)",
            )
        label_stats = LabelStats()
        labels = load_key_labels(inputs.labels, label_stats)
        collected = collect_labelled(
            files, labels, kind=inputs.kind, year=inputs.year, anchor=inputs.anchor
        )
        events.extend(collected.events)
        hierarchy.update(labels.hierarchy)
    return events, hierarchy, collected, label_stats


def train_identifier(
    features: FeatureSet,
    model: ModelKind,
    params: TrainParams | None = None,
    *,
    inputs: TrainInputs | None = None,
    events: Sequence[Event] | None = None,
    hierarchy: Mapping[str, tuple[str, str]] | None = None,
) -> Trained:
    """Train an :class:`~phloem.iot.identify.Identifier` on ``inputs`` (or ``events``).

    Parameters
    ----------
    features, model
        Built components (``FEATURE_SETS.get("full")()``, ``MODEL_KINDS.get("logreg")()``).
    params
        Training parameters (default: ``TrainParams()``: every day, every device).
    inputs
        What to read (default: the doh_iot corpus); ignored when ``events`` are given.
    events, hierarchy
        Labelled events and the device -> (manufacturer, category) map, given directly.

    Raises
    ------
    ConfigError
        Bad inputs (:func:`load_training_data`), an ``exclude`` device without events, or
        fewer than two devices left with a query after ``until`` and ``exclude``.
    """
    p = params if params is not None else TrainParams()
    ins = inputs if inputs is not None else TrainInputs()
    collected: Collected | None = None
    label_stats: LabelStats | None = None
    read = events is None
    if events is None:
        events, loaded, collected, label_stats = load_training_data(ins)
        hierarchy = {**loaded, **(hierarchy or {})}
    pool = list(events)
    if not pool and collected is not None:
        if collected.unlabelled:
            raise ConfigError(
                "labels",
                f"the labels name none of the {collected.unlabelled} client(s) found in "
                f"{collected.files} file(s); key them by MAC (captures, FTL) or IP (logs)",
            )
        raise ConfigError("paths", f"no DNS client in the {collected.files} file(s) read")
    check_devices("exclude", p.exclude, {str(e.device) for e in pool})
    dropped = set(p.exclude)
    pool = [e for e in pool if e.device not in dropped]
    if p.until is not None:
        pool = [e for e in pool if e.day <= p.until]
        if not pool:
            raise ConfigError("until", f"no training event on or before {p.until}")
    talking = Counter(str(e.device) for e in pool if e.queries)
    if len(talking) < 2:
        found = ", ".join(sorted(talking)) or "none"
        raise ConfigError(
            "paths",
            f"training needs events with DNS queries of at least two labelled devices; "
            f"found {found} ({len(pool)} labelled events)",
        )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        idt = Identifier.train(
            pool,
            spec=features.spec(),
            model=model.factory(),
            checkpoints=p.checkpoints_s,
            hierarchy=hierarchy,
            target_false_unknown=p.target_false_unknown,
            confidence=p.confidence,
        )
    idt.trained_on.update({
        "inputs": list(ins.paths) if read else ["events given by the caller"],
        "labels": str(ins.labels) if read and ins.labels is not None else None,
        "until": p.until,
        "excluded": sorted(dropped),
    })  # fmt: skip
    notes = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    return Trained(idt, len(pool), collected, label_stats, notes)
