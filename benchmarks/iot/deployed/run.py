"""The deployed any-time Identifier on the temporal split: accuracy and false unknowns.

    PYTHONPATH=src PHLOEM_DATA_DIR=../shared/data python benchmarks/iot/deployed/run.py \
        [--json OUT]

Trains ``Identifier.train`` (every default: checkpoints 0..60 s, full features, logistic
regression, 1% false-unknown target) on 2023-10-19..25 and answers, at 0, 2, 10 and 60 s, every
test capture of a known device with a query in the window: the temporal test days
(2023-10-26..28) and a month later (2023-11-22). Each twice: keyed by the capture's MAC (as a
capture or Pi-hole's FTL database gives it) and keyed by one IP (as a resolver log does: no
MAC vendor to go by). Reported: device accuracy of the top answer, manufacturer accuracy of the
answer (``None`` counts as wrong), and the share flagged unknown; and for the 12 devices new on
2023-11-22 (never trained on), the share of their captures flagged unknown. It only uses the
public API, so older code can be measured with the same script
(``PYTHONPATH=<old checkout>/src``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from dataclasses import replace

from phloem.iot.corpus import load_corpus
from phloem.iot.dataset import load_hierarchy
from phloem.iot.identify import Identifier

WINDOWS = (0.0, 2.0, 10.0, 60.0)
TESTS = {"10-26..28": ("2023-10-26", "2023-10-28"), "11-22": ("2023-11-22", "2023-11-22")}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    events = load_corpus()
    hierarchy = load_hierarchy()
    train = [e for e in events if e.day <= "2023-10-25"]
    t0 = time.perf_counter()
    idt = Identifier.train(train, hierarchy=hierarchy)
    train_s = time.perf_counter() - t0
    known = set(idt.classes)
    rows = []
    print("| test days | keys | window | events | device accuracy | manufacturer accuracy | "
          "flagged unknown |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for name, (lo, hi) in TESTS.items():
        test = [e for e in events if lo <= e.day <= hi and e.device in known]
        for keys in ("MAC", "IP"):
            keyed = test if keys == "MAC" else [replace(e, key="10.0.0.1") for e in test]
            for w in WINDOWS:
                scored = [e for e in keyed if e.window(w)]
                answers = idt.answer_many(scored, w, explain=False)
                dev = sum(a.top[0].label == e.device for a, e in zip(answers, scored, strict=True))
                man = sum(
                    a.manufacturer is not None and a.manufacturer.label == hierarchy[e.device][0]
                    for a, e in zip(answers, scored, strict=True)
                )  # fmt: skip
                unk = sum(a.unknown for a in answers)
                n = len(scored)
                rows.append({"test": name, "keys": keys, "window_s": w, "events": n,
                             "device_accuracy": dev / n, "manufacturer_accuracy": man / n,
                             "flagged_unknown": unk / n})  # fmt: skip
                print(f"| {name} | {keys} | {w:g} s | {n} | {dev / n:.4f} | {man / n:.4f} | "
                      f"{unk / n:.2%} |")  # fmt: skip
    # the 12 devices new on 2023-11-22 (never trained on): share flagged unknown
    new = [e for e in events if e.day == "2023-11-22" and e.device not in known]
    print("\n| new devices of 11-22 | keys | window | events | flagged unknown | lowest device |")
    print("|---|---|---|---|---|---|")
    for keys in ("MAC", "IP"):
        keyed = new if keys == "MAC" else [replace(e, key="10.0.0.1") for e in new]
        for w in WINDOWS:
            scored = [e for e in keyed if e.window(w)]
            answers = idt.answer_many(scored, w, explain=False)
            per: dict[str, list[bool]] = {}
            for e, a in zip(scored, answers, strict=True):
                per.setdefault(str(e.device), []).append(a.unknown)
            low = min(per, key=lambda d: sum(per[d]) / len(per[d]))
            share = sum(a.unknown for a in answers) / len(answers)
            rows.append({"test": "new devices 11-22", "keys": keys, "window_s": w,
                         "events": len(scored), "flagged_unknown": share,
                         "lowest_device": low,
                         "lowest_share": sum(per[low]) / len(per[low])})  # fmt: skip
            print(f"| {len(per)} devices | {keys} | {w:g} s | {len(scored)} | {share:.1%} | "
                  f"{low} {sum(per[low]) / len(per[low]):.0%} |")  # fmt: skip
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, check=False).stdout.strip()  # fmt: skip
    print(f"\ntrained in {train_s:.1f} s; code {commit}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"rows": rows, "train_s": train_s}, fh, indent=1)


if __name__ == "__main__":
    main()
