"""The numpy-only export of the IoT identifier on real data, against the torch/sklearn models.

    PHLOEM_DATA_DIR=/path/to/data python run_export.py [--window 2] [--repeats 5] [--json OUT]
        [--features full sld] [--models logreg mlp] [--bare-python PY]

For each feature set (``full``: every block of :class:`~phloem.iot.features.FeatureSpec`;
``sld``: the paper's bag of second-level domains) and each classifier (``logreg``:
:class:`~phloem.iot.models.LogRegClassifier`; ``mlp``: :class:`~phloem.iot.models.MLPClassifier`,
the paper's Dense64-Dense64), on the doh_iot corpus (:func:`~phloem.iot.corpus.load_corpus`),
train on the days up to 2023-10-25 and test on 2023-10-26..28 (devices seen in training only):

1. fit the vectorizer and the classifier on the training events (times recorded);
2. export with :func:`~phloem.iot.models.export_numpy` and save the ``.npz`` (size recorded);
3. in a fresh process (``predict_numpy.py``), load it and time
   :meth:`~phloem.iot.models.NumpyModel.predict_proba_events` one event at a time and batched,
   checking that torch, scikit-learn and scipy were never imported;
4. baseline, in this process, on the same events: ``clf.predict_proba(vec.transform(...))``,
   one event at a time and batched;
5. compare the two paths' probabilities and their top-1 accuracy.

With ``--bare-python PY`` each export is also run once under ``PY`` (an environment without
torch, scikit-learn or scipy; phloem from ``PYTHONPATH=src``) and its probabilities must
equal those of step 3. Results and caveats: ``README.md`` beside this script.

Progress goes to stderr; the markdown tables go to stdout; ``--json`` gets every number, the
machine, the date and the git commit. Exit status 0, or 3 when a numpy-only run imported torch,
scikit-learn or scipy, or when the ``--bare-python`` run answered differently (defects of the
export).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from phloem.iot.corpus import load_corpus
from phloem.iot.events import Event
from phloem.iot.feature_sets import FEATURE_SETS
from phloem.iot.features import FeatureSpec, Vectorizer
from phloem.iot.model_kinds import MODEL_KINDS
from phloem.iot.models import MLPClassifier, export_numpy

sys.path.insert(0, str(Path(__file__).resolve().parent))
from predict_numpy import best_s, per_event, read_events, write_events

HERE = Path(__file__).resolve().parent
SRC = HERE.parents[1] / "src"
TRAIN_UNTIL = "2023-10-25"
TEST_UNTIL = "2023-10-28"
# the feature sets and classifiers measured, built through phloem's registries (as the
# command line does); their default parameters are the classifiers' own
FEATURES: dict[str, Callable[[], FeatureSpec]] = {
    name: FEATURE_SETS.get(name)().spec for name in ("full", "sld")
}
MODELS: dict[str, Callable[[], Any]] = {
    name: MODEL_KINDS.get(name)().factory() for name in ("logreg", "mlp")
}
SIZE_TARGET_B = 1_000_000  # "under 1 MB", read as 10^6 bytes (stricter than 1 MiB)
LATENCY_TARGET_US = 1000.0


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --- machine and provenance ------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return None


def _git(*args: str) -> str:
    try:
        res = subprocess.run(["git", *args], cwd=HERE, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return res.stdout.strip()


def machine() -> dict[str, Any]:
    """CPU, cores, memory, versions, date, git commit and load: what the numbers ran on."""
    import scipy
    import sklearn
    import torch

    return {
        "date_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "git_commit": _git("rev-parse", "--short", "HEAD"),
        "git_dirty": [line for line in _git("status", "--porcelain").splitlines() if line],
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "mem_total_gib": _mem_total_gib(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "sklearn": sklearn.__version__,
        "scipy": scipy.__version__,
        "loadavg_start": list(os.getloadavg()),
    }


def bare_environment(python: str) -> dict[str, Any]:
    """Version and installed distributions of the ``--bare-python`` interpreter."""
    code = (
        "import importlib.metadata as m, json, platform; print(json.dumps({'python': "
        "platform.python_version(), 'distributions': sorted(f\"{d.metadata['Name']}=="
        '{d.version}" for d in m.distributions())}))'
    )
    res = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True)
    out: dict[str, Any] = json.loads(res.stdout)
    out["executable"] = python
    return out


# --- data --------------------------------------------------------------------------------------


def split(events: Sequence[Event]) -> tuple[list[Event], list[Event]]:
    """Train on days <= 2023-10-25; test on 2023-10-26..28, devices of the training set only."""
    train = [e for e in events if e.day <= TRAIN_UNTIL]
    known = {e.device for e in train}
    test = [e for e in events if TRAIN_UNTIL < e.day <= TEST_UNTIL and e.device in known]
    return train, test


# --- timing ------------------------------------------------------------------------------------


def summarise(passes: list[dict[str, float]]) -> dict[str, float]:
    """Median over passes of each pass's median and p99, with the range of the medians."""
    med = [p["median_us"] for p in passes]
    p99 = [p["p99_us"] for p in passes]
    return {
        "mean_us": float(np.median([p["mean_us"] for p in passes])),
        "median_us": float(np.median(med)),
        "median_us_min": min(med),
        "median_us_max": max(med),
        "p99_us": float(np.median(p99)),
        "p99_us_min": min(p99),
        "p99_us_max": max(p99),
    }


