# ruff: noqa: E402  (the clock starts before the imports: their cost is part of a cold start)
"""Time an exported :class:`~phloem.iot.models.NumpyModel` in a fresh process, numpy only.

    python predict_numpy.py MODEL.npz EVENTS.json WINDOW_S REPEATS OUT_DIR

Run by ``run_export.py`` once per exported model. This process imports nothing of phloem but
:mod:`phloem.iot.models` and :mod:`phloem.iot.events`, loads the model, reads the test events
from ``EVENTS.json`` (plain JSON written by :func:`write_events`: every field of
:class:`~phloem.iot.events.Event` and :class:`~phloem.iot.events.Query` by name, so a field
added to either travels too, and rebuilding them needs no corpus code) and measures:

- ``import_s``: interpreter start to the two imports done (``time.perf_counter`` at the top of
  this file; the interpreter's own start-up before that is not counted);
- ``load_ms``: :meth:`NumpyModel.load` of the ``.npz`` (first call, and the median of
  ``REPEATS`` more);
- ``first_call_us``: the first prediction after loading (one event);
- per-event latency: ``predict_proba_events([e], WINDOW_S)`` for every event, one at a time,
  ``time.perf_counter_ns`` around each call; ``REPEATS`` passes over all events, the median and
  p99 of each pass; the same for ``Vectorizer.featurise_batch([e], WINDOW_S)`` alone (the
  pure-Python featurisation part of a prediction);
- batched: one ``predict_proba_events(events, WINDOW_S)`` over all events, best of ``REPEATS``
  (and ``featurise_batch`` alone, likewise);
- peak RSS (``VmHWM`` of ``/proc/self/status``; see :func:`_rss_mb` for why not
  ``ru_maxrss``, which is recorded too) after the imports, after loading the model, after
  reading the events, and at the end;
- which of torch, scikit-learn and scipy are in ``sys.modules`` after loading and after
  predicting, and every top-level non-standard-library module loaded.

Writes ``OUT_DIR/numpy_result.json`` and ``OUT_DIR/numpy_proba.npy`` (the batched
probabilities, float32). Exit status 0, 3 when torch, scikit-learn or scipy was imported,
2 on bad arguments.
"""

from __future__ import annotations

import time

T_START = time.perf_counter()

import json
import resource
import sys
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np

from phloem.iot.events import Event, Query
from phloem.iot.models import NumpyModel

T_IMPORTED = time.perf_counter()

USAGE = "usage: predict_numpy.py MODEL.npz EVENTS.json WINDOW_S REPEATS OUT_DIR"
HEAVY = ("torch", "sklearn", "scipy")


def _rss_mb() -> float:
    """Peak RSS of this process so far, MiB: ``VmHWM`` (Linux), else ``ru_maxrss``.

    ``ru_maxrss`` is not used on Linux: a child started by a large parent inherits the
    parent's high-water mark across fork and exec (a child of a 425 MB parent reports 425 MB
    where the same child of a small parent reports 25 MB); ``VmHWM`` belongs to the address
    space that ``exec`` created, so it is this process's own peak.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return _ru_maxrss_mb()


def _ru_maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _heavy_loaded() -> list[str]:
    return [m for m in HEAVY if m in sys.modules]


def _third_party() -> list[str]:
    tops = {name.partition(".")[0] for name in sys.modules}
    return sorted(t for t in tops if t not in sys.stdlib_module_names and not t.startswith("_"))


def write_events(events: Sequence[Event], path: Path) -> None:
    """``events`` as plain JSON: field names once, then one row of values per event."""
    ef = [f.name for f in fields(Event) if f.name != "queries"]
    qf = [f.name for f in fields(Query)]
    rows = [
        [[getattr(e, f) for f in ef], [[getattr(q, f) for f in qf] for q in e.queries]]
        for e in events
    ]
    doc = {"event_fields": ef, "query_fields": qf, "events": rows}
    path.write_text(json.dumps(doc, separators=(",", ":")), encoding="utf-8")


def read_events(path: Path) -> list[Event]:
    """The events of :func:`write_events`."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    ef, qf = doc["event_fields"], doc["query_fields"]
    return [
        Event(**dict(zip(ef, ev, strict=True)),
              queries=tuple(Query(**dict(zip(qf, q, strict=True))) for q in qs))
        for ev, qs in doc["events"]
    ]  # fmt: skip


