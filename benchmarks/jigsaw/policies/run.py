"""Every policy on the Pollux workloads, and Jigsaw's sensitivity to the SPB fraction and the
statistical-efficiency penalty. Writes results/policies.json and prints tables.

    PHLOEM_DATA_DIR=../shared/data python benchmarks/jigsaw/policies/run.py

Each figure is the mean over the 8 workloads of a load. Cluster efficiency, the first way:
useful GPU-seconds / allocated GPU-seconds; the second way: work done (in single-GPU-seconds
of each job's application) per allocated GPU-second.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import numpy as np

from phloem.data.paths import data_dir
from phloem.jigsaw.config import load_config
from phloem.jigsaw.run import load_tables, run_simulation

HERE = Path(__file__).parent
LOADS = ("0.5", "1", "1.5", "2")
BASELINES = ("fifo", "tiresias", "gavel", "gandiva", "muri")
KEYS = ("avg_jct_s", "p99_jct_s", "makespan_s", "efficiency", "work_per_gpu_s", "utilisation",
        "network_bytes", "restarts", "spb_job_s")  # fmt: skip


def mean_over_workloads(load: str, sets: list[str], tables: object) -> dict[str, float]:
    rows = []
    for w in range(1, 9):
        cfg = load_config(None, [f'trace.load="{load}"', f"trace.workload={w}",
                                 "run.progress=false", "sim.segments=false", *sets])  # fmt: skip
        r = run_simulation(cfg, data_dir=data_dir(), write=False, tables=tables)  # type: ignore[arg-type]
        rows.append(r.metrics.to_json())
    return {k: float(np.mean([row[k] for row in rows])) for k in KEYS}


def main() -> None:
    t0 = time.perf_counter()
    tables = load_tables()
    out: dict[str, dict[str, dict[str, float]]] = {}
    for load in LOADS:
        res = {}
        for p in BASELINES:
            res[p] = mean_over_workloads(load, [f'policy.name="{p}"'], tables)
        for frac in (0.25, 0.5, 1.0):
            for pen in (0.0, 0.064, 0.28):
                res[f"jigsaw f={frac} p={pen}"] = mean_over_workloads(
                    load, ['policy.name="jigsaw"', f"spb.fraction={frac}", f"spb.penalty={pen}"],
                    tables,
                )  # fmt: skip
        # SPB deployed without an SPB-aware scheduler (the slack idles), half the jobs
        for p in ("tiresias", "jigsaw"):
            res[f"{p} always-shallow f=0.5 p=0.28"] = mean_over_workloads(
                load, [f'policy.name="{p}"', "spb.fraction=0.5", "spb.always_shallow=true"], tables
            )
        res["muri min_speed=0.6"] = mean_over_workloads(
            load, ['policy.name="muri"', "policy.min_speed=0.6"], tables
        )
        out[load] = res
        print(f"== load {load}")
        for name, m in res.items():
            print(f"  {name:34s} JCT {m['avg_jct_s']:8.0f}  p99 {m['p99_jct_s']:8.0f}  "
                  f"eff {m['efficiency']:.3f}  work/GPU-s {m['work_per_gpu_s']:.3f}  "
                  f"util {m['utilisation']:.3f}")  # fmt: skip
    machine = f"{platform.node()} {platform.machine()} python {platform.python_version()}"
    doc = {"results": out, "seconds": time.perf_counter() - t0, "machine": machine}
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "policies.json").write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