# --- one configuration -------------------------------------------------------------------------


def fit(features: str, model: str, train: Sequence[Event], window_s: float) -> Any:
    """Vectorizer and classifier fitted on ``train``, with the time of each step."""
    t0 = time.perf_counter()
    vec = Vectorizer(FEATURES[features]()).fit(train, window_s)
    t1 = time.perf_counter()
    X = vec.transform(train, window_s)
    t2 = time.perf_counter()
    clf = MODELS[model]().fit(X, [str(e.device) for e in train])
    t3 = time.perf_counter()
    times = {"vectorizer_fit_s": t1 - t0, "transform_train_s": t2 - t1, "clf_fit_s": t3 - t2}
    if isinstance(clf, MLPClassifier):
        times["mlp_epochs"] = clf.n_epochs_
    return vec, clf, times


def baseline(vec: Vectorizer, clf: Any, test: Sequence[Event], w: float, repeats: int) -> Any:
    """The in-process torch/sklearn path on the test events: per event, batched, probabilities."""

    def predict(evs: Sequence[Event]) -> Any:
        return clf.predict_proba(vec.transform(evs, w))

    predict(test[:1])  # the first call pays lazy imports and allocator warm-up
    passes = per_event(predict, test, repeats)
    best, times = best_s(lambda: predict(test), repeats)
    out = {
        "per_event": summarise(passes),
        "per_event_passes": passes,
        "batched_best_s": best,
        "batched_s": times,
        "batched_us_per_event": best / len(test) * 1e6,
    }
    return out, predict(test)


def numpy_subprocess(
    model: Path, events: Path, w: float, repeats: int, tmp: Path, python: str | None = None
) -> Any:
    """Run ``predict_numpy.py`` in a fresh interpreter; its result dict and probabilities.

    ``python`` (default: this interpreter) runs it with ``PYTHONPATH`` set to this checkout's
    ``src``, so an environment without phloem installed (``--bare-python``) can run it.
    """
    cmd = [python or sys.executable, str(HERE / "predict_numpy.py"), str(model), str(events),
           repr(w), str(repeats), str(tmp)]  # fmt: skip
    env = dict(os.environ)
    if python is not None:
        env["PYTHONPATH"] = str(SRC)
    res = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if res.returncode not in (0, 3):
        raise RuntimeError(f"predict_numpy.py failed ({res.returncode}):\n{res.stderr}")
    out = json.loads((tmp / "numpy_result.json").read_text(encoding="utf-8"))
    out["returncode"] = res.returncode
    out["stderr"] = res.stderr.strip()
    n = out["n_events"]
    out["per_event"] = summarise(out["per_event_passes"])
    out["featurise_per_event"] = summarise(out["featurise_per_event_passes"])
    out["batched_us_per_event"] = out["batched_best_s"] / n * 1e6
    out["featurise_batched_us_per_event"] = out["featurise_batched_best_s"] / n * 1e6
    return out, np.load(tmp / "numpy_proba.npy")


