"""Evaluation protocols and scores against seconds after the anchor.

For each observation window ``T`` (0, 1, 2, 5, 10, 30, 60, 300 s by default) a vectorizer and a
classifier are fitted on the training events cut at ``T`` and scored on the test events cut at
``T`` -- the paper trains one model per window too. Scores come at three label levels: the
device, its manufacturer and its category (device probabilities summed per group). Events
without any query within ``T`` stay in the test set (they are what a deployment sees) and the
share of them is reported beside the scores.

The scoring functions behind the evaluation protocols (the protocol classes, which pick the
split and return typed reports, are in :mod:`phloem.iot.protocols`):

- :func:`temporal_split_events`: train on the earlier days, test on the later ones;
- :func:`experiment_split`: a random split that keeps each experiment on one side;
- :func:`paper_rows`: the paper's own protocol -- one row per queried second-level domain,
  rows split at random -- kept to show fidelity to the paper and how it leaks between train
  and test (the same experiment contributes rows to both);
- :func:`leave_one_device_out`: unknown-device detection;
- :func:`evaluate_anytime`: the any-time mode replayed query by query.

scikit-learn is imported when scores are computed, not with this module.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from phloem.iot.domains import registered_domain
from phloem.iot.events import Event
from phloem.iot.features import FeatureSpec, Vectorizer
from phloem.iot.models import (
    LogRegClassifier,
    MLPClassifier,
    ProbabilisticClassifier,
    aggregate_proba,
)

__all__ = [
    "NO_DNS",
    "WINDOWS",
    "AnytimeScore",
    "UnknownScore",
    "WindowScore",
    "evaluate_anytime",
    "evaluate_windows",
    "experiment_split",
    "leave_one_device_out",
    "paper_rows",
    "temporal_split_events",
    "unseen_devices",
]

WINDOWS: tuple[float, ...] = (0.0, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0)
NO_DNS = "(no DNS)"
"""The prediction recorded for a test event without any query in the window (always wrong)."""


class Trainable(ProbabilisticClassifier, Protocol):
    """A classifier that can be fitted (LogRegClassifier, MLPClassifier)."""

    def fit(self, X: Any, y: Sequence[str]) -> Trainable: ...


ModelFactory = Callable[[], Trainable]


@dataclass(frozen=True)
class WindowScore:
    """Scores of one window at one label level."""

    window_s: float
    level: str  # device | manufacturer | category
    accuracy: float
    macro_f1: float
    n_test: int
    no_dns_share: float  # test events without any query within the window
    accuracy_dns: float = float("nan")  # on the test events with at least one query
    macro_f1_dns: float = float("nan")


def temporal_split_events(
    events: Sequence[Event], train_days: int | None = None, *, until: str | None = None
) -> tuple[list[Event], list[Event]]:
    """Events of the first ``train_days`` distinct days (by ``Event.day``) vs the rest.

    Or, with ``until`` (an ISO date) instead of ``train_days``: the events of the days up to
    ``until`` (included) vs the later ones. Either way both sides must hold a day.
    """
    days = sorted({e.day for e in events})
    if until is not None and train_days is None:
        n = sum(d <= until for d in days)
        if not 0 < n < len(days):
            raise ValueError(f"{until} leaves an empty train or test set")
    elif train_days is not None and until is None:
        n = train_days
        if not 0 < n < len(days):
            raise ValueError(f"train_days must lie in 1..{len(days) - 1}, got {train_days}")
    else:
        raise ValueError("give either train_days or until")
    cut = set(days[:n])
    return [e for e in events if e.day in cut], [e for e in events if e.day not in cut]


def experiment_split(
    events: Sequence[Event], test_fraction: float = 0.3, *, seed: int = 0
) -> tuple[list[Event], list[Event]]:
    """Random split by experiment: all events of one experiment land on the same side.

    The fix of the paper's leak (its rows of one experiment fall on both sides) that keeps its
    random, day-blind split. Experiments are ``Event.experiment`` (events without one are
    their own experiment).
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    ids = sorted({e.experiment or f"#{i}" for i, e in enumerate(events)})
    gen = np.random.default_rng(seed)
    test_ids = set(gen.permutation(ids)[: round(test_fraction * len(ids))].tolist())
    train: list[Event] = []
    test: list[Event] = []
    for i, e in enumerate(events):
        (test if (e.experiment or f"#{i}") in test_ids else train).append(e)
    return train, test


def _labels(events: Sequence[Event]) -> list[str]:
    out = []
    for e in events:
        if e.device is None:
            raise ValueError(f"event {e.experiment or e.key} has no device label")
        out.append(e.device)
    return out


