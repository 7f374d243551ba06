"""The deployable identifier: one numpy-only file that names a device at any time after it joins.

:class:`Identifier` bundles what a gateway needs to answer "which device is this?" from the
queries a client has sent so far:

- an **any-time model**: one classifier trained on every training event cut at every
  checkpoint (0, 1, 2, 5, 10, 30, 60 s by default), so the same weights answer after the
  first query and keep refining as queries arrive -- no model per window to pick;
- **unknown-device detection** calibrated per checkpoint on known devices held out of the
  fit: a low top probability (:class:`~phloem.iot.models.UnknownDetector`) or a high share of
  never-seen names (:class:`~phloem.iot.unknown.NoveltyDetector`) flags the event;
- the **label hierarchy** device -> manufacturer -> category, with probabilities summed up
  the tree;
- **explanations**: the names (and stack traits) whose removal would cost the answer the most
  probability.

It is saved as one ``.npz`` (:class:`~phloem.iot.models.NumpyModel` plus JSON metadata) and
needs neither torch, scikit-learn nor scipy to load and run.
"""

from __future__ import annotations

import bisect
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

import numpy as np
import numpy.typing as npt

from phloem.core.errors import PhloemError
from phloem.iot.events import Event, Query
from phloem.iot.features import FeatureSpec, Vectorizer
from phloem.iot.models import (
    NumpyModel,
    ProbabilisticClassifier,
    UnknownDetector,
    aggregate_proba,
    export_numpy,
)
from phloem.iot.unknown import DeviceQueries, high_threshold, masked_names, novelty_share
from phloem.iot.vendors import VendorIndex

__all__ = ["CHECKPOINTS", "Answer", "Calibration", "Identifier", "Level"]