def pass_stats(ns: list[int]) -> dict[str, float]:
    us = np.asarray(ns, dtype=np.float64) / 1e3
    return {
        "median_us": float(np.median(us)),
        "p99_us": float(np.percentile(us, 99)),
        "mean_us": float(us.mean()),
        "max_us": float(us.max()),
    }


def per_event(fn: Any, events: Sequence[Event], repeats: int) -> list[dict[str, float]]:
    """``repeats`` passes of ``fn([e])`` over every event, timed one call at a time.

    Also the protocol run_export.py applies to the torch / scikit-learn baseline."""
    passes = []
    for _ in range(repeats):
        ns = []
        for e in events:
            t0 = time.perf_counter_ns()
            fn([e])
            ns.append(time.perf_counter_ns() - t0)
        passes.append(pass_stats(ns))
    return passes


def best_s(fn: Any, repeats: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times), times


def measure(model_path: Path, events_path: Path, window_s: float, repeats: int) -> dict[str, Any]:
    """Everything in the module docstring, as one JSON-able dict (plus the probabilities)."""
    out: dict[str, Any] = {"import_s": T_IMPORTED - T_START, "rss_after_import_mb": _rss_mb()}
    t0 = time.perf_counter()
    model = NumpyModel.load(model_path)
    out["load_first_ms"] = (time.perf_counter() - t0) * 1e3
    _, loads = best_s(lambda: NumpyModel.load(model_path), repeats)
    out["load_median_ms"] = float(np.median(loads)) * 1e3
    out["rss_after_load_mb"] = _rss_mb()
    out["heavy_after_load"] = _heavy_loaded()
    events = read_events(events_path)
    out["rss_after_events_mb"] = _rss_mb()
    t0 = time.perf_counter_ns()
    model.predict_proba_events(events[:1], window_s)
    out["first_call_us"] = (time.perf_counter_ns() - t0) / 1e3

    def predict(evs: list[Event]) -> Any:
        return model.predict_proba_events(evs, window_s)

    def featurise(evs: list[Event]) -> Any:
        return model.vectorizer.featurise_batch(evs, window_s)

    out["per_event_passes"] = per_event(predict, events, repeats)
    out["featurise_per_event_passes"] = per_event(featurise, events, repeats)
    out["batched_best_s"], out["batched_s"] = best_s(lambda: predict(events), repeats)
    out["featurise_batched_best_s"], _ = best_s(lambda: featurise(events), repeats)
    proba = predict(events)
    out["heavy_after_predict"] = _heavy_loaded()
    out["third_party_modules"] = _third_party()
    out["rss_peak_mb"] = _rss_mb()
    out["ru_maxrss_mb"] = _ru_maxrss_mb()  # inherited from the parent: see _rss_mb
    out["n_events"] = len(events)
    out["n_features"] = model.vectorizer.n_features
    out["classes"] = model.classes
    out["layers"] = [list(W.shape) for W, _ in model.layers]
    out["proba"] = proba
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 5:
        print(USAGE, file=sys.stderr)
        return 2
    model_s, events_s, window_s, repeats_s, out_s = argv
    try:
        window, repeats = float(window_s), int(repeats_s)
    except ValueError as exc:
        print(f"predict_numpy.py: {exc}\n{USAGE}", file=sys.stderr)
        return 2
    out = measure(Path(model_s), Path(events_s), window, max(1, repeats))
    out_dir = Path(out_s)
    np.save(out_dir / "numpy_proba.npy", out.pop("proba"))
    (out_dir / "numpy_result.json").write_text(json.dumps(out, indent=1), encoding="utf-8")
    heavy = sorted(set(out["heavy_after_load"]) | set(out["heavy_after_predict"]))
    if heavy:
        print(f"predict_numpy.py: imported {heavy} (must be numpy only)", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
