"""Per-event unknown-detection scores of the deployed any-time model, for explore.py.

Re-implements :meth:`phloem.iot.identify.Identifier.train` (same vectorizer vocabulary, same
checkpoint-stacked rows, same ``LogRegClassifier``, same latest-20% calibration hold-out) with
each event's feature terms computed once, so that many models can be fitted on subsets of the
devices, and returns for every scored event the raw scores that explore.py's detectors
combine -- each pred-dependent score twice: on the classifier's probabilities, and (suffix
``_f``) on the probabilities narrowed to the devices seen with the client's MAC vendor, as
``Identifier.posterior`` does. :func:`check_against_identifier` compares the
re-implementation with the Identifier of the source tree.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from scipy.sparse import csr_matrix, vstack

from phloem.iot.events import Event
from phloem.iot.features import Vectorizer, _resolver_term, name_parts
from phloem.iot.identify import CHECKPOINTS, Calibration, _held_out
from phloem.iot.models import LogRegClassifier
from phloem.iot.vendors import brand_key, oui_vendor

SCORE_WINDOWS: tuple[float, ...] = (0.0, 2.0, 60.0)
MIN_VENDOR_MASS = 1e-3  # as identify.py: the vendor's devices must hold this much probability
MIN_CALIBRATION = 20  # as identify.py: fewer fresh calibration events -> use all of them

QueryKey = tuple[str, int, str, str, str]  # masked name, qtype, resolver class, stack, sld


_resolver = lru_cache(maxsize=4096)(_resolver_term)  # the feature's own resolver term


def _brand(key: str) -> str | None:
    v = oui_vendor(key)
    return None if v is None else brand_key(v[1])


class Corpus:
    """The events with their feature terms, masked names and query keys per window."""

    def __init__(self, events: Sequence[Event], windows: Sequence[float] = CHECKPOINTS) -> None:
        self.events = list(events)
        self.device = np.array([str(e.device) for e in self.events])
        self.day = np.array([e.day for e in self.events])
        self.brand = [_brand(e.key) for e in self.events]
        vec = Vectorizer()
        self.windows = tuple(sorted(set(windows) | set(SCORE_WINDOWS)))
        self.terms = {w: [vec.terms(e.window(w)) for e in self.events] for w in self.windows}
        self.has = {w: np.array([bool(e.window(w)) for e in self.events]) for w in self.windows}
        self.last_t = np.array([e.queries[-1].t if e.queries else np.nan for e in self.events])
        self.names: dict[float, list[frozenset[str]]] = {}
        self.qkeys: dict[float, list[frozenset[QueryKey]]] = {}
        for w in self.windows:
            self.names[w] = [
                frozenset(name_parts(q.name).masked for q in e.window(w)) for e in self.events
            ]
            self.qkeys[w] = [
                frozenset(
                    (
                        name_parts(q.name).masked,
                        q.qtype,
                        _resolver(q.resolver),
                        q.stack,
                        name_parts(q.name).sld,
                    )
                    for q in e.window(w)
                )
                for e in self.events
            ]

    def last_query(self, i: int, w: float) -> float:
        qs = self.events[i].window(w)
        return qs[-1].t if qs else float("nan")

    def featurise(self, idx: Sequence[int], w: float, vocab: dict[str, int]) -> csr_matrix:
        """Rows as :meth:`Vectorizer.transform` gives them (default spec: weights 1, L2)."""
        indptr = [0]
        ind: list[int] = []
        dat: list[float] = []
        terms = self.terms[w]
        for i in idx:
            cells = sorted((vocab[t], v) for t, v in terms[i].items() if v != 0.0 and t in vocab)
            if cells:
                norm = math.sqrt(sum(v * v for _, v in cells))
                ind.extend(j for j, _ in cells)
                dat.extend(v / norm for _, v in cells)
            indptr.append(len(ind))
        return csr_matrix(
            (np.asarray(dat, np.float64), np.asarray(ind, np.int64), np.asarray(indptr)),
            shape=(len(idx), len(vocab)),
        )


KEYS: dict[str, Callable[[QueryKey], Any]] = {
    "tuple": lambda t: t[:4],  # masked name, qtype, resolver class, stack fingerprint
    "name": lambda t: t[0],
    "name_stack": lambda t: (t[0], t[3]),
    "name_qtype": lambda t: (t[0], t[1]),
    "name_qtype_resolver": lambda t: t[:3],  # what resolver logs carry (no stack)
    "sld": lambda t: t[4],
    "sld_stack": lambda t: (t[4], t[3]),
}
"""What a query contributes to the class-conditional novelty shares ``nov_<key>_cls``: the
share of an event's distinct keys never seen in the training events of the predicted
device."""


def keys_of(qkeys: frozenset[QueryKey], kind: str) -> frozenset[Any]:
    f = KEYS[kind]
    return frozenset(f(t) for t in qkeys)


@dataclass
class Model:
    """One fitted any-time model and what its scores need from its training events."""

    classes: np.ndarray
    vocab: dict[str, int]
    W: np.ndarray  # float32 (n_features, n_classes)
    b: np.ndarray
    fit_idx: np.ndarray
    names: frozenset[str]  # masked names seen within 60 s (NoveltyDetector's vocabulary)
    tuples: frozenset[Any]
    class_keys: dict[str, list[frozenset[Any]]]  # key kind -> per class, the keys seen
    class_brands: list[frozenset[str]]  # per class, the MAC vendors of its training events


def split_fit_cal(corpus: Corpus, known: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The Identifier's split of ``known`` (event indices): fit, and latest 20% to calibrate."""
    mask = _held_out([corpus.events[i] for i in known], 0.2, Calibration.LATEST, 0)
    return known[~mask], known[mask]