def evaluate_windows(
    train: Sequence[Event],
    test: Sequence[Event],
    *,
    spec: FeatureSpec | None = None,
    model: ModelFactory = LogRegClassifier,
    windows: Sequence[float] = WINDOWS,
    groups: Mapping[str, Mapping[str, str]] | None = None,
    predictions: dict[str, tuple[list[str], list[str]]] | None = None,
) -> list[WindowScore]:
    """Fit per window on ``train``, score on ``test``; ``groups``: level -> device -> group.

    Test devices never seen in training count as errors at the device level, and so do events
    without any query in the window (predicted :data:`NO_DNS`: a deployment has nothing to
    answer from, so no lucky prior guess is counted). When a dict is
    passed as ``predictions`` it receives ``"<level>@<window>s" -> (truth, predicted)`` for
    every window and level (for confusion matrices).
    """
    from sklearn.metrics import accuracy_score

    y_train, y_test = _labels(train), _labels(test)
    scores: list[WindowScore] = []
    for w in windows:
        vec = Vectorizer(spec).fit(train, w)
        clf = model().fit(vec.transform(train, w), y_train)
        proba = clf.predict_proba(vec.transform(test, w))
        classes = [str(c) for c in clf.classes_]
        has = np.array([bool(e.window(w)) for e in test], dtype=bool)
        no_dns = float(1.0 - has.mean()) if test else 0.0
        levels: dict[str, tuple[np.ndarray, list[str], list[str]]] = {
            "device": (proba, classes, y_test)
        }
        for level, mapping in (groups or {}).items():
            gp, gc = aggregate_proba(proba, classes, mapping)
            levels[level] = (gp, [str(c) for c in gc], [mapping[y] for y in y_test])
        for level, (p, cls, truth) in levels.items():
            # no query in the window: the identifier has nothing to go on and gives no answer
            pred = [cls[i] if h else NO_DNS for i, h in zip(np.argmax(p, axis=1), has, strict=True)]
            if predictions is not None:
                predictions[f"{level}@{w:g}s"] = (list(truth), pred)
            t_dns = [x for x, h in zip(truth, has, strict=True) if h]
            p_dns = [x for x, h in zip(pred, has, strict=True) if h]
            scores.append(
                WindowScore(
                    w,
                    level,
                    float(accuracy_score(truth, pred)),
                    _macro_f1(truth, pred),
                    len(test),
                    no_dns,
                    float(accuracy_score(t_dns, p_dns)) if t_dns else float("nan"),
                    _macro_f1(t_dns, p_dns) if t_dns else float("nan"),
                )
            )
    return scores


def _macro_f1(truth: Sequence[str], pred: Sequence[str]) -> float:
    """Macro-F1 over the true classes: a ``(no DNS)`` or unseen prediction is a miss for its
    true class, never a class of its own that would weigh in the mean."""
    from sklearn.metrics import f1_score

    labels = sorted(set(truth))
    return float(f1_score(truth, pred, labels=labels, average="macro", zero_division=0))


def paper_rows(
    events: Sequence[Event], window_s: float, *, seed: int = 0, test_fraction: float = 0.2
) -> float:
    """The paper's protocol: one (device, second-level domain) row per query, random split.

    Each query within the window becomes one row whose only feature is its registered domain
    (one-hot); rows are split at random (so one experiment's rows land on both sides) and an
    MLP 64-64 is trained on them. Returns the row accuracy on the test rows.
    """
    rows = [(registered_domain(q.name), e.device) for e in events for q in e.window(window_s)]
    if len(rows) < 10:
        raise ValueError("too few queries in the window for the paper's protocol")
    vocab = {d: i for i, d in enumerate(sorted({d for d, _ in rows}))}
    from scipy.sparse import csr_matrix

    X = csr_matrix(
        (np.ones(len(rows)), ([*range(len(rows))], [vocab[d] for d, _ in rows])),
        shape=(len(rows), len(vocab)),
    )
    y = np.array([str(dev) for _, dev in rows])
    order = np.random.default_rng(seed).permutation(len(rows))
    n_test = round(test_fraction * len(rows))
    test_idx, train_idx = order[:n_test], order[n_test:]
    clf = MLPClassifier(hidden=(64, 64), seed=seed).fit(X[train_idx], y[train_idx])
    return float(np.mean(clf.predict(X[test_idx]) == y[test_idx]))


@dataclass(frozen=True)
class UnknownScore:
    """Leave-one-device-out unknown detection for one held-out device."""

    device: str
    threshold: float  # top-probability threshold
    unknown_flagged: float  # share of the held-out device's test events flagged unknown
    known_flagged: float  # share of the known devices' test events flagged unknown
    n_unknown: int
    n_known: int
    novelty_threshold: float = float("nan")
    window_s: float = float("nan")


def leave_one_device_out(
    train: Sequence[Event],
    test: Sequence[Event],
    window_s: float,
    *,
    spec: FeatureSpec | None = None,
    model: ModelFactory = LogRegClassifier,
    target_false_unknown: float = 0.01,
    devices: Sequence[str] | None = None,
    seed: int = 0,
) -> list[UnknownScore]:
    """Hold each device out of training; flag test events that look unknown.

    For each device an :class:`~phloem.iot.identify.Identifier` is trained on the other
    devices' training events at the single checkpoint ``window_s`` -- the deployable detector
    itself: an event is flagged when the classifier's top probability is low or when many of
    its names were never seen in training, both thresholds calibrated on the latest fifth of
    the known devices' training events, held out of the fit, each to flag at most half of
    ``target_false_unknown`` of them. Only test events with at least one query in the window
    are scored (a silent event is "no DNS", not "unknown").
    """
    from phloem.iot.identify import Identifier

    out: list[UnknownScore] = []
    scored = [e for e in test if e.window(window_s)]
    for d in devices or sorted({str(e.device) for e in train}):
        held = [e for e in scored if e.device == d]
        rest = [e for e in scored if e.device != d]
        if not held or not rest:
            continue
        idt = Identifier.train(
            [e for e in train if e.device != d],
            spec=spec,
            model=model,
            checkpoints=(window_s,),
            target_false_unknown=target_false_unknown,
            seed=seed,
        )
        out.append(_unknown_score(idt, d, held, rest, window_s))
    return out