def run_one(features: str, model: str, train: Any, test: Any, args: Any, tmp: Path) -> Any:
    """Steps 1-5 of the module docstring for one (features, model) pair."""
    w, repeats = args.window, args.repeats
    _log(f"{features}/{model}: fitting on {len(train)} events")
    vec, clf, fit_times = fit(features, model, train, w)
    path = tmp / f"{features}-{model}.npz"
    export_numpy(clf, vec).save(path)
    _log(f"{features}/{model}: fitted {fit_times}; export {path.stat().st_size} B; baseline")
    base, base_proba = baseline(vec, clf, test, w, repeats)
    _log(f"{features}/{model}: numpy-only subprocess")
    work = tmp / f"{features}-{model}"
    work.mkdir()
    npy, np_proba = numpy_subprocess(path, tmp / "test_events.json", w, repeats, work)
    bare = None
    if args.bare_python is not None:
        _log(f"{features}/{model}: numpy-only subprocess under {args.bare_python}")
        (work / "bare").mkdir()
        bare, bare_proba = numpy_subprocess(
            path, tmp / "test_events.json", w, 1, work / "bare", args.bare_python
        )
        bare["max_abs_proba_diff_vs_numpy"] = float(np.abs(bare_proba - np_proba).max())
    truth = np.asarray([str(e.device) for e in test])
    classes = np.asarray(clf.classes_)
    if list(classes) != npy["classes"]:
        raise RuntimeError(f"{features}/{model}: exported classes differ from the model's")
    top_np, top_base = np_proba.argmax(1), base_proba.argmax(1)
    return {
        "features": features,
        "model": model,
        "n_features": vec.n_features,
        "n_classes": len(classes),
        "fit": fit_times,
        "npz_bytes": path.stat().st_size,
        "raw_weight_bytes": sum(W.nbytes + b.nbytes for W, b in clf.dense_layers()),
        "numpy": npy,
        "numpy_bare_python": bare,
        "baseline": base,
        "max_abs_proba_diff": float(np.abs(np_proba.astype(np.float64) - base_proba).max()),
        "top1_agreement": float((top_np == top_base).mean()),
        "accuracy_numpy": float((classes[top_np] == truth).mean()),
        "accuracy_baseline": float((classes[top_base] == truth).mean()),
        "loadavg_end": list(os.getloadavg()),
    }


# --- report ------------------------------------------------------------------------------------


def targets(r: dict[str, Any]) -> dict[str, bool]:
    npy, bare = r["numpy"], r["numpy_bare_python"]
    heavy = [*npy["heavy_after_load"], *npy["heavy_after_predict"]]
    if bare is not None:
        heavy += [*bare["heavy_after_load"], *bare["heavy_after_predict"]]
        heavy += [] if bare["returncode"] == 0 else [f"bare run exit {bare['returncode']}"]
        if bare.get("max_abs_proba_diff_vs_numpy") != 0.0:  # must answer exactly the same
            heavy.append("bare run answers differ")
    return {
        "size_under_1MB": r["npz_bytes"] < SIZE_TARGET_B,
        "per_event_median_under_1ms": npy["per_event"]["median_us"] < LATENCY_TARGET_US,
        "per_event_p99_under_1ms": npy["per_event"]["p99_us"] < LATENCY_TARGET_US,
        "batched_under_1ms_per_event": npy["batched_us_per_event"] < LATENCY_TARGET_US,
        "numpy_only": not heavy,
    }


def _yes(ok: bool) -> str:
    return "yes" if ok else "**NO**"


