"""Tests for phloem.iot.models: classifiers, numpy export, unknown detection, hierarchy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from phloem.iot.events import Event, Query
from phloem.iot.features import FeatureSpec, Vectorizer
from phloem.iot.models import (
    LogRegClassifier,
    MLPClassifier,
    NumpyModel,
    UnknownDetector,
    aggregate_proba,
    export_numpy,
    max_proba,
)

WINDOW_S = 10.0


def _synthetic_events(
    n_devices: int, per_device: int, domains_per_device: int, seed: int
) -> list[Event]:
    """Each device draws most queries from its own domains plus shared noise and late queries."""
    rng = np.random.default_rng(seed)
    shared = [f"pool{i}.ntp.org" for i in range(3)] + ["time.google.com", "connectivity.apple.com"]
    events = []
    for d in range(n_devices):
        own = [f"api{k}.vendor{d}-{k}.com" for k in range(domains_per_device)]
        for e in range(per_device):
            n = int(rng.integers(2, 7))
            names = [own[int(i)] for i in rng.integers(0, len(own), n)]
            names.append(shared[int(rng.integers(0, len(shared)))])
            ts = np.sort(rng.uniform(0.0, WINDOW_S, len(names)))
            qs = [
                Query(float(t), nm, int(rng.choice([1, 28])), "10.0.0.1")
                for t, nm in zip(ts, names, strict=True)
            ]
            qs.append(Query(WINDOW_S + 5.0, f"late{d}.example.net", 1, "10.0.0.1"))
            events.append(Event(f"mac{d}-{e}", 0.0, tuple(qs), device=f"dev{d:02d}"))
    return events


@pytest.fixture(scope="module")
def data() -> tuple[Vectorizer, list[Event], np.ndarray]:
    events = _synthetic_events(n_devices=6, per_device=25, domains_per_device=4, seed=0)
    vec = Vectorizer(FeatureSpec()).fit(events, WINDOW_S)
    y = np.array([e.device for e in events])
    return vec, events, y


def test_logreg_learns_and_exports_exactly(
    data: tuple[Vectorizer, list[Event], np.ndarray], tmp_path: Path
) -> None:
    vec, events, y = data
    X = vec.transform(events, WINDOW_S)
    clf = LogRegClassifier(C=10.0, balanced=True).fit(X, y)
    assert list(clf.classes_) == sorted(set(y))
    assert (clf.predict(X) == y).mean() > 0.95
    nm = export_numpy(clf, vec)
    np.testing.assert_allclose(
        nm.predict_proba_events(events, WINDOW_S), clf.predict_proba(X), atol=1e-5
    )
    path = tmp_path / "logreg.npz"
    nm.save(path)
    back = NumpyModel.load(path)
    np.testing.assert_allclose(
        back.predict_proba_events(events, WINDOW_S), clf.predict_proba(X), atol=1e-5
    )
    assert back.predict_events(events[:3], WINDOW_S) == list(clf.predict(X[:3]))


def test_export_handles_events_without_features_among_others(
    data: tuple[Vectorizer, list[Event], np.ndarray],
) -> None:
    """Events with no feature in the window (no DNS, only late queries) sit between others:
    the segmented sum must give them the bias alone, as the dense product does."""
    vec, events, y = data
    clf = LogRegClassifier(C=10.0).fit(vec.transform(events, WINDOW_S), y)
    late = Event("late", 0.0, (Query(WINDOW_S + 1.0, "x.example.com", 1, "10.0.0.1"),))
    empty = Event("empty", 0.0, ())
    mixed = [empty, events[0], late, empty, events[40], events[41], late]
    X = vec.transform(mixed, WINDOW_S)
    assert X[0].nnz == 0 and X[2].nnz == 0 and X[1].nnz > 0
    got = export_numpy(clf, vec).predict_proba_events(mixed, WINDOW_S)
    np.testing.assert_allclose(got, clf.predict_proba(X), atol=1e-5)
    np.testing.assert_allclose(got[0], got[2], atol=0)


def test_logreg_binary_export(data: tuple[Vectorizer, list[Event], np.ndarray]) -> None:
    vec, events, y = data
    keep = [i for i, lab in enumerate(y) if lab in ("dev00", "dev01")]
    sub = [events[i] for i in keep]
    X = vec.transform(sub, WINDOW_S)
    clf = LogRegClassifier().fit(X, y[keep])
    nm = export_numpy(clf, vec)
    np.testing.assert_allclose(
        nm.predict_proba_events(sub, WINDOW_S), clf.predict_proba(X), atol=1e-5
    )


def test_mlp_learns_separable_problem_and_exports(
    data: tuple[Vectorizer, list[Event], np.ndarray], tmp_path: Path
) -> None:
    vec, events, y = data
    X = vec.transform(events, WINDOW_S)
    clf = MLPClassifier(hidden=(32, 32), lr=1e-2, max_epochs=40, patience=5, seed=1).fit(X, y)
    assert 1 <= clf.n_epochs_ <= 40
    assert (clf.predict(X) == y).mean() > 0.95
    proba = clf.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    nm = export_numpy(clf, vec)
    assert [W.shape for W, _ in nm.layers] == [(vec.n_features, 32), (32, 32), (32, 6)]
    np.testing.assert_allclose(nm.predict_proba_events(events, WINDOW_S), proba, atol=1e-5)
    nm.save(tmp_path / "mlp.npz")
    back = NumpyModel.load(tmp_path / "mlp.npz")
    np.testing.assert_allclose(back.predict_proba_events(events, WINDOW_S), proba, atol=1e-5)


def test_mlp_is_seeded(data: tuple[Vectorizer, list[Event], np.ndarray]) -> None:
    import torch

    vec, events, y = data
    X = vec.transform(events, WINDOW_S)
    kw = {"hidden": (16,), "max_epochs": 3, "val_fraction": 0.0}
    a = MLPClassifier(**kw, seed=3).fit(X, y).predict_proba(X)  # type: ignore[arg-type]
    b = MLPClassifier(**kw, seed=3).fit(X, y).predict_proba(X)  # type: ignore[arg-type]
    g = torch.Generator().manual_seed(3)
    c = MLPClassifier(**kw, generator=g).fit(X, y).predict_proba(X)  # type: ignore[arg-type]
    d = MLPClassifier(**kw, seed=4).fit(X, y).predict_proba(X)  # type: ignore[arg-type]
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    assert not np.array_equal(a, d)


def test_export_size_and_one_event_at_a_time(tmp_path: Path) -> None:
    """A vocabulary of a few thousand terms and 40 classes exports under 1 MB, < 1 ms/event."""
    events = _synthetic_events(n_devices=40, per_device=8, domains_per_device=25, seed=1)
    vec = Vectorizer(FeatureSpec(order_k=3)).fit(events, WINDOW_S)
    assert 2000 <= vec.n_features <= 5000
    y = np.array([e.device for e in events])
    X = vec.transform(events, WINDOW_S)
    clf = LogRegClassifier(C=1.0, max_iter=200).fit(X, y)
    nm = export_numpy(clf, vec)
    np.testing.assert_allclose(
        nm.predict_proba_events(events, WINDOW_S), clf.predict_proba(X), atol=1e-5
    )
    path = tmp_path / "m.npz"
    nm.save(path)
    assert path.stat().st_size < 1_000_000
    back = NumpyModel.load(path)
    one_by_one = np.concatenate([back.predict_proba_events([ev], WINDOW_S) for ev in events])
    # one event at a time (the deployed path; its speed is measured in benchmarks/iot)
    np.testing.assert_allclose(one_by_one, back.predict_proba_events(events, WINDOW_S), atol=1e-6)


def test_numpy_model_rejects_mismatched_vectorizer(
    data: tuple[Vectorizer, list[Event], np.ndarray],
) -> None:
    vec, _, _ = data
    W = np.zeros((vec.n_features + 1, 2), np.float32)
    with pytest.raises(ValueError, match="features"):
        NumpyModel(vec, [(W, np.zeros(2, np.float32))], ["a", "b"])


def test_unknown_detector_calibration_hits_target() -> None:
    rng = np.random.default_rng(0)
    for n in (50, 100, 1000, 1234):
        proba = rng.dirichlet(np.full(5, 0.3), size=n)
        det = UnknownDetector.calibrate(proba, target_false_unknown=0.01)
        flagged = det.is_unknown(proba).mean()
        assert flagged <= 0.01
        # tight: one more flagged event would exceed the target (unless ties)
        scores = np.sort(max_proba(proba))
        assert (scores < np.nextafter(det.threshold, np.inf)).sum() > int(0.01 * n)
    # ties never push the rate over the target
    tied = np.tile([[0.6, 0.4]], (200, 1))
    assert UnknownDetector.calibrate(tied, 0.01).is_unknown(tied).mean() == 0.0
    assert UnknownDetector.calibrate(tied, 1.0).is_unknown(tied).all()


def test_unknown_detector_predict() -> None:
    det = UnknownDetector(0.5)
    proba = np.array([[0.9, 0.1], [0.45, 0.55], [0.3, 0.7]])
    np.testing.assert_array_equal(det.is_unknown(proba), [False, False, False])
    assert UnknownDetector(0.6).predict(proba, ["a", "b"]) == ["a", "unknown", "b"]


def test_aggregate_proba_sums_per_group() -> None:
    classes = ["echo", "plug", "ring", "nest"]
    maker = {"echo": "amazon", "ring": "amazon", "plug": "tplink", "nest": "google"}
    proba = np.array([[0.1, 0.2, 0.3, 0.4], [0.7, 0.1, 0.1, 0.1]])
    agg, groups = aggregate_proba(proba, classes, maker)
    assert groups == ["amazon", "google", "tplink"]
    np.testing.assert_allclose(agg, [[0.4, 0.4, 0.2], [0.8, 0.1, 0.1]])
    np.testing.assert_allclose(agg.sum(axis=1), 1.0)
    category = {"echo": "speaker", "ring": "camera", "plug": "plug", "nest": "camera"}
    agg_c, cats = aggregate_proba(proba, classes, category)
    assert cats == ["camera", "plug", "speaker"]
    np.testing.assert_allclose(agg_c[0], [0.7, 0.2, 0.1])
    with pytest.raises(ValueError, match="nest"):
        aggregate_proba(proba, classes, {k: v for k, v in maker.items() if k != "nest"})


def test_a_file_that_is_not_a_model_is_a_clear_error(
    tmp_path: Path, data: tuple[Vectorizer, list[Event], np.ndarray]
) -> None:
    """A careless ``--model`` (a log, a cut copy, an npz holding pickles) used to trace back."""
    from phloem.core.errors import PhloemError

    vec, events, y = data
    good = tmp_path / "m.npz"
    export_numpy(LogRegClassifier().fit(vec.transform(events, WINDOW_S), y), vec).save(good)
    cut = tmp_path / "cut.npz"
    cut.write_bytes(good.read_bytes()[:2000])
    log = tmp_path / "dnsmasq.log"
    log.write_text("Oct 19 10:00:00 dnsmasq[1]: query[A] a.example.com from 10.0.0.2\n")
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, meta_json=np.array([{"a": 1}], dtype=object))
    for bad in (cut, log, pickled, tmp_path / "empty.npz"):
        if not bad.exists():
            bad.write_bytes(b"")
        with pytest.raises(PhloemError, match=f"{bad.name} is not a phloem IoT model"):
            NumpyModel.load(bad)
    assert NumpyModel.load(good).classes  # the real one still loads
