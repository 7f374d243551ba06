"""Wall time to accuracy on real processes: two torchrun workers (gloo, one per core of this
2-core machine) train LeNet on MNIST with each plan; the plans are interleaved seed by seed so
that drift in the machine's speed hits them alike.

    python benchmarks/spb/wall/run.py --seeds 0,1,2 --out /tmp/spb-wall

results/wall.json keeps each run's history (wall_s, compute and sync seconds per rank).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from phloem.spb.config import load_config
from phloem.spb.train import launch

BASE = [
    "model.name=lenet",
    "data.name=mnist",
    "train.epochs=3",
    "train.batch_size=128",
    "train.lr=0.05",
    "spb.workers=2",
    "run.progress=false",
    "run.target_accuracy=0.985",
]
PLANS: dict[str, list[str]] = {
    "ddp": ["plan.name=full", "spb.sync=ddp"],
    "full": ["plan.name=full", "spb.sync=zeros"],
    "static": ["plan.name=static", "spb.sync=subgroup"],
    "time-varying": [
        "plan.name=time-varying",
        "plan.full_ranks=0",
        "plan.end_fraction=0.4",
        "spb.sync=subgroup",
    ],
    "freezeout": ["plan.name=freezeout", "spb.sync=subgroup"],
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--out", default="/tmp/spb-wall")
    a = ap.parse_args()
    results_file = Path(__file__).parent / "results" / "wall.json"
    results_file.parent.mkdir(exist_ok=True)
    results = json.loads(results_file.read_text()) if results_file.is_file() else {"runs": []}
    done = {(r["plan"], r["seed"]) for r in results["runs"]}
    for seed in [int(s) for s in a.seeds.split(",")]:
        for plan, sets in PLANS.items():
            if (plan, seed) in done:
                continue
            cfg = load_config(
                None,
                [*BASE, *sets, f"run.seed={seed}", f"run.out_dir={a.out}", f"run.name=wall-{plan}"],
            )
            t0 = time.perf_counter()
            r = launch(cfg, 2)
            results["runs"].append(
                {
                    "plan": plan,
                    "seed": seed,
                    "process_s": time.perf_counter() - t0,
                    "summary": r.summary,
                    "history": r.history.rows,
                }
            )
            results_file.write_text(json.dumps(results, indent=1) + "\n")
            f = r.summary["final"]
            print(plan, seed, f"acc {f['test_acc']:.4f} wall {f['wall_s']:.1f}s", flush=True)


if __name__ == "__main__":
    main()
