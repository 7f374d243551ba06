"""Calibration: Tiresias on the Pollux workloads against the Pollux artifact's published figures.

The one fitted parameter is the gradient noise scale (a multiple of each application's initial
batch size, phloem.jigsaw.apps.NOISE), chosen on the 1x load; the 0.5x, 1.5x and 2x loads check
it. This script reruns the sweep and the check and writes results/calibration.json.

    PHLOEM_DATA_DIR=../shared/data python benchmarks/jigsaw/calibration/run.py
"""

from __future__ import annotations

import dataclasses
import json
import platform
import time
from pathlib import Path

import numpy as np

from phloem.data.paths import data_dir
from phloem.jigsaw.apps import APPLICATIONS, NOISE, load_colocation, load_throughput
from phloem.jigsaw.cluster import ClusterSpec
from phloem.jigsaw.rates import RateModel
from phloem.jigsaw.registries import POLICIES, TRACES
from phloem.jigsaw.simulator import SimOptions, simulate
from phloem.jigsaw.spbmodel import SpbFactors

#: Tiresias's average JCT in the Pollux artifact (seconds), by relative load
PUBLISHED = {"0.5": 2091.0, "1": 4038.0, "1.5": 6182.0, "2": 10040.0}
HERE = Path(__file__).parent


def avg_jct(noise: float | None, load: str) -> tuple[float, list[float]]:
    apps = {
        a: dataclasses.replace(s, noise_scale=None if noise is None else noise * s.init_batch_size)
        for a, s in APPLICATIONS.items()
    }
    model, coloc, cluster = load_throughput(None, apps), load_colocation(), ClusterSpec()
    per = []
    for w in range(1, 9):
        trace = TRACES.get("pollux")(TRACES.get("pollux").Params(load=load, workload=w)).read(
            data_dir(), model
        )
        rates = RateModel(trace.jobs, model, coloc, cluster, SpbFactors())
        res = simulate(
            trace, cluster, POLICIES.get("tiresias")(), rates, SimOptions(segments=False)
        )
        per.append(float(np.mean(res.finish_s - np.array([j.arrival_s for j in trace.jobs]))))
    return float(np.mean(per)), per


def main() -> None:
    t0 = time.perf_counter()
    sweep = {}
    for k in (None, 20.0, 40.0, 60.0, 80.0, 120.0):
        sweep[str(k)] = {load: avg_jct(k, load)[0] for load in PUBLISHED}
    check = {}
    for load, pub in PUBLISHED.items():
        mean, per = avg_jct(NOISE, load)
        check[load] = {"published_s": pub, "phloem_s": mean, "residual": mean / pub - 1,
                       "per_workload_s": per}  # fmt: skip
    out = {
        "noise_multiple": NOISE, "check": check, "sweep": sweep,
        "machine": f"{platform.node()} {platform.machine()} python {platform.python_version()}",
        "seconds": time.perf_counter() - t0,
    }  # fmt: skip
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "calibration.json").write_text(json.dumps(out, indent=1) + "\n")
    print("load  published  phloem  residual")
    for load, c in check.items():
        print(f"{load:>4}  {c['published_s']:9.0f}  {c['phloem_s']:6.0f}  {c['residual']:+.1%}")
    print("sweep (noise multiple: residual at 0.5/1/1.5/2):")
    for k, row in sweep.items():
        print(f"  {k:>6}: " + "  ".join(f"{row[x] / PUBLISHED[x] - 1:+.0%}" for x in PUBLISHED))


if __name__ == "__main__":
    main()
