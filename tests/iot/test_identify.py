"""Identifier: any-time answers, unknown flags, hierarchy, drivers, numpy-only persistence."""

from __future__ import annotations

import itertools
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from iot_synth import HIERARCHY, corpus, event

from phloem.iot.events import Event
from phloem.iot.features import Vectorizer
from phloem.iot.identify import Identifier, Level, _Thresholds
from phloem.iot.models import LogRegClassifier, NumpyModel, export_numpy
from phloem.iot.unknown import NoveltyDetector


@pytest.fixture(scope="module")
def identifier() -> Identifier:
    return Identifier.train(corpus(), hierarchy=HIERARCHY, checkpoints=(0, 2, 10),
                            target_false_unknown=0.05)  # fmt: skip


def test_answers_refine_with_time_and_name_the_device(identifier: Identifier) -> None:
    rng = np.random.default_rng(7)
    for dev in HIERARCHY:
        e = event(dev, rng)
        late = identifier.answer(e, 10.0)
        assert late.device == dev and late.confident and not late.unknown
        assert late.manufacturer is not None and late.manufacturer.label == HIERARCHY[dev][0]
        assert late.category is not None and late.category.label == HIERARCHY[dev][1]
        # the top level's probability can only grow up the tree
        assert late.manufacturer.probability >= late.confidence - 1e-6
        assert late.n_queries == len(e.queries)
    # plug and cam share their first name; the stack fingerprint still tells them apart
    for dev in ("plug", "cam"):
        first = identifier.answer(event(dev, rng), 0.0)
        assert first.n_queries == 1 and first.top[0].label == dev
        assert any(w.startswith("stack:") for w, _ in first.drivers)


def test_timeline_follows_checkpoints(identifier: Identifier) -> None:
    e = event("speaker", np.random.default_rng(1))
    steps = identifier.timeline(e)
    assert [a.elapsed_s for a in steps] == [0.0, 2.0, 10.0]
    assert [a.n_queries for a in steps] == [len(e.window(w)) for w in (0.0, 2.0, 10.0)]


def test_drivers_are_the_names_whose_removal_costs_most(identifier: Identifier) -> None:
    e = event("bulb", np.random.default_rng(2))
    a = identifier.answer(e, 10.0)
    assert a.drivers, "a confident answer has drivers"
    drops = [d for _, d in a.drivers]
    assert drops == sorted(drops, reverse=True) and all(d >= 0.005 for d in drops)
    # slow reference: remove the top driver by hand and re-score
    name, drop = a.drivers[0]
    if not name.startswith(("stack:", "resolver:")):
        kept = tuple(q for q in e.queries if q.name != name)
        p = identifier.proba([Event(e.key, e.anchor_utc, kept)], 10.0)[0]
        top = identifier.classes.index(a.top[0].label)
        assert a.confidence - float(p[top]) == pytest.approx(drop, abs=1e-5)


def test_unseen_device_is_flagged_unknown(identifier: Identifier) -> None:
    rng = np.random.default_rng(3)
    ghosts = [event("ghost", rng, i=i) for i in range(20)]
    answers = identifier.answer_many(ghosts, 10.0)
    assert all(a.unknown and a.device is None and not a.confident for a in answers)
    assert all(a.novelty == 1.0 for a in answers)
    known = [event(d, rng, i=i) for d in HIERARCHY for i in range(20)]
    flagged = np.mean([a.unknown for a in identifier.answer_many(known, 10.0)])
    assert flagged <= 0.05


def test_silent_event_is_neither_known_nor_unknown(identifier: Identifier) -> None:
    a = identifier.answer(Event("quiet", 0.0, ()), 60.0)
    assert a.n_queries == 0 and a.device is None and not a.unknown and not a.confident
    assert a.drivers == ()


def test_thresholds_pick_the_last_checkpoint_before(identifier: Identifier) -> None:
    th = identifier.thresholds
    assert identifier.thresholds_at(0.5) is th[0]
    assert identifier.thresholds_at(2.0) is th[1]
    assert identifier.thresholds_at(99.0) is th[2]


