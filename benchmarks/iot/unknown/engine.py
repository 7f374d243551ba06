"""Per-event unknown-detection scores of the deployed any-time model, for explore.py.

Re-implements :meth:`phloem.iot.identify.Identifier.train` (same vectorizer vocabulary, same
checkpoint-stacked rows, same ``LogRegClassifier``, same latest-20% calibration hold-out) with
each event's feature terms computed once, so that many models can be fitted on subsets of the
devices, and returns for every scored event the raw scores the variants in explore.py combine.
``check_against_identifier`` verifies that the re-implementation gives the deployed
Identifier's thresholds and flags.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from scipy.sparse import csr_matrix, vstack

from phloem.iot.events import Event
from phloem.iot.features import Vectorizer, name_parts
from phloem.iot.identify import CHECKPOINTS, Calibration, _held_out
from phloem.iot.models import LogRegClassifier

SCORE_WINDOWS: tuple[float, ...] = (0.0, 2.0, 60.0)


@lru_cache(maxsize=4096)
def _resolver(address: str) -> str:
    try:
        return address if ipaddress.ip_address(address).is_global else "local"
    except ValueError:
        return "local"


class Corpus:
    """The events with their feature terms, masked names and query tuples per window."""

    def __init__(self, events: Sequence[Event], windows: Sequence[float] = CHECKPOINTS) -> None:
        self.events = list(events)
        self.device = np.array([str(e.device) for e in self.events])
        self.day = np.array([e.day for e in self.events])
        vec = Vectorizer()
        self.windows = tuple(sorted(set(windows) | set(SCORE_WINDOWS)))
        self.terms = {w: [vec.terms(e.window(w)) for e in self.events] for w in self.windows}
        self.has = {w: np.array([bool(e.window(w)) for e in self.events]) for w in self.windows}
        # distinct masked names and (masked name, qtype, resolver, stack) tuples per window
        self.names: dict[float, list[frozenset[str]]] = {}
        self.tuples: dict[float, list[frozenset[tuple[str, int, str, str]]]] = {}
        for w in self.windows:
            self.names[w] = [
                frozenset(name_parts(q.name).masked for q in e.window(w)) for e in self.events
            ]
            self.tuples[w] = [
                frozenset(
                    (name_parts(q.name).masked, q.qtype, _resolver(q.resolver), q.stack)
                    for q in e.window(w)
                )
                for e in self.events
            ]
        self.n_queries = {w: np.array([len(e.window(w)) for e in self.events]) for w in self.windows}

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
    class_names: list[frozenset[str]]
    class_tuples: list[frozenset[Any]]


def split_fit_cal(corpus: Corpus, known: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The Identifier's split of ``known`` (event indices): fit, and latest 20% to calibrate."""
    mask = _held_out([corpus.events[i] for i in known], 0.2, Calibration.LATEST, 0)
    return known[~mask], known[mask]


def fit_model(corpus: Corpus, fit_idx: np.ndarray, cps: Sequence[float] = CHECKPOINTS) -> Model:
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
    cn: dict[str, set[str]] = {c: set() for c in classes}
    ct: dict[str, set[Any]] = {c: set() for c in classes}
    for i in fit_idx:
        names |= corpus.names[last][i]
        tuples |= corpus.tuples[last][i]
        cn[corpus.device[i]] |= corpus.names[last][i]
        ct[corpus.device[i]] |= corpus.tuples[last][i]
    return Model(
        classes, vocab, W, b, np.asarray(fit_idx), frozenset(names), frozenset(tuples),
        [frozenset(cn[c]) for c in classes], [frozenset(ct[c]) for c in classes],
    )  # fmt: skip


def _share_out(sets: Sequence[frozenset[Any]], vocab: frozenset[Any]) -> np.ndarray:
    return np.array([len(s - vocab) / len(s) if s else 0.0 for s in sets])