def fit_model(
    corpus: Corpus,
    fit_idx: np.ndarray,
    cps: Sequence[float] = CHECKPOINTS,
    brand_idx: np.ndarray | None = None,
) -> Model:
    """Fit as Identifier.train does; MAC vendors per device learned from ``brand_idx``
    (default: the fitted events; the Identifier learns them from all its training events)."""
    last = max(cps)
    keys: set[str] = set()
    for i in fit_idx:
        keys.update(corpus.terms[last][i].keys())
    keys.update(("count:queries", "count:distinct"))
    vocab = {t: j for j, t in enumerate(sorted(keys))}
    blocks, y = [], []
    for w in cps:
        rows = [i for i in fit_idx if corpus.has[w][i]]
        blocks.append(corpus.featurise(rows, w, vocab))
        y.extend(corpus.device[rows])
    clf = LogRegClassifier().fit(vstack(blocks), y)
    ((W, b),) = clf.dense_layers()
    classes = np.array([str(c) for c in clf.classes_])
    names: set[str] = set()
    tuples: set[Any] = set()
    ck: dict[str, dict[str, set[Any]]] = {k: {c: set() for c in classes} for k in KEYS}
    for i in fit_idx:
        names |= corpus.names[last][i]
        tuples |= keys_of(corpus.qkeys[last][i], "tuple")
        for k in KEYS:
            ck[k][corpus.device[i]] |= keys_of(corpus.qkeys[last][i], k)
    brands: dict[str, set[str]] = {c: set() for c in classes}
    for i in fit_idx if brand_idx is None else brand_idx:
        if corpus.brand[i] is not None and corpus.device[i] in brands:
            brands[corpus.device[i]].add(str(corpus.brand[i]))
    return Model(
        classes,
        vocab,
        W,
        b,
        np.asarray(fit_idx),
        frozenset(names),
        frozenset(tuples),
        {k: [frozenset(v[c]) for c in classes] for k, v in ck.items()},
        [frozenset(brands[c]) for c in classes],
    )


def _share_out(sets: Sequence[frozenset[Any]], vocab: frozenset[Any]) -> np.ndarray:
    return np.array([len(s - vocab) / len(s) if s else 0.0 for s in sets])


def _pred_scores(
    p: np.ndarray, pred_sets: dict[str, Sequence[frozenset[Any]]], m: Model
) -> dict[str, np.ndarray]:
    ps = np.sort(p, axis=1)
    pred = p.argmax(axis=1)
    out = {
        "maxp": ps[:, -1].astype(np.float64),
        "margin": (ps[:, -1] - ps[:, -2]).astype(np.float64),
        "entropy": -(p * np.log(np.maximum(p, 1e-12))).sum(axis=1).astype(np.float64),
        "pred": pred,
    }
    for k, sets in pred_sets.items():
        per_class = m.class_keys[k]
        out[f"nov_{k}_cls"] = np.array(
            [len(s - per_class[c]) / len(s) if s else 0.0 for s, c in zip(sets, pred, strict=True)]
        )
    return out