def markdown(results: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    """The two tables of the README: the export itself, and its latency against the baseline."""
    m = meta["machine"]
    lines = [
        f"IoT numpy export, window {meta['window_s']:g} s, {meta['n_train']} train / "
        f"{meta['n_test']} test events, {meta['repeats']} repeats; {m['date_utc']}, commit "
        f"{m['git_commit']}{' (dirty)' if m['git_dirty'] else ''}; {m['cpu_model']}, "
        f"{m['cpus_usable']} CPUs; Python {m['python']}, numpy {m['numpy']}, torch {m['torch']}",
        "",
        "| features | model | features n | .npz KB | < 1 MB | import s | load ms | first call ms | "
        "peak RSS MB | numpy only | max abs diff p | top-1 agree | acc numpy | acc baseline | "
        "fit s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        npy, t = r["numpy"], targets(r)
        fit_s = sum(v for k, v in r["fit"].items() if k.endswith("_s"))
        lines.append(
            f"| {r['features']} | {r['model']} | {r['n_features']} | {r['npz_bytes'] / 1e3:.1f} | "
            f"{_yes(t['size_under_1MB'])} | {npy['import_s']:.2f} | {npy['load_median_ms']:.2f} | "
            f"{npy['first_call_us'] / 1e3:.1f} | "
            f"{npy['rss_peak_mb']:.0f} | {_yes(t['numpy_only'])} | "
            f"{r['max_abs_proba_diff']:.1e} | {r['top1_agreement']:.4f} | "
            f"{r['accuracy_numpy']:.4f} | {r['accuracy_baseline']:.4f} | {fit_s:.1f} |"
        )
    lines += [
        "",
        "| features | model | numpy per event median µs | p99 µs | featurise only median µs | "
        "numpy per event mean µs | numpy batched µs/event | featurise only batched µs/event | "
        "baseline per event median µs | p99 µs | mean µs | baseline batched µs/event | "
        "per-event speed-up (median) | batched speed-up | p99 < 1 ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        npy, base, t = r["numpy"], r["baseline"], targets(r)
        lines.append(
            f"| {r['features']} | {r['model']} | {npy['per_event']['median_us']:.0f} | "
            f"{npy['per_event']['p99_us']:.0f} | {npy['featurise_per_event']['median_us']:.0f} | "
            f"{npy['per_event']['mean_us']:.0f} | {npy['batched_us_per_event']:.1f} | "
            f"{npy['featurise_batched_us_per_event']:.1f} | "
            f"{base['per_event']['median_us']:.0f} | {base['per_event']['p99_us']:.0f} | "
            f"{base['per_event']['mean_us']:.0f} | {base['batched_us_per_event']:.1f} | "
            f"{base['per_event']['median_us'] / npy['per_event']['median_us']:.1f}x | "
            f"{base['batched_us_per_event'] / npy['batched_us_per_event']:.1f}x | "
            f"{_yes(t['per_event_p99_under_1ms'])} |"
        )
    loads = ", ".join(f"{r['features']}/{r['model']} {r['loadavg_end'][0]:.1f}" for r in results)
    lines += [
        "",
        f"Load average (1 min): {m['loadavg_start'][0]:.1f} at the start; after each "
        f"configuration: {loads} ({m['cpus_usable']} CPUs).",
    ]
    mods = sorted({m for r in results for m in r["numpy"]["third_party_modules"]})
    lines += ["", f"Non-stdlib modules loaded by the numpy-only predictor: {', '.join(mods)}."]
    if "bare_python" in meta:
        dists = ", ".join(meta["bare_python"]["distributions"])
        oks = [
            r["numpy_bare_python"]["returncode"] == 0
            and r["numpy_bare_python"]["max_abs_proba_diff_vs_numpy"] == 0.0
            for r in results
        ]
        lines.append(
            f"Also run under `{meta['bare_python']['executable']}` (only {dists}; phloem from "
            f"PYTHONPATH=src): {sum(oks)}/{len(oks)} exports ran and gave identical probabilities."
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--window", type=float, default=2.0, help="seconds after the anchor")
    ap.add_argument("--repeats", type=int, default=5, help="passes / batched calls per path")
    ap.add_argument("--json", type=Path, default=None, help="write every number here")
    ap.add_argument("--features", nargs="+", choices=list(FEATURES), default=list(FEATURES))
    ap.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    ap.add_argument(
        "--bare-python",
        default=None,
        help="also run each export once under this interpreter (e.g. a venv with only numpy "
        "and publicsuffixlist), with PYTHONPATH=src: the predictor on a machine without torch",
    )
    args = ap.parse_args(argv)
    if args.repeats < 1:
        ap.error("--repeats must be >= 1")
    meta: dict[str, Any] = {"machine": machine(), "window_s": args.window}
    if args.bare_python is not None:
        meta["bare_python"] = bare_environment(args.bare_python)
    t0 = time.perf_counter()
    train, test = split(load_corpus())
    _log(f"corpus loaded in {time.perf_counter() - t0:.2f} s: {len(train)} train, {len(test)} test")
    meta.update(n_train=len(train), n_test=len(test), repeats=args.repeats,
                train_days=f"<= {TRAIN_UNTIL}", test_days=f"{TRAIN_UNTIL} < day <= {TEST_UNTIL}",
                n_test_no_dns_in_window=sum(not e.window(args.window) for e in test))  # fmt: skip
    results = []
    with tempfile.TemporaryDirectory(prefix="phloem-iot-export-") as tmp_s:
        tmp = Path(tmp_s)
        write_events(test, tmp / "test_events.json")
        if read_events(tmp / "test_events.json") != test:
            raise RuntimeError("the test events do not survive their JSON round trip")
        for features in args.features:
            for model in args.models:
                results.append(run_one(features, model, train, test, args, tmp))
    meta["machine"]["loadavg_end"] = list(os.getloadavg())
    for r in results:
        r["targets"] = targets(r)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({**meta, "results": results}, indent=1), encoding="utf-8")
    print(markdown(results, meta))
    defects = [r for r in results if not r["targets"]["numpy_only"]]
    for r in defects:
        _log(f"DEFECT {r['features']}/{r['model']}: numpy-only run imported "
             f"{r['numpy']['heavy_after_load']} / {r['numpy']['heavy_after_predict']}")  # fmt: skip
    return 3 if defects else 0


if __name__ == "__main__":
    sys.exit(main())
