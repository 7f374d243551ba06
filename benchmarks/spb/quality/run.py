"""SPB quality and time-to-accuracy against the baselines, over seeds (virtual workers: the
same arithmetic as torchrun processes, tested in tests/spb/test_train.py).

    python benchmarks/spb/quality/run.py --name mnist_lenet --seeds 0,1,2 \
        --plans full,static,rotating,time-varying,freezeout -- --set model.name=lenet ...

Every run uses the same config but for ``plan.*`` (each plan's overrides below) and
``run.seed``; results.json holds each run's final row and time to target, and the folder of
every run (history.jsonl) stays under --out.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from phloem.spb.config import load_config
from phloem.spb.train import train

PLANS: dict[str, list[str]] = {
    "full": ["plan.name=full"],
    "static": ["plan.name=static"],
    "rotating": ["plan.name=rotating", "plan.period=1"],
    "time-varying": ["plan.name=time-varying", "plan.full_ranks=2", "plan.end_fraction=0.25"],
    "profile": ["plan.name=profile", "plan.backward_budget=0.5"],
    "freezeout": ["plan.name=freezeout"],
    "dropbp": ["plan.name=dropbp", "plan.rate=0.5"],
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--name", required=True)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--plans", default="full,static")
    ap.add_argument("--config", default=None)
    ap.add_argument("--out", default="/tmp/spb-bench")
    ap.add_argument("--set", action="append", default=[])
    a = ap.parse_args()
    here = Path(__file__).parent
    results_file = here / "results" / f"{a.name}.json"
    results_file.parent.mkdir(exist_ok=True)
    results = json.loads(results_file.read_text()) if results_file.is_file() else {"runs": []}
    done = {(r["plan"], r["seed"]) for r in results["runs"]}
    for plan in a.plans.split(","):
        for seed in [int(s) for s in a.seeds.split(",")]:
            if (plan, seed) in done:
                continue
            sets = [
                *a.set,
                *PLANS[plan],
                f"run.seed={seed}",
                f"run.out_dir={a.out}",
                f"run.name={a.name}-{plan}-s{seed}",
                "run.progress=false",
            ]
            cfg = load_config(a.config, sets)
            t0 = time.perf_counter()
            r = train(cfg)
            row = {
                "plan": plan,
                "seed": seed,
                "final": r.summary["final"],
                "time_to_target": r.summary["time_to_target"],
                "depths_at_step0": r.summary["depths_at_step0"],
                "history": r.history.rows,
                "seconds": time.perf_counter() - t0,
                "run_dir": str(r.run_dir),
            }
            results["runs"].append(row)
            results["config"] = {"overrides": a.set, "config": a.config}
            results_file.write_text(json.dumps(results, indent=1) + "\n")
            print(
                plan,
                seed,
                f"acc {r.summary['final']['test_acc']:.4f}",
                f"{row['seconds']:.0f}s",
                flush=True,
            )
    by_plan: dict[str, list[float]] = {}
    for r in results["runs"]:
        by_plan.setdefault(r["plan"], []).append(r["final"]["test_acc"])
    for plan, accs in by_plan.items():
        sd = statistics.stdev(accs) if len(accs) > 1 else float("nan")
        print(f"{plan}: {100 * statistics.mean(accs):.2f} ± {100 * sd:.2f} ({len(accs)} seeds)")


if __name__ == "__main__":
    main()