def scores(
    corpus: Corpus, m: Model, idx: np.ndarray, w: float, *, knn: bool = True
) -> dict[str, np.ndarray]:
    """Per event of ``idx`` (all with a query within ``w``): every raw score at window ``w``.

    Pred-dependent scores come twice: on the classifier's probabilities and, suffix ``_f``,
    on them narrowed to the devices seen with the client's MAC vendor (``oui_none``: no such
    device holds ``MIN_VENDOR_MASS`` of the probability; ``oui_veto``: the classifier's top
    device was never seen with the client's MAC vendor).
    """
    X = corpus.featurise(idx, w, m.vocab)
    z = (X.astype(np.float32) @ m.W + m.b).astype(np.float64)
    zmax = z.max(axis=1, keepdims=True)
    lse = zmax[:, 0] + np.log(np.exp(z - zmax).sum(axis=1))
    p = np.exp(z - lse[:, None]).astype(np.float32)  # the exported model's float32 softmax
    # narrowed by the MAC vendor (Identifier.posterior)
    allowed = np.ones_like(p, dtype=bool)
    has_brand = np.zeros(len(idx), dtype=bool)
    for r, i in enumerate(idx):
        b = corpus.brand[i]
        if b is None:
            continue
        has_brand[r] = True
        allowed[r] = [(not cb) or (b in cb) for cb in m.class_brands]
    mass = np.where(allowed, p, 0.0).sum(axis=1)
    ok = mass >= MIN_VENDOR_MASS
    pf = np.where(ok[:, None], np.where(allowed, p, 0.0) / np.maximum(mass, 1e-30)[:, None], p)
    pf = pf.astype(np.float32)
    qk = [corpus.qkeys[w][i] for i in idx]
    pred_sets = {k: [keys_of(s, k) for s in qk] for k in KEYS}
    out: dict[str, np.ndarray] = {
        "energy": lse,  # logsumexp of the logits (higher = more known)
        "device": corpus.device[idx],
        "n_queries": np.array([len(corpus.events[i].window(w)) for i in idx]),
        "n_names": np.array([len(corpus.names[w][i]) for i in idx]),
        "last_t": np.array([corpus.last_query(i, w) for i in idx]),
        "oui_none": ~ok,
    }
    raw = _pred_scores(p, pred_sets, m)
    out.update(raw)
    out.update({f"{k}_f": v for k, v in _pred_scores(pf, pred_sets, m).items()})
    out["oui_veto"] = has_brand & ~allowed[np.arange(len(idx)), raw["pred"]]
    out["nov_name"] = _share_out([corpus.names[w][i] for i in idx], m.names)
    out["nov_tuple"] = _share_out([keys_of(s, "tuple") for s in qk], m.tuples)
    if knn:
        rows = np.array([i for i in m.fit_idx if corpus.has[w][i]])
        F = corpus.featurise(rows, w, m.vocab)
        ycls = np.searchsorted(m.classes, corpus.device[rows])
        sims = np.asarray((X @ F.T).todense()) if X.shape[0] else np.zeros((0, len(rows)))
        per_cls = np.stack([sims[:, ycls == c].max(axis=1) for c in range(len(m.classes))], 1)
        cent = np.stack(
            [np.asarray(F[ycls == c].mean(axis=0)).ravel() for c in range(len(m.classes))]
        )
        cent /= np.maximum(np.linalg.norm(cent, axis=1, keepdims=True), 1e-12)
        cs = np.asarray(X @ cent.T)
        out["knn"] = per_cls.max(axis=1)
        for sfx in ("", "_f"):
            pred = out["pred" + sfx]
            out["knn_cls" + sfx] = per_cls[np.arange(len(idx)), pred]
            out["cent_cls" + sfx] = cs[np.arange(len(idx)), pred]
    return out


def checkpoint_of(last_t: np.ndarray, cps: Sequence[float] = CHECKPOINTS) -> np.ndarray:
    """Index of the first checkpoint at or after each last-query time (the last one beyond
    them all): the thresholds ``Identifier.thresholds_for`` judges a client by."""
    return np.array([min(bisect.bisect_left(cps, t), len(cps) - 1) for t in last_t])


def threshold_low(known: np.ndarray, target: float) -> float:
    """As UnknownDetector.calibrate: flag ``score < th``; at most ``target`` of ``known``."""
    s = np.sort(known)
    if not len(s):
        return -np.inf
    k = int(np.floor(target * len(s) + 1e-9))
    return float(s[k]) if k < len(s) else float("inf")


def threshold_high(known: np.ndarray, target: float, floor: float = -np.inf) -> float:
    """As NoveltyDetector.calibrate: flag ``score >= th``; at most ``target`` of ``known``."""
    s = np.sort(known)
    allowed = int(np.floor(target * s.size))
    above = s[s.size - allowed - 1] if s.size > allowed else -np.inf
    return max(floor, float(np.nextafter(above, np.inf)))
