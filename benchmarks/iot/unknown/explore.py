"""Prototype unknown-device detectors, measured with run.py's leave-3-devices-out protocol.

    PYTHONPATH=src PHLOEM_DATA_DIR=../shared/data .venv/bin/python \
        benchmarks/iot/unknown/explore.py [--seeds 3] [--oe-groups 5] [--json OUT]

Two protocols, the same splits (run.py's device triples, 3 seeds -> 24 splits):

- ``dev`` (tuning): the model is fitted on 2023-10-19..10-23 (its own latest 20% held out
  to calibrate, as the Identifier does), and scored on 10-24..10-25: held-out triple and known
  devices. Every variant's free settings are chosen here.
- ``test`` (report): fitted on 10-19..10-25, scored on 10-26..10-28, each variant once with
  the settings chosen on ``dev``.

Stage 1 (slow, cached under cache/): per split, the main any-time model (engine.py, equal to
Identifier.train) and K "outlier exposure" sub-models (the split's known devices cut into K
groups; each sub-model is fitted without one group), and the raw scores of every event at 0,
2 and 60 s: calibration events (main model), evaluation events (main model) and calibration
events under each sub-model (its left-out group = pseudo-unknown). Stage 2 (fast): the
variants below turn those scores into flags.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import sys
import time
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from engine import (  # noqa: E402
    SCORE_WINDOWS,
    Corpus,
    fit_model,
    scores,
    split_fit_cal,
    threshold_high,
    threshold_low,
)
from run import summarise, table, triples  # noqa: E402

from phloem.iot.corpus import load_corpus  # noqa: E402

PROTOCOLS = {
    "dev": (("2023-10-19", "2023-10-23"), ("2023-10-24", "2023-10-25")),
    "dev3": (("2023-10-19", "2023-10-22"), ("2023-10-23", "2023-10-25")),
    "test": (("2023-10-19", "2023-10-25"), ("2023-10-26", "2023-10-28")),
}
TARGET = 0.01
CACHE_VERSION = 1

# --- stage 1: raw scores ------------------------------------------------------------------


def oe_groups(devices: Sequence[str], k: int, seed: int) -> list[list[str]]:
    perm = [str(d) for d in np.random.default_rng(1000 + seed).permutation(sorted(devices))]
    return [list(g) for g in np.array_split(perm, k)]


def collect(corpus: Corpus, protocol: str, seeds: int, k: int) -> list[dict[str, Any]]:
    (t0, t1), (e0, e1) = PROTOCOLS[protocol]
    idx = np.arange(len(corpus.events))
    pool = idx[(corpus.day >= t0) & (corpus.day <= t1)]
    ev = idx[(corpus.day >= e0) & (corpus.day <= e1)]
    devices = sorted(set(corpus.device[pool]) & set(corpus.device[ev]))
    out = []
    for n, (seed, held) in enumerate(triples(devices, seeds)):
        t = time.perf_counter()
        known = pool[~np.isin(corpus.device[pool], held)]
        fit, cal = split_fit_cal(corpus, known)
        m = fit_model(corpus, fit)
        rec: dict[str, Any] = {"seed": seed, "held": list(held), "windows": {}}
        subs = []
        groups = oe_groups(sorted(set(corpus.device[known])), k, seed) if k else []
        for g in groups:
            sub_fit = fit[~np.isin(corpus.device[fit], g)]
            subs.append((g, fit_model(corpus, sub_fit)))
        for w in SCORE_WINDOWS:
            c = cal[corpus.has[w][cal]]
            e = ev[corpus.has[w][ev]]
            r = {"cal": scores(corpus, m, c, w), "eval": scores(corpus, m, e, w)}
            r["eval"]["held"] = np.isin(corpus.device[e], held)
            oe = []
            for g, sm in subs:
                s = scores(corpus, sm, c, w)
                s["pseudo"] = np.isin(corpus.device[c], g)
                oe.append(s)
            r["oe"] = oe
            rec["windows"][w] = r
        rec["seconds"] = time.perf_counter() - t
        out.append(rec)
        print(f"[{protocol} {n + 1}] seed {seed} {'+'.join(held)} {rec['seconds']:.1f} s",
              file=sys.stderr)  # fmt: skip
    return out


def load_or_collect(corpus_fn: Callable[[], Corpus], protocol: str, seeds: int, k: int
                    ) -> list[dict[str, Any]]:  # fmt: skip
    path = HERE / "cache" / f"{protocol}-s{seeds}-k{k}-v{CACHE_VERSION}.pkl"
    if path.exists():
        with path.open("rb") as fh:
            data: list[dict[str, Any]] = pickle.load(fh)
        return data
    data = collect(corpus_fn(), protocol, seeds, k)
    path.parent.mkdir(exist_ok=True)
    (path.parent / ".gitignore").write_text("*\n")
    with path.open("wb") as fh:
        pickle.dump(data, fh)
    return data


# --- stage 2: detectors built from the raw scores ------------------------------------------

LOW = frozenset({"maxp", "margin", "energy", "maxlogit", "knn", "knn_cls", "cent", "cent_cls"})
"""Scores where a LOW value means unknown; the others (entropy, novelty shares, meta) HIGH."""
META_FEATURES = (
    "maxp", "margin", "entropy", "energy", "nov_name", "nov_tuple", "nov_name_cls",
    "nov_tuple_cls", "knn", "knn_cls", "cent_cls", "log_names",
)  # fmt: skip
Rec = dict[str, Any]


def value(s: Rec, name: str) -> np.ndarray:
    if name == "log_names":
        return np.log1p(s["n_names"].astype(np.float64))
    out: np.ndarray = s[name]
    return out


def calibrate(name: str, cal: Rec, target: float, floor: float | None = None) -> float:
    if name in LOW:
        return threshold_low(value(cal, name), target)
    return threshold_high(value(cal, name), target, -np.inf if floor is None else floor)


def flag(name: str, s: Rec, th: float) -> np.ndarray:
    v = value(s, name)
    out: np.ndarray = v < th if name in LOW else v >= th
    return out


def or_split(r: Rec, dets: Sequence[tuple[str, float, float | None]], target: float,
             on: str = "eval") -> np.ndarray:  # fmt: skip
    """Flag when any detector fires; detector ``(score, budget share, floor)`` is calibrated
    alone to flag ``share * target`` of the calibration events (the Identifier's way)."""
    f = np.zeros(len(r[on]["maxp"]), dtype=bool)
    for name, share, floor in dets:
        f |= flag(name, r[on], calibrate(name, r["cal"], share * target, floor))
    return f


def or_joint(r: Rec, names: Sequence[str], target: float, on: str = "eval") -> np.ndarray:
    """Flag when any detector fires; one common per-detector rate q, the largest for which
    the union flags at most ``target`` of the calibration events (bisection)."""
    cal = r["cal"]

    def union(q: float, s: Rec) -> np.ndarray:
        f = np.zeros(len(s["maxp"]), dtype=bool)
        for n in names:
            f |= flag(n, s, calibrate(n, cal, q))
        return f

    lo, hi = 0.0, target
    for _ in range(30):
        mid = (lo + hi) / 2
        if union(mid, cal).mean() <= target:
            lo = mid
        else:
            hi = mid
    return union(lo, r[on])


def per_class_maxp(r: Rec, target: float, min_events: int = 50) -> np.ndarray:
    """Max-probability threshold per predicted class (global one for rarely predicted
    classes), OR the novelty share at the Identifier's setting."""
    cal, ev = r["cal"], r["eval"]
    th_global = threshold_low(cal["maxp"], target / 2)
    th = np.full(int(max(cal["pred"].max(), ev["pred"].max())) + 1, th_global)
    for c in np.unique(cal["pred"]):
        sel = cal["pred"] == c
        if sel.sum() >= min_events:
            th[c] = threshold_low(cal["maxp"][sel], target / 2)
    f: np.ndarray = ev["maxp"] < th[ev["pred"]]
    return f | flag("nov_name", ev, calibrate("nov_name", cal, target / 2, 0.25))


def meta_matrix(s: Rec, feats: Sequence[str]) -> np.ndarray:
    return np.column_stack([value(s, n) for n in feats]).astype(np.float64)


def outlier_exposure(r: Rec, target: float, feats: Sequence[str] = META_FEATURES,
                     kind: str = "logreg", c: float = 1.0) -> np.ndarray:  # fmt: skip
    """A meta-classifier on the sub-models' scores (their left-out groups = unknown), its
    threshold calibrated on the main model's calibration events."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X = np.vstack([meta_matrix(s, feats) for s in r["oe"]])
    y = np.concatenate([s["pseudo"] for s in r["oe"]])
    if kind == "logreg":
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=c, class_weight="balanced",
                                                                 max_iter=2000))  # fmt: skip
    else:
        clf = HistGradientBoostingClassifier(max_iter=100, learning_rate=0.1,
                                             class_weight="balanced", random_state=0)  # fmt: skip
    clf.fit(X, y)
    cal = clf.predict_proba(meta_matrix(r["cal"], feats))[:, 1]
    th = threshold_high(cal, target)
    out: np.ndarray = clf.predict_proba(meta_matrix(r["eval"], feats))[:, 1] >= th
    return out


def evaluate(data: Sequence[Rec], fn: Callable[[Rec, float], np.ndarray]) -> list[Rec]:
    """run.py's summary of a detector ``fn(window record, window) -> eval flags``."""
    splits = []
    for rec in data:
        rows = []
        for w in SCORE_WINDOWS:
            r = rec["windows"][w]
            f = np.asarray(fn(r, w), dtype=bool)
            dev, held = r["eval"]["device"], r["eval"]["held"]
            rows.append({
                "window_s": w,
                "held": {d: [int(f[dev == d].sum()), int((dev == d).sum())]
                         for d in rec["held"]},
                "known": [int(f[~held].sum()), int((~held).sum())],
            })  # fmt: skip
        splits.append({"rows": rows})
    return summarise(splits, SCORE_WINDOWS)
