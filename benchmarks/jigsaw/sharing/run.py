"""GPU sharing on Alibaba's 2023 pods: the first 2,000 GPU pods by creation (39% of them use a
fraction of a GPU; about 126 days) on 2 nodes x 8 GPUs (a load near 1), under the policies that
share (Gandiva concurrently, Muri interleaved) and those that do not. Writes
results/sharing.json.

    PYTHONPATH=src PHLOEM_DATA_DIR=../shared/data python benchmarks/jigsaw/sharing/run.py
"""

from __future__ import annotations

import json
import platform
from pathlib import Path

from phloem.data.paths import data_dir
from phloem.jigsaw.config import load_config
from phloem.jigsaw.run import load_tables, run_simulation

HERE = Path(__file__).parent


def main() -> None:
    tables = load_tables()
    out = {}
    runs = {
        "fifo": ['policy.name="fifo"'],
        "tiresias": ['policy.name="tiresias"'],
        "gandiva": ['policy.name="gandiva"'],
        "muri": ['policy.name="muri"'],
        "muri min_speed=0.9": ['policy.name="muri"', "policy.min_speed=0.9"],
    }
    for name, sets in runs.items():
        cfg = load_config(None, ['trace.name="alibaba"', "trace.limit=2000", "cluster.nodes=2",
                                 "cluster.gpus_per_node=8", "cluster.gpu_memory_gb=32.0",
                                 "run.progress=false", "sim.segments=false", *sets])  # fmt: skip
        r = run_simulation(cfg, data_dir=data_dir(), write=False, tables=tables)
        m = r.metrics.to_json()
        out[name] = {**m, "skipped": r.skipped, "wall_s": r.wall_s}
        print(f"{name:20s} JCT {m['avg_jct_s']:9.0f}  wait {m['avg_wait_s']:9.0f}  "
              f"eff {m['efficiency']:.3f}  work/GPU-s {m['work_per_gpu_s']:.3f}  "
              f"util {m['utilisation']:.3f}  sim {r.wall_s:.1f} s")  # fmt: skip
    doc = {"results": out, "machine": f"{platform.node()} python {platform.python_version()}"}
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "sharing.json").write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