def test_save_load_roundtrip_and_numpy_only(identifier: Identifier, tmp_path: Path) -> None:
    path = tmp_path / "idt.npz"
    identifier.save(path)
    assert path.stat().st_size < 1_000_000
    back = Identifier.load(path)
    e = event("cam", np.random.default_rng(4))
    assert back.answer(e, 2.0) == identifier.answer(e, 2.0)
    assert back.hierarchy == identifier.hierarchy and back.checkpoints == identifier.checkpoints
    # loading and answering needs neither torch, scikit-learn nor scipy
    code = (
        "import sys\n"
        "from phloem.iot.identify import Identifier\n"
        "from phloem.iot.events import Event, Query\n"
        f"idt = Identifier.load({str(path)!r})\n"
        "a = idt.answer(Event('k', 0.0, (Query(0.0, 'stream.camco.net', 1, '8.8.8.8', 'ttl=64'),"
        ")), 2.0)\n"
        "heavy = [m for m in ('torch', 'sklearn', 'scipy') if m in sys.modules]\n"
        "print(a.top[0].label, heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["cam", "[]"]


def test_bare_numpy_model_loads_without_unknown_detection(tmp_path: Path) -> None:
    events = corpus(per_day=4, days=1)
    vec = Vectorizer().fit(events, 10.0)
    clf = LogRegClassifier().fit(vec.transform(events, 10.0), [str(e.device) for e in events])
    path = tmp_path / "bare.npz"
    export_numpy(clf, vec).save(path)
    idt = Identifier.load(path)
    a = idt.answer(event("ghost", np.random.default_rng(0)), 10.0)
    assert not a.unknown and a.manufacturer is None and idt.checkpoints == (0.0,)


def test_bad_training_input_is_refused() -> None:
    with pytest.raises(ValueError, match="val_fraction"):
        Identifier.train(corpus(per_day=2, days=1), val_fraction=1.0)
    with pytest.raises(ValueError, match="calibrate_on"):
        Identifier.train(corpus(per_day=2, days=1), calibrate_on="oldest")
    with pytest.raises(ValueError, match="device label"):
        Identifier.train([Event("k", 0.0, ())])


def test_confidence_argument_sets_what_confident_needs(identifier: Identifier) -> None:
    e = event("speaker", np.random.default_rng(12))
    for w in (0.0, 2.0, 10.0):
        a = identifier.answer(e, w, explain=False)
        assert a.confident == (a.confidence >= identifier.confidence and not a.unknown)
        for needed in (a.confidence, np.nextafter(a.confidence, 2.0), 0.0, 1.0):
            b = identifier.answer(e, w, explain=False, confidence=float(needed))
            assert b.confident == (not a.unknown and a.confidence >= needed)
            assert replace(b, confident=a.confident) == a  # nothing else moves
            (c,) = identifier.answer_many([e], w, explain=False, confidence=float(needed))
            assert c == b


def test_with_drivers_equals_an_explained_answer(identifier: Identifier) -> None:
    rng = np.random.default_rng(13)
    for dev in [*HIERARCHY, "ghost"]:
        e = event(dev, rng)
        for w in (0.0, 2.0, 10.0):
            plain = identifier.answer(e, w, explain=False)
            assert plain.drivers == ()
            assert identifier.with_drivers(e, plain) == identifier.answer(e, w, explain=True)
    quiet = Event("quiet", 0.0, ())
    a = identifier.answer(quiet, 5.0, explain=False)
    assert identifier.with_drivers(quiet, a) == a


def test_novelty_is_the_detectors_share(identifier: Identifier) -> None:
    rng = np.random.default_rng(14)
    events = [event(d, rng) for d in [*HIERARCHY, "ghost"]] + [Event("quiet", 0.0, ())]
    det = NoveltyDetector(vocabulary=set(identifier.vocabulary))
    for w in (0.0, 2.0, 10.0):
        shares = [identifier.novelty(e.window(w)) for e in events]
        assert shares == det.novelty(events, w).tolist()
        assert shares == [a.novelty for a in identifier.answer_many(events, w, explain=False)]


def _reference_hierarchy(idt: Identifier, p: np.ndarray) -> tuple[Level, Level]:
    """The per-event loop the identifier first used: sums in class order, ties to the
    group first in sorted order."""
    out = []
    for level in (0, 1):
        sums: dict[str, float] = {}
        for c, v in zip(idt.classes, p, strict=True):
            g = idt.hierarchy.get(c, ("?", "?"))[level]
            sums[g] = sums.get(g, 0.0) + float(v)
        g = max(sorted(sums), key=lambda k: sums[k])
        out.append(Level(g, sums[g]))
    return out[0], out[1]


def test_hierarchy_matches_the_per_event_sums(identifier: Identifier) -> None:
    rng = np.random.default_rng(15)
    events = [event(d, rng, i=i) for d in [*HIERARCHY, "ghost"] for i in range(5)]
    for w in (0.0, 2.0, 10.0):
        proba = identifier.proba(events, w)
        answers = identifier.answer_many(events, w, explain=False)
        for a, p in zip(answers, proba, strict=True):
            man, cat = _reference_hierarchy(identifier, p)
            # an unknown device's manufacturer comes from evidence (none for these keys)
            guessing = a.unknown or not a.n_queries
            assert (a.manufacturer, a.category) == ((None, None) if guessing else (man, cat))
        assert any(a.unknown for a in answers) and any(not a.unknown for a in answers)


def test_hierarchy_ties_go_to_the_first_group_and_unmapped_devices_to_question_mark() -> None:
    events = corpus(per_day=2, days=1)
    vec = Vectorizer().fit(events, 10.0)
    classes = ["c1", "c2", "c3", "c4"]
    flat = NumpyModel(vec, [(np.zeros((vec.n_features, 4), np.float32), np.zeros(4, np.float32))],
                      classes)  # fmt: skip  # every class 0.25
    tied = {"c1": ("Zed", "x"), "c2": ("Zed", "x"), "c3": ("Abc", "y"), "c4": ("Abc", "y")}
    partial = {"c1": ("Zed", "x"), "c2": ("Zed", "x"), "c3": ("Abc", "y")}
    for hierarchy, want in ((tied, ("Abc", "x")), (partial, ("Zed", "x"))):
        idt = Identifier(flat, (0.0,), [_Thresholds(0.0, 0.0, 2.0)], frozenset(), hierarchy)
        for a, p in zip(idt.answer_many(events, 10.0, explain=False),
                        idt.proba(events, 10.0), strict=True):  # fmt: skip
            assert a.manufacturer is not None and a.category is not None
            assert (a.manufacturer.label, a.category.label) == want
            assert (a.manufacturer, a.category) == _reference_hierarchy(idt, p)


def test_devices_that_appear_only_late_are_not_dropped_by_calibration() -> None:
    """The latest 20% held out for calibration would hold every event of two late devices:
    the split falls back, with a warning, and every device is fitted."""
    import warnings

    early = corpus(per_day=8, days=3, devices=("plug", "cam"))
    late = [
        replace(e, anchor_utc=e.anchor_utc + 10**7)
        for e in corpus(per_day=3, days=1, devices=("bulb", "speaker"), seed=1)
    ]
    with pytest.warns(UserWarning, match=r"2 device\(s\) \(bulb, speaker\)"):
        idt = Identifier.train(early + late, hierarchy=HIERARCHY, checkpoints=(0, 2))
    assert sorted(idt.classes) == ["bulb", "cam", "plug", "speaker"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no devices dropped: no warning
        idt = Identifier.train(early, hierarchy=HIERARCHY, checkpoints=(0, 2))
    assert sorted(idt.classes) == ["cam", "plug"]


def test_the_model_records_what_it_was_trained_on(tmp_path: Path) -> None:
    events = corpus(per_day=5, days=2)
    idt = Identifier.train(events, hierarchy=HIERARCHY, checkpoints=(0, 2))
    t = idt.trained_on
    assert t["events"] == len(events) == sum(t["events_per_device"].values())
    assert set(t["events_per_device"]) == set(HIERARCHY)
    assert t["days"] == ["2023-10-19", "2023-10-20"]
    assert 0 < t["held_out"] < len(events)
    assert "stack" in t["features"]
    idt.save(tmp_path / "m.npz")
    assert Identifier.load(tmp_path / "m.npz").trained_on == t


def test_an_answer_changes_only_when_a_query_arrives() -> None:
    """A silent client's answer must not flip as its clock crosses later checkpoints, even
    when those checkpoints' thresholds are stricter (the flip users saw at 4 s -> 60 s)."""
    events = corpus(per_day=4)
    strict = Identifier.train(events, hierarchy=HIERARCHY, checkpoints=(0, 2, 10, 60))
    # make the later checkpoints flag everything: a top probability can never exceed 1.1
    for th in strict.thresholds[2:]:
        th.max_proba = th.max_proba_raw = 1.1
    rng = np.random.default_rng(3)
    probes = [event(d, rng, i=i) for d in [*HIERARCHY, "ghost"] for i in range(3)]
    for e in probes:
        times = [q.t for q in e.queries]
        windows = sorted({*times, 0.5, 1.5, 2.5, 9.0, 10.0, 30.0, 60.0, 300.0})
        answers = {w: strict.answer(e, w, explain=False) for w in windows}
        for w1, w2 in itertools.pairwise(windows):
            if any(w1 < t <= w2 for t in times):
                continue  # new evidence between the two: the answer may change
            a1, a2 = answers[w1], answers[w2]
            assert replace(a1, elapsed_s=w2) == a2, (e.device, w1, w2)
        # a last query after 2 s is judged by the strict thresholds, at every later window
        if times[-1] > 2.0:
            assert all(a.unknown for w, a in answers.items() if w >= times[-1])


def test_thresholds_for_a_last_query_are_the_next_checkpoints(identifier: Identifier) -> None:
    th = identifier.thresholds  # checkpoints 0, 2, 10
    assert identifier.thresholds_for(0.0) is th[0]
    assert identifier.thresholds_for(0.5) is th[1]
    assert identifier.thresholds_for(2.0) is th[1]
    assert identifier.thresholds_for(2.1) is th[2]
    assert identifier.thresholds_for(99.0) is th[2]


def test_monitor_final_line_keeps_the_answer_of_the_last_query() -> None:
    """The 4 s -> 60 s flip, as monitor users saw it: identified, then a final unknown."""
    from iot_synth import observations

    from phloem.iot.stream import Tracker

    strict = Identifier.train(corpus(per_day=4), hierarchy=HIERARCHY, checkpoints=(0, 2, 5, 60))
    strict.thresholds[-1].max_proba = strict.thresholds[-1].max_proba_raw = 1.1  # flag all
    e = event("bulb", np.random.default_rng(4))  # queries at 0 s and ~2.5 s
    later = observations(event("plug", np.random.default_rng(5)), key="other")
    stream = [*observations(e), *(replace(o, ts=o.ts + 100.0) for o in later)]
    lines = list(Tracker(strict, horizon_s=60.0, explain=False).run(stream))
    mine = [x for x in lines if x.get("key") == e.key]
    assert [x["event"] for x in mine] == ["join", "identified", "final"], mine
    final = mine[-1]
    assert final["elapsed_s"] == 60.0  # the clock ran to the horizon, past the strict checkpoint
    assert final["device"] == "bulb" and not final["unknown"]


def test_a_model_saved_before_vendors_and_device_queries_still_answers(
    identifier: Identifier, tmp_path: Path
) -> None:
    """Models written before this release: three-number thresholds, no vendors, no per-device
    queries: they load and answer with the global novelty check, as they did."""
    path = tmp_path / "old.npz"
    identifier.save(path)
    m = NumpyModel.load(path)
    for key in ("vendors", "device_queries", "trained_on"):
        m.extra.pop(key)
    m.extra["thresholds"] = [row[:3] for row in m.extra["thresholds"]]
    m.save(path)
    old = Identifier.load(path)
    assert not old.device_queries.keys and not old.vendors.device_ouis
    assert all(t.max_proba_raw is None and t.novelty_raw is None for t in old.thresholds)
    ghost = event("ghost", np.random.default_rng(9))
    a = old.answer(ghost, 10.0)
    assert a.unknown and any(w.startswith("never-seen names") for w in a.why_unknown)
