"""Simulator speed: a Pollux workload at 2x load (320 jobs) on 64 GPUs per policy, and the
Philly-derived trace at several sizes (jobs and GPUs). In-process wall times of the event loop
(reading the trace apart), median of ``--repeats``. Writes results/speed.json.

    PHLOEM_DATA_DIR=../shared/data python benchmarks/jigsaw/speed/run.py
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
from pathlib import Path

from phloem.data.paths import data_dir
from phloem.jigsaw.config import load_config
from phloem.jigsaw.run import load_tables, run_simulation

HERE = Path(__file__).parent


def timed(sets: list[str], tables: object, repeats: int) -> dict[str, float]:
    walls, totals = [], []
    for _ in range(repeats):
        cfg = load_config(None, ["run.progress=false", "sim.segments=false", *sets])
        r = run_simulation(cfg, data_dir=data_dir(), write=False, tables=tables)  # type: ignore[arg-type]
        walls.append(r.wall_s)
        totals.append(r.total_s)
    m = r.metrics
    return {"wall_s": statistics.median(walls), "total_s": statistics.median(totals),
            "jobs": m.jobs, "decisions": m.decisions, "avg_jct_s": m.avg_jct_s}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--philly-repeats", type=int, default=1)
    args = ap.parse_args()
    tables = load_tables()
    out: dict[str, object] = {
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} CPUs, "
                   f"python {platform.python_version()}",
    }  # fmt: skip
    small = {}
    for p in ("fifo", "tiresias", "gavel", "gandiva", "muri", "jigsaw"):
        sets = [f'policy.name="{p}"', 'trace.load="2"', "trace.workload=5"]
        if p == "jigsaw":
            sets.append("spb.fraction=0.5")
        small[p] = timed(sets, tables, args.repeats)
        print(f"Pollux 2x (320 jobs), 64 GPUs, {p:9s}: {small[p]['wall_s']:.3f} s")
    out["pollux_160_jobs_64_gpus"] = small
    philly = {}
    sizes = [(10_000, 1024), (20_000, 1024), (41_000, 1024), (82_247, 1024),
             (41_000, 512), (41_000, 2048)]  # fmt: skip
    for jobs, gpus in sizes:
        for p in ("tiresias", "jigsaw"):
            sets = ['trace.name="philly"', f"trace.limit={jobs}", f"cluster.nodes={gpus // 8}",
                    "cluster.gpus_per_node=8", f'policy.name="{p}"']  # fmt: skip
            if p == "jigsaw":
                sets.append("spb.fraction=0.5")
            r = timed(sets, tables, args.philly_repeats)
            philly[f"{p} {jobs} jobs {gpus} GPUs"] = r
            print(f"philly {jobs:6d} jobs {gpus:5d} GPUs {p:9s}: loop {r['wall_s']:.1f} s, "
                  f"with reading {r['total_s']:.1f} s, {r['decisions']} decisions")  # fmt: skip
    out["philly"] = philly
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "speed.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