def unseen_devices(
    train: Sequence[Event],
    test: Sequence[Event],
    window_s: float,
    *,
    spec: FeatureSpec | None = None,
    model: ModelFactory = LogRegClassifier,
    target_false_unknown: float = 0.01,
    seed: int = 0,
) -> list[UnknownScore]:
    """Unknown detection on devices that are genuinely new: in ``test`` but not in ``train``.

    One :class:`~phloem.iot.identify.Identifier` is trained on all of ``train`` (calibrated as
    in :func:`leave_one_device_out`); each new device's scored test events give one
    :class:`UnknownScore`, with the known devices' test events as the false-unknown side.
    """
    from phloem.iot.identify import Identifier

    seen = {e.device for e in train}
    scored = [e for e in test if e.window(window_s)]
    rest = [e for e in scored if e.device in seen]
    new = sorted({str(e.device) for e in scored} - {str(d) for d in seen})
    if not new or not rest:
        return []
    idt = Identifier.train(train, spec=spec, model=model, checkpoints=(window_s,),
                           target_false_unknown=target_false_unknown, seed=seed)  # fmt: skip
    return [
        _unknown_score(idt, d, [e for e in scored if e.device == d], rest, window_s) for d in new
    ]


def _unknown_score(
    idt: Any, device: str, held: Sequence[Event], rest: Sequence[Event], window_s: float
) -> UnknownScore:
    flag_held = [a.unknown for a in idt.answer_many(held, window_s, explain=False)]
    flag_rest = [a.unknown for a in idt.answer_many(rest, window_s, explain=False)]
    th = idt.thresholds_at(window_s)
    return UnknownScore(device, th.max_proba, float(np.mean(flag_held)),
                        float(np.mean(flag_rest)), len(held), len(rest), th.novelty,
                        window_s)  # fmt: skip


@dataclass(frozen=True)
class AnytimeScore:
    """How the any-time mode fares on a set of test events (see :func:`evaluate_anytime`)."""

    confidence: float
    horizon_s: float
    n_events: int  # test events with at least one query within the horizon
    answered: float  # share given a confident answer within the horizon
    first_answer_accuracy: float  # accuracy of those first confident answers
    final_accuracy: float  # top device at the horizon (every scored event)
    median_time_s: float  # seconds from the anchor to the first confident answer
    p90_time_s: float
    revised: float  # share of answered events whose device changed later
    flagged_unknown: float  # share flagged unknown at some point


def evaluate_anytime(
    identifier: Any,
    test: Sequence[Event],
    *,
    confidence: float = 0.9,
    horizon_s: float = 60.0,
) -> AnytimeScore:
    """Replay each test event query by query through a :class:`~phloem.iot.stream.Tracker`.

    The any-time mode answers once the top probability reaches ``confidence`` (and the event
    is not flagged unknown); this scores those first answers, when they came, and the answer
    at the horizon. Events with no query within the horizon are left out.
    """
    from phloem.iot.events import Observation
    from phloem.iot.stream import Tracker

    firsts: list[tuple[bool, float]] = []
    finals: list[bool] = []
    revised = unknown = 0
    n = 0
    for e in test:
        qs = e.window(horizon_s)
        if not qs:
            continue
        n += 1
        tracker = Tracker(identifier, horizon_s=horizon_s, confidence=confidence, explain=False)
        first: tuple[bool, float] | None = None
        changed = flagged = False
        obs = (Observation(e.anchor_utc + q.t, e.key, "query", q.name, q.qtype, q.resolver,
                           q.stack) for q in qs)  # fmt: skip
        for line in tracker.run(obs):
            kind = line["event"]
            if kind == "identified":
                first = (line["device"] == e.device, float(line["elapsed_s"]))
            elif kind == "revised":
                changed = True
            elif kind == "unknown":
                flagged = True
            elif kind == "final":
                finals.append(bool(line["top"]) and line["top"][0]["label"] == e.device)
        if first is not None:
            firsts.append(first)
            revised += changed
        unknown += flagged
    times = np.array([t for _, t in firsts]) if firsts else np.array([np.nan])
    return AnytimeScore(
        confidence,
        horizon_s,
        n,
        len(firsts) / n if n else float("nan"),
        float(np.mean([ok for ok, _ in firsts])) if firsts else float("nan"),
        float(np.mean(finals)) if finals else float("nan"),
        float(np.median(times)),
        float(np.percentile(times, 90)),
        revised / len(firsts) if firsts else float("nan"),
        unknown / n if n else float("nan"),
    )