CHECKPOINTS: tuple[float, ...] = (0.0, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
"""Seconds after the anchor the any-time model is trained (and its thresholds calibrated) at."""

_FORMAT = "phloem.iot.identifier/1"
_MIN_DROP = 0.005  # a driver must move the top probability by at least this much
_NEVER = 2.0  # a novelty threshold no event reaches (novelty is a share, at most 1)
_MIN_CALIBRATION = 20  # fewer fresh held-out events than this: calibrate on all of them
_MIN_VENDOR_MASS = 1e-3  # the devices of a client's MAC vendor must hold this much probability


class Calibration(StrEnum):
    """Which training events calibrate the unknown-device thresholds."""

    LATEST = "latest"
    """the latest by anchor time (they see the drift of later days)"""
    RANDOM = "random"
    """a random share"""


@dataclass(frozen=True)
class Level:
    """The top label of one hierarchy level and its probability.

    ``by`` says what named it: ``"model"`` (the classifier; ``probability`` its summed
    probability), or, for a manufacturer named from evidence
    (:mod:`phloem.iot.vendors`), the evidence itself (``"oui: 9c:a2:f4 TP-Link ..."``,
    ``"names: tplinkcloud.com"``), with no probability.
    """

    label: str
    probability: float | None
    by: str = "model"

    def to_dict(self) -> dict[str, Any]:
        p = None if self.probability is None else round(self.probability, 4)
        return {"label": self.label, "p": p, "by": self.by}


def level_dict(v: Level | None) -> dict[str, Any] | None:
    """``v`` as JSON (``None`` stays ``None``)."""
    return None if v is None else v.to_dict()


def level_text(v: dict[str, Any]) -> str:
    """A level's JSON form in words: ``"TP-Link 0.97"``, or ``"TP-Link (oui)"`` when
    evidence named it."""
    if v.get("p") is None:
        return f"{v['label']} ({str(v.get('by', '')).split(':', 1)[0]})"
    return f"{v['label']} {v['p']:.2f}"


@dataclass(frozen=True)
class Answer:
    """What the identifier says about one client after ``elapsed_s`` seconds.

    Attributes
    ----------
    key
        The client (MAC or IP).
    elapsed_s
        Seconds after the anchor covered by the answer.
    n_queries
        Queries seen within them.
    top
        The most probable devices with their probabilities, best first.
    manufacturer, category
        The top label of each level (device probabilities summed per group); ``None`` when
        the identifier has no hierarchy. For an unknown device (or one without queries) the
        manufacturer is named from evidence instead (the MAC's OUI, vendor names among the
        queried domains; :attr:`Level.by` says which), or ``None`` when there is none, and
        the category is ``None``: the model's guesses among the manufacturers and categories
        it knows are no names for a device it never saw.
    unknown
        The event looks like a device the model was not trained on (:attr:`why_unknown`).
    confident
        The top probability reached the confidence threshold (the identifier's own unless the
        caller gave one) and the event is not unknown: an any-time caller can act on
        :attr:`device`.
    novelty
        Share of the distinct (masked) names never seen in training.
    drivers
        ``(what, drop)``: the names, or ``stack:...`` / ``resolver:...`` traits, whose removal
        lowers the top device's probability the most, largest drop first (drops of at least
        0.005 only).
    why_unknown
        What flagged the event unknown: a low top probability, many never-seen names, a MAC
        vendor never seen for the top device.
    evidence
        Everything that points at a manufacturer, strongest first (``"oui: ..."``,
        ``"names: ..."``, ``"vendor names: ..."``), whatever the answer.
    """

    key: str
    elapsed_s: float
    n_queries: int
    top: tuple[Level, ...]
    manufacturer: Level | None
    category: Level | None
    unknown: bool
    confident: bool
    novelty: float
    drivers: tuple[tuple[str, float], ...] = ()
    why_unknown: tuple[str, ...] = ()
    evidence: tuple[str, ...] = ()

    @property
    def device(self) -> str | None:
        """The top device, or ``None`` when the event is unknown or has no queries."""
        if self.unknown or not self.top or self.n_queries == 0:
            return None
        return self.top[0].label

    @property
    def confidence(self) -> float:
        return (self.top[0].probability or 0.0) if self.top else 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form (for ``phloem iot monitor`` lines and ``--json`` reports)."""
        level = level_dict
        return {
            "key": self.key,
            "elapsed_s": round(self.elapsed_s, 3),
            "n_queries": self.n_queries,
            "device": self.device,
            "confidence": round(self.confidence, 4),
            "confident": self.confident,
            "unknown": self.unknown,
            "novelty": round(self.novelty, 4),
            "manufacturer": level(self.manufacturer),
            "category": level(self.category),
            "top": [level(v) for v in self.top],
            "drivers": [[w, round(d, 4)] for w, d in self.drivers],
            "why_unknown": list(self.why_unknown),
            "evidence": list(self.evidence),
        }


@dataclass
class _Thresholds:
    """One checkpoint's unknown thresholds: the top probability below which a client is
    flagged, for clients whose MAC vendor narrowed the answer (``max_proba``) and for the
    others (``max_proba_raw``: IP keys, randomised MACs; ``None``: as ``max_proba``, models
    saved before the two were told apart), and the device novelty at which it is
    (``novelty``, ``novelty_raw`` likewise; models without per-device queries: the share of
    names never seen at all)."""

    window_s: float
    max_proba: float
    novelty: float
    max_proba_raw: float | None = None
    novelty_raw: float | None = None

    def top_probability(self, narrowed: bool) -> float:
        if narrowed or self.max_proba_raw is None:
            return self.max_proba
        return self.max_proba_raw

    def top_novelty(self, narrowed: bool) -> float:
        if narrowed or self.novelty_raw is None:
            return self.novelty
        return self.novelty_raw


@dataclass
class Identifier:
    """A trained any-time device identifier; build with :meth:`train`, keep with :meth:`save`.

    Parameters
    ----------
    model
        The numpy-only classifier (features + dense layers).
    checkpoints
        Windows the model was trained and calibrated at, ascending.
    thresholds
        Per checkpoint: the top-probability threshold and the novelty threshold.
    vocabulary
        Masked names seen in training (the novelty detector's memory).
    hierarchy
        Device -> ``(manufacturer, category)``; may be empty.
    confidence
        Top probability at which an answer counts as confident (any-time mode).
    trained_on
        What the model was fitted and calibrated on: ``events``, ``events_per_device``,
        ``days`` (first and last), ``held_out`` (events that calibrated instead), ``features``
        (the feature blocks); empty for models saved before it was recorded.
    vendors
        What training taught about manufacturers (:class:`~phloem.iot.vendors.VendorIndex`;
        empty for older models: the OUI registry still names manufacturers).
    """

    model: NumpyModel
    checkpoints: tuple[float, ...]
    thresholds: list[_Thresholds]
    vocabulary: frozenset[str]
    hierarchy: dict[str, tuple[str, str]] = field(default_factory=dict)
    confidence: float = 0.9
    trained_on: dict[str, Any] = field(default_factory=dict)
    vendors: VendorIndex = field(default_factory=VendorIndex)
    device_queries: DeviceQueries = field(default_factory=DeviceQueries)

    # --- training --------------------------------------------------------------------------

    @classmethod
    def train(
        cls,
        events: Sequence[Event],
        *,
        spec: FeatureSpec | None = None,
        model: Callable[[], Any] | None = None,
        checkpoints: Sequence[float] = CHECKPOINTS,
        hierarchy: Mapping[str, tuple[str, str]] | None = None,
        target_false_unknown: float = 0.01,
        val_fraction: float = 0.2,
        confidence: float = 0.9,
        calibrate_on: Calibration | str = "latest",
        seed: int = 0,
    ) -> Identifier:
        """Fit on labelled ``events`` and calibrate the unknown detectors.

        A ``val_fraction`` of the events is held out of the fit; on it each checkpoint's two
        thresholds are set to flag at most half of ``target_false_unknown`` of the known
        devices' events each (so at most the target together). Events without a query within a
        checkpoint add no training row for it.

        No device is ever dropped: should the held-out share hold every event of a device (one
        that appears only late), the split falls back, with a warning, to the same share of
        each device's events. By default the held-out events are the *latest* ones: devices
        drift (new CDN names, firmware updates), and thresholds calibrated on events as old as
        the fit flag more known devices later on. On doh_iot (train 10-19..25, test
        10-26..28, 60 s) random calibration flagged 1.8% of the known test events, the
        latest-events calibration 0.7%.

        Parameters
        ----------
        events
            Labelled events (``Event.device`` set).
        spec
            Feature blocks (default: all).
        model
            A factory of an unfitted classifier with ``fit``/``predict_proba``/
            ``dense_layers`` (default: :class:`~phloem.iot.models.LogRegClassifier`).
        checkpoints
            Windows to train and calibrate at.
        hierarchy
            Device -> (manufacturer, category) for the hierarchical answer.
        target_false_unknown
            Share of known-device events allowed to be flagged unknown.
        val_fraction
            Share of events held out for calibration.
        confidence
            Default any-time confidence threshold stored with the model.
        calibrate_on
            ``"latest"`` (default: the latest events by anchor time) or ``"random"``.
        seed
            Seeds the random calibration split.
        """
        from scipy.sparse import vstack

        from phloem.iot.models import LogRegClassifier

        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
        cps = tuple(sorted({float(c) for c in checkpoints}))
        if not cps or cps[0] < 0:
            raise ValueError(f"checkpoints must be non-negative seconds, got {checkpoints}")
        labelled = [e for e in events if e.device is not None]
        if len(labelled) != len(events):
            raise ValueError("every training event needs a device label")
        if calibrate_on not in set(Calibration):
            raise ValueError(f"calibrate_on must be 'latest' or 'random', got {calibrate_on!r}")
        mask = _held_out(labelled, val_fraction, Calibration(calibrate_on), seed)
        fit_ev = [e for e, m in zip(labelled, mask, strict=True) if not m]
        val_ev = [e for e, m in zip(labelled, mask, strict=True) if m]
        vec = Vectorizer(spec).fit(fit_ev, cps[-1])
        blocks: list[Any] = []
        y: list[str] = []
        for w in cps:
            rows = [e for e in fit_ev if e.window(w)]
            blocks.append(vec.transform(rows, w))
            y.extend(str(e.device) for e in rows)
        clf: ProbabilisticClassifier = (model or LogRegClassifier)().fit(vstack(blocks), y)
        numpy_model = export_numpy(clf, vec)
        vocabulary = masked_names(q for e in fit_ev for q in e.window(cps[-1]))
        counts: dict[str, int] = {}
        for e in labelled:
            counts[str(e.device)] = counts.get(str(e.device), 0) + 1
        days = sorted({e.day for e in labelled if e.day})
        trained_on: dict[str, Any] = {
            "events": len(labelled),
            "events_per_device": dict(sorted(counts.items())),
            "days": [days[0], days[-1]] if days else [],
            "held_out": int(mask.sum()),
            "features": [str(b) for b in vec.spec.blocks],
        }
        idt = cls(
            numpy_model,
            cps,
            [],
            frozenset(vocabulary),
            dict(hierarchy or {}),
            confidence,
            trained_on,
            VendorIndex.learn(labelled, hierarchy or {}),
            DeviceQueries.fit(fit_ev, cps[-1]),
        )
        for k, w in enumerate(cps):
            val_w = [e for e in val_ev if e.window(w)]
            if not val_w:
                idt.thresholds.append(_Thresholds(w, 0.0, _NEVER))
                continue
            # the states these thresholds will judge (see thresholds_for): every held-out
            # event as it stood after each of its queries between the previous checkpoint
            # and this one; the events cut at ``w`` if there are too few
            fresh = _states(val_w, cps[k - 1] if k else -np.inf, w)
            pop = fresh if len(fresh) >= _MIN_CALIBRATION else val_w
            # calibrated on the deployed predictor: the exported (float32) model, its
            # probabilities narrowed by the MAC vendors as answers are
            rate = target_false_unknown / 2
            narrowed = idt.posterior(pop, w)[0]
            raw = numpy_model.predict_proba_events(pop, w)
            det = UnknownDetector.calibrate(narrowed, rate)
            det_raw = UnknownDetector.calibrate(raw, rate)
            nov, nov_raw = (
                high_threshold(idt._device_novelty(pop, w, p), rate) for p in (narrowed, raw)
            )
            idt.thresholds.append(_Thresholds(w, det.threshold, nov, det_raw.threshold, nov_raw))
        trained_on["reference"] = idt._reference(val_ev, cps[-1], target_false_unknown)
        return idt

    def _device_novelty(
        self, events: Sequence[Event], window_s: float, proba: npt.NDArray[np.float32]
    ) -> list[float]:
        """Per event, its device novelty (:class:`~phloem.iot.unknown.DeviceQueries`) for
        the top device of its row of ``proba``."""
        top = proba.argmax(axis=1)
        return [
            self.device_queries.share_unseen(e.window(window_s), self.classes[int(c)])
            for e, c in zip(events, top, strict=True)
        ]

    def _reference(
        self, held_out: Sequence[Event], window_s: float, target: float
    ) -> dict[str, Any]:
        """Per device, how its held-out events looked at ``window_s``: the yardstick of
        :mod:`phloem.iot.drift` (events with a query only)."""
        talking = [e for e in held_out if e.window(window_s)]
        per: dict[str, list[Answer]] = {}
        for e, a in zip(talking, self.answer_many(talking, window_s, explain=False), strict=True):
            per.setdefault(str(e.device), []).append(a)
        devices = {
            d: {
                "events": len(ans),
                "flagged": round(sum(a.unknown for a in ans) / len(ans), 4),
                "top_p": round(float(np.mean([a.confidence for a in ans])), 4),
                "right": round(sum(a.top[0].label == d for a in ans) / len(ans), 4),
            }
            for d, ans in sorted(per.items())
        }
        return {"window_s": window_s, "target_false_unknown": target, "devices": devices}

    # --- persistence -----------------------------------------------------------------------

    def save(self, path: str | os.PathLike[str]) -> None:
        """One ``.npz``: the numpy model with the identifier's metadata in its JSON."""
        self.model.extra = {
            "format": _FORMAT,
            "checkpoints": list(self.checkpoints),
            "thresholds": [
                [t.window_s, t.max_proba, t.novelty, t.max_proba_raw, t.novelty_raw]
                for t in self.thresholds
            ],
            "device_queries": {d: sorted(k) for d, k in self.device_queries.keys.items()},
            "vocabulary": sorted(self.vocabulary),
            "hierarchy": {d: list(mc) for d, mc in sorted(self.hierarchy.items())},
            "confidence": self.confidence,
            "trained_on": self.trained_on,
            "vendors": self.vendors.to_dict(),
        }
        self.model.save(path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Identifier:
        """Read a file written by :meth:`save`.

        A bare model from :func:`~phloem.iot.models.export_numpy` loads too: it then has no
        unknown detection, no hierarchy, and one checkpoint at 0 s.
        """
        m = NumpyModel.load(path)
        x = m.extra
        if x.get("format") != _FORMAT:
            return cls(m, (0.0,), [_Thresholds(0.0, 0.0, _NEVER)], frozenset())
        try:
            idt = cls(
                m,
                tuple(float(c) for c in x["checkpoints"]),
                [_thresholds(row) for row in x["thresholds"]],
                frozenset(map(str, x["vocabulary"])),
                {str(d): (str(mc[0]), str(mc[1])) for d, mc in x["hierarchy"].items()},
                float(x["confidence"]),
                dict(x.get("trained_on") or {}),
                VendorIndex.from_dict(x.get("vendors") or {}),
                DeviceQueries(
                    {
                        str(d): frozenset(map(str, k))
                        for d, k in (x.get("device_queries") or {}).items()
                    }
                ),
            )
            idt._check()
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as e:
            raise PhloemError(
                f"{path} is not a usable phloem identifier: its metadata is damaged "
                f"({type(e).__name__}: {e}); make one with `phloem iot train`"
            ) from None
        return idt

    def _check(self) -> None:
        """Refuse metadata no training writes (a damaged or forged model file)."""
        cps = self.checkpoints
        if not cps or not all(math.isfinite(c) and c >= 0 for c in cps) or list(cps) != sorted(cps):
            raise ValueError(f"checkpoints {list(cps)} are not ascending non-negative seconds")
        if len(self.thresholds) != len(cps):
            raise ValueError(f"{len(self.thresholds)} threshold rows for {len(cps)} checkpoints")
        values = [v for t in self.thresholds for v in (t.max_proba, t.novelty)]
        if not all(math.isfinite(v) for v in values) or not 0 < self.confidence <= 1:
            raise ValueError("thresholds or confidence out of range")

    # --- answering -------------------------------------------------------------------------

    @property
    def classes(self) -> list[str]:
        return self.model.classes

    def thresholds_at(self, elapsed_s: float) -> _Thresholds:
        """The thresholds of the last checkpoint at or before ``elapsed_s`` (the first before)."""
        i = bisect.bisect_right(self.checkpoints, elapsed_s) - 1
        return self.thresholds[max(i, 0)]

    def thresholds_for(self, last_query_s: float) -> _Thresholds:
        """The thresholds that judge a client whose last query came ``last_query_s`` after its
        anchor: those of the first checkpoint at or after it (the last beyond them all).

        Each checkpoint's thresholds are calibrated on the held-out events as they stood
        after each of their queries between the previous checkpoint and this one -- the
        states they judge -- and a client is judged by them until its next query, whatever the
        window: its answer never changes without new evidence.
        """
        i = bisect.bisect_left(self.checkpoints, last_query_s)
        return self.thresholds[min(i, len(self.thresholds) - 1)]

    def novelty(self, queries: Sequence[Query]) -> float:
        """Share of the distinct masked names of ``queries`` never seen in training."""
        return novelty_share(queries, self.vocabulary)

    def posterior(
        self, events: Sequence[Event], window_s: float
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_], list[str | None]]:
        """Device probabilities given the queries *and* the client's MAC vendor; per event,
        whether the vendor narrowed them, and why no known device fits that vendor (``None``
        when one does).

        A client keyed by a MAC with a registered OUI can only be a device seen with that
        OUI vendor in training (or one trained without MACs): the classifier's probabilities
        are restricted to those devices and renormalised. When they hold less than
        :data:`_MIN_VENDOR_MASS` of the probability, or there are none, the probabilities are
        left as they are and the reason is returned: no known device fits.
        """
        proba = self.proba(events, window_s)
        notes: list[str | None] = [None] * len(events)
        narrowed = np.zeros(len(events), dtype=bool)
        classes = self.classes
        fits: dict[str, tuple[npt.NDArray[np.bool_], str] | None] = {}  # per key, once
        for i, e in enumerate(events):
            if e.key not in fits:
                fits[e.key] = self.vendors.consistent(e.key, classes)
            fit = fits[e.key]
            if fit is None:
                continue
            allowed, vendor = fit
            mass = float(proba[i, allowed].sum())
            if mass < _MIN_VENDOR_MASS:
                notes[i] = f"MAC vendor {vendor}: no known device with it fits"
                continue
            row = np.where(allowed, proba[i], 0.0) / mass
            proba[i] = row.astype(np.float32)
            narrowed[i] = True
        return proba, narrowed, notes

    def proba(self, events: Sequence[Event], window_s: float) -> npt.NDArray[np.float32]:
        """Device probabilities of each event's first ``window_s`` seconds."""
        return self.model.predict_proba_events(events, window_s)

    def answer(
        self,
        event: Event,
        window_s: float,
        *,
        top: int = 3,
        explain: bool = True,
        confidence: float | None = None,
    ) -> Answer:
        """The identifier's answer for one event cut at ``window_s`` seconds.

        ``confidence`` is the top probability :attr:`Answer.confident` needs (default: the
        identifier's own :attr:`confidence`).
        """
        (ans,) = self.answer_many(
            [event], window_s, top=top, explain=explain, confidence=confidence
        )
        return ans

    def answer_many(
        self,
        events: Sequence[Event],
        window_s: float,
        *,
        top: int = 3,
        explain: bool = True,
        confidence: float | None = None,
    ) -> list[Answer]:
        """:meth:`answer` for many events (one batched prediction).

        The unknown thresholds follow the event's *last query* within the window
        (:meth:`thresholds_for`), not the window itself: an answer changes only when a query
        arrives, never as a silent client's clock runs on into a later checkpoint.
        """
        if not events:
            return []
        proba, narrowed, vendor_notes = self.posterior(events, window_s)
        needed = self.confidence if confidence is None else confidence
        man, cat = self._hierarchy(proba)
        out = []
        for i, (e, p) in enumerate(zip(events, proba, strict=True)):
            qs = e.window(window_s)
            order = np.argsort(-p, kind="stable")[:top]
            levels = tuple(Level(self.classes[j], float(p[j])) for j in order)
            nov = self.novelty(qs)
            why = (
                self._why_unknown(qs, levels[0], nov, bool(narrowed[i]), vendor_notes[i])
                if qs
                else ()
            )
            evidence = self.vendors.evidence(e.key, qs)
            maker, kind = man[i], cat[i]
            if why or not qs:  # the model's levels are guesses among what it knows: drop them
                ev = evidence[0] if evidence else None
                maker = None if ev is None else Level(ev.manufacturer, None, str(ev))
                kind = None
            drivers = (
                self._drivers(e, window_s, int(order[0]), float(p[order[0]])) if explain else ()
            )
            out.append(
                Answer(
                    e.key,
                    window_s,
                    len(qs),
                    levels,
                    maker,
                    kind,
                    bool(why),
                    bool(qs) and not why and float(p.max()) >= needed,
                    nov,
                    drivers,
                    why,
                    tuple(str(x) for x in evidence),
                )
            )
        return out

    def _why_unknown(
        self,
        queries: Sequence[Query],
        best: Level,
        novelty: float,
        narrowed: bool,
        vendor: str | None,
    ) -> tuple[str, ...]:
        """The reasons ``queries`` (non-empty) look like an unknown device (``narrowed``: the
        MAC vendor narrowed the probabilities; ``vendor``: why no known device fits it)."""
        th = self.thresholds_for(queries[-1].t)
        why = []
        floor = th.top_probability(narrowed)
        if best.probability is not None and best.probability < floor:
            why.append(f"top probability {best.probability:.2f} < {floor:.2f}")
        if self.device_queries.keys:
            new = self.device_queries.share_unseen(queries, best.label)
            cut = th.top_novelty(narrowed)
            if new >= cut:
                why.append(f"queries {best.label} never sent {new:.0%} >= {cut:.0%}")
        elif novelty >= th.novelty:  # a model saved before per-device queries were kept
            why.append(f"never-seen names {novelty:.0%} >= {th.novelty:.0%}")
        if vendor is not None:
            why.append(vendor)
        return tuple(why)

    def with_drivers(self, event: Event, answer: Answer) -> Answer:
        """``answer`` (given for ``event`` without explanation) with its :attr:`~Answer.drivers`.

        The same drivers as ``answer(event, answer.elapsed_s, explain=True)`` would give, without
        predicting the event itself again.
        """
        if not answer.top:
            return answer
        best = answer.top[0]
        cls = self.classes.index(best.label)
        return replace(
            answer, drivers=self._drivers(event, answer.elapsed_s, cls, best.probability or 0.0)
        )

    def _hierarchy(
        self, proba: npt.NDArray[np.float32]
    ) -> tuple[list[Level | None], list[Level | None]]:
        """Per row, the top manufacturer and category (device probabilities summed per group).

        Ties go to the group named first in sorted order.
        """
        if not self.hierarchy:
            return [None] * len(proba), [None] * len(proba)
        out: list[list[Level | None]] = []
        for level in (0, 1):
            mapping = {c: self.hierarchy.get(c, ("?", "?"))[level] for c in self.classes}
            sums, groups = aggregate_proba(proba, self.classes, mapping)
            best = sums.argmax(axis=1)  # the first maximum: groups come sorted
            out.append([Level(groups[k], float(sums[i, k])) for i, k in enumerate(best)])
        return out[0], out[1]

    def _drivers(
        self, event: Event, window_s: float, cls: int, p_top: float, k: int = 3
    ) -> tuple[tuple[str, float], ...]:
        """Occlusion: the top class's probability without each name (or trait), one at a time."""
        qs = event.window(window_s)
        if not qs:
            return ()
        what: list[str] = []
        variants: list[Event] = []
        for name in dict.fromkeys(q.name for q in qs):
            what.append(name)
            kept = tuple(q for q in qs if q.name != name)
            variants.append(Event(event.key, event.anchor_utc, kept))
        for attr, label in (("stack", "stack"), ("resolver", "resolver")):
            values = {getattr(q, attr) for q in qs} - {""}
            if values:
                what.append(f"{label}:{' | '.join(sorted(values))}")
                blank = tuple(_blank(q, attr) for q in qs)
                variants.append(Event(event.key, event.anchor_utc, blank))
        p = self.posterior(variants, window_s)[0][:, cls]  # same key: narrowed as the event
        drops = sorted(
            ((w, p_top - float(v)) for w, v in zip(what, p, strict=True) if p_top - v >= _MIN_DROP),
            key=lambda wd: -wd[1],
        )
        return tuple(drops[:k])

    def timeline(
        self, event: Event, windows: Sequence[float] | None = None, *, top: int = 1
    ) -> list[Answer]:
        """Answers at each of ``windows`` (default: the checkpoints), no explanations."""
        return [
            self.answer(event, w, top=top, explain=False) for w in (windows or self.checkpoints)
        ]


def _states(events: Sequence[Event], after: float, until: float) -> list[Event]:
    """Each event as it stood after each of its queries in ``(after, until]`` (queries at the
    same instant arrive together)."""
    out = []
    for e in events:
        qs = e.queries
        for j, q in enumerate(qs):
            if after < q.t <= until and (j + 1 == len(qs) or qs[j + 1].t > q.t):
                out.append(Event(e.key, e.anchor_utc, qs[: j + 1], e.device))
    return out


def _thresholds(row: Sequence[Any]) -> _Thresholds:
    """A saved thresholds row: ``[window, max_proba, novelty]`` (older models), then
    ``max_proba_raw`` and ``novelty_raw``."""

    def extra(k: int) -> float | None:
        return float(row[k]) if len(row) > k and row[k] is not None else None

    return _Thresholds(float(row[0]), float(row[1]), float(row[2]), extra(3), extra(4))


def _blank(q: Query, attr: str) -> Query:
    return replace(q, stack="") if attr == "stack" else replace(q, resolver="")


def _held_out(
    events: Sequence[Event], val_fraction: float, how: Calibration, seed: int
) -> npt.NDArray[np.bool_]:
    """Which events calibrate instead of fitting: ``val_fraction`` of them, the latest by
    anchor time or drawn at random. Should that take every event of some device (a device
    that appears only late), the split falls back, with a warning, to ``val_fraction`` of
    *each device's* events, so that no device is dropped from the fit; a device with a single
    event is then fitted only."""
    import warnings

    n = len(events)
    if how is Calibration.LATEST:
        order = np.argsort([e.anchor_utc for e in events], kind="stable")
        mask = np.zeros(n, dtype=bool)
        mask[order[n - round(val_fraction * n) :]] = True
    else:
        mask = np.random.default_rng(seed).random(n) < val_fraction
    fitted = {str(e.device) for e, m in zip(events, mask, strict=True) if not m}
    dropped = sorted({str(e.device) for e in events} - fitted)
    if not dropped:
        return mask
    by_device: dict[str, list[int]] = {}
    for i, e in enumerate(events):
        by_device.setdefault(str(e.device), []).append(i)
    rng = np.random.default_rng(seed)
    mask = np.zeros(n, dtype=bool)
    for idx in by_device.values():
        k = min(round(val_fraction * len(idx)), len(idx) - 1)
        if k <= 0:
            continue
        if how is Calibration.LATEST:
            latest = sorted(idx, key=lambda i: events[i].anchor_utc)
            mask[latest[len(latest) - k :]] = True
        else:
            mask[rng.choice(idx, size=k, replace=False)] = True
    shown = ", ".join(dropped[:10]) + (" ..." if len(dropped) > 10 else "")
    warnings.warn(
        f"the {how.value} {val_fraction:.0%} of the events held out for calibration would hold "
        f"every event of {len(dropped)} device(s) ({shown}) and drop them from the model; "
        f"held out {val_fraction:.0%} of each device's events instead",
        UserWarning,
        stacklevel=3,
    )
    return mask
