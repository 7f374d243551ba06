"""Leave-vendor-out: is the manufacturer of a device from an unseen vendor named correctly?

For each manufacturer M of the doh_iot labels, an Identifier (default features, model and
checkpoints) is trained on every event of the other manufacturers' devices (all days), with
the labels of those devices only; then every event of M's devices with a query in the window
is answered at 0, 2 and 60 s. An answer names M correctly when its manufacturer has M's brand
key (``phloem.iot.vendors.brand_key``: "TP-Link Corporation Limited" and "TP-Link" are the
same). Reported per manufacturer and pooled: share named correctly, share named at all
(something named, right or wrong), and by which evidence; and, as the baseline, what the
classifier's own manufacturer guess (device probabilities summed per manufacturer, the only
answer before open-world naming) gets right on the same events.

    PYTHONPATH=src PHLOEM_DATA_DIR=../shared/data python benchmarks/iot/vendors/run.py \
        [--json OUT] [--only M,...]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter

from phloem.iot.corpus import load_corpus
from phloem.iot.dataset import load_hierarchy
from phloem.iot.identify import Identifier
from phloem.iot.vendors import brand_key

WINDOWS = (0.0, 2.0, 60.0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", default=None)
    ap.add_argument("--only", default=None, help="comma-separated manufacturers")
    args = ap.parse_args()
    events = load_corpus()
    hierarchy = load_hierarchy()
    makers = sorted({m for m, _ in hierarchy.values()})
    if args.only:
        makers = [m for m in makers if m in args.only.split(",")]
    rows = []
    t0 = time.perf_counter()
    for m in makers:
        train = [e for e in events if hierarchy[str(e.device)][0] != m]
        held = [e for e in events if hierarchy[str(e.device)][0] == m]
        known_h = {d: v for d, v in hierarchy.items() if v[0] != m}
        idt = Identifier.train(train, hierarchy=known_h)
        for w in WINDOWS:
            test = [e for e in held if e.window(w)]
            answers = idt.answer_many(test, w, explain=False)
            right = named = unknown = 0
            guess_right = 0
            by: Counter[str] = Counter()
            for a in answers:
                unknown += a.unknown
                if a.manufacturer is not None:
                    named += 1
                    ok = brand_key(a.manufacturer.label) == brand_key(m)
                    right += ok
                    kind = a.manufacturer.by.split(":", 1)[0]
                    by[f"{kind} {'right' if ok else 'wrong'}"] += 1
            # the baseline: the classifier's manufacturer guess (raw probabilities summed)
            raw = idt.proba(test, w)
            man, _ = idt._hierarchy(raw)
            guess_right = sum(g is not None and brand_key(g.label) == brand_key(m) for g in man)
            rows.append({
                "manufacturer": m, "window_s": w, "events": len(test), "unknown": unknown,
                "named": named, "right": right, "by": dict(by), "guess_right": guess_right,
            })  # fmt: skip
            print(f"{m:12s} {w:4g}s n={len(test):4d} unknown={unknown:4d} named={named:4d} "
                  f"right={right:4d} guess_right={guess_right:4d} {dict(by)}",
                  file=sys.stderr, flush=True)  # fmt: skip
    elapsed = time.perf_counter() - t0
    print(
        "| window | events | flagged unknown | named | named correctly | of those named, "
        "right | classifier's guess right |"
    )
    print("|---|---|---|---|---|---|---|")
    for w in WINDOWS:
        sel = [r for r in rows if r["window_s"] == w]
        n = sum(r["events"] for r in sel)
        named = sum(r["named"] for r in sel)
        right = sum(r["right"] for r in sel)
        unk = sum(r["unknown"] for r in sel)
        guess = sum(r["guess_right"] for r in sel)
        print(
            f"| {w:g} s | {n} | {unk / n:.3f} | {named / n:.3f} | **{right / n:.3f}** | "
            f"{right / max(named, 1):.3f} | {guess / n:.3f} |"
        )
    print(f"\n{len(makers)} manufacturers, {elapsed:.0f} s")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"rows": rows, "elapsed_s": elapsed}, fh, indent=1)


if __name__ == "__main__":
    main()