def scores(
    corpus: Corpus, m: Model, idx: np.ndarray, w: float, *, knn: bool = True
) -> dict[str, np.ndarray]:
    """Per event of ``idx`` (all with a query within ``w``): every raw score at window ``w``."""
    X = corpus.featurise(idx, w, m.vocab)
    z = (X.astype(np.float32) @ m.W + m.b).astype(np.float64)
    zs = np.sort(z, axis=1)
    lse = zs[:, -1] + np.log(np.exp(z - zs[:, -1:]).sum(axis=1))
    p = np.exp(z - lse[:, None]).astype(np.float32)  # the exported model's float32 softmax
    ps = np.sort(p, axis=1)
    pred = p.argmax(axis=1)
    out: dict[str, np.ndarray] = {
        "maxp": ps[:, -1].astype(np.float64),
        "margin": (ps[:, -1] - ps[:, -2]).astype(np.float64),
        "entropy": -(p * np.log(np.maximum(p, 1e-12))).sum(axis=1).astype(np.float64),
        "energy": lse,  # -energy: logsumexp of the logits (higher = more known)
        "maxlogit": zs[:, -1],
        "pred": pred,
        "device": corpus.device[idx],
        "n_queries": corpus.n_queries[w][idx],
        "n_names": np.array([len(corpus.names[w][i]) for i in idx]),
    }
    names = [corpus.names[w][i] for i in idx]
    tuples = [corpus.tuples[w][i] for i in idx]
    out["nov_name"] = _share_out(names, m.names)
    out["nov_tuple"] = _share_out(tuples, m.tuples)
    out["nov_name_cls"] = np.array(
        [len(s - m.class_names[c]) / len(s) if s else 0.0 for s, c in zip(names, pred)]
    )
    out["nov_tuple_cls"] = np.array(
        [len(s - m.class_tuples[c]) / len(s) if s else 0.0 for s, c in zip(tuples, pred)]
    )
    if knn:
        rows = np.array([i for i in m.fit_idx if corpus.has[w][i]])
        F = corpus.featurise(rows, w, m.vocab)
        ycls = np.searchsorted(m.classes, corpus.device[rows])
        sims = np.asarray((X @ F.T).todense()) if X.shape[0] else np.zeros((0, len(rows)))
        per_cls = np.stack([sims[:, ycls == c].max(axis=1) for c in range(len(m.classes))], 1)
        out["knn"] = per_cls.max(axis=1)
        out["knn_cls"] = per_cls[np.arange(len(idx)), pred]
        # cosine to the L2-normalised centroid of the predicted class's rows
        cent = np.stack([np.asarray(F[ycls == c].mean(axis=0)).ravel()
                         for c in range(len(m.classes))])  # fmt: skip
        cent /= np.maximum(np.linalg.norm(cent, axis=1, keepdims=True), 1e-12)
        cs = np.asarray(X @ cent.T)
        out["cent_cls"] = cs[np.arange(len(idx)), pred]
        out["cent"] = cs.max(axis=1)
    return out


def threshold_low(known: np.ndarray, target: float) -> float:
    """As UnknownDetector.calibrate: flag ``score < th``; at most ``target`` of ``known``."""
    s = np.sort(known)
    k = int(np.floor(target * len(s) + 1e-9))
    return float(s[k]) if k < len(s) else float("inf")


def threshold_high(known: np.ndarray, target: float, floor: float = -np.inf) -> float:
    """As NoveltyDetector.calibrate: flag ``score >= th``; at most ``target`` of ``known``."""
    s = np.sort(known)
    allowed = int(np.floor(target * s.size))
    above = s[s.size - allowed - 1] if s.size > allowed else -np.inf
    return max(floor, float(np.nextafter(above, np.inf)))


def check_against_identifier(corpus: Corpus, train_idx: np.ndarray, test_idx: np.ndarray) -> None:
    """Our baseline flags == the deployed Identifier's, on one split (raises otherwise)."""
    from phloem.iot.identify import Identifier

    idt = Identifier.train([corpus.events[i] for i in train_idx])
    fit, cal = split_fit_cal(corpus, train_idx)
    m = fit_model(corpus, fit)
    for w in SCORE_WINDOWS:
        c = scores(corpus, m, cal[corpus.has[w][cal]], w, knn=False)
        t_p = threshold_low(c["maxp"], 0.005)
        t_n = threshold_high(c["nov_name"], 0.005, 0.25)
        th = idt.thresholds_at(w)
        assert abs(t_p - th.max_proba) < 1e-5 and abs(t_n - th.novelty) < 1e-9, (w, t_p, t_n, th)
        ti = test_idx[corpus.has[w][test_idx]]
        s = scores(corpus, m, ti, w, knn=False)
        ours = (s["maxp"] < t_p) | (s["nov_name"] >= t_n)
        theirs = np.array([a.unknown for a in idt.answer_many(
            [corpus.events[i] for i in ti], w, explain=False)])  # fmt: skip
        n_diff = int((ours != theirs).sum())
        assert n_diff <= 2, (w, n_diff)
        print(f"check {w:g} s: thresholds equal, {n_diff} flag(s) differ of {len(ti)}")
