"""Markdown tables from results/<name>.json: accuracy over seeds against full backprop, and
time to a target accuracy (epochs, backward FLOPs, CPU seconds) read from each run's history.

    python benchmarks/spb/quality/summarise.py mnist_lenet --target 0.985
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any


def _mean_sd(xs: list[float]) -> str:
    sd = statistics.stdev(xs) if len(xs) > 1 else float("nan")
    return f"{statistics.mean(xs):.2f} ± {sd:.2f}" if len(xs) > 1 else f"{xs[0]:.2f}"


def _to_target(history: list[dict[str, Any]], target: float) -> dict[str, Any] | None:
    for row in history:
        if row["test_acc"] >= target:
            return row
    return None


def _depths(overrides: list[str], plan: str, first: bool) -> list[int]:
    """The plan's depths at the first or last step, from the benchmark's config (computed,
    not read from the runs: runs before 2026-12-06 17:20 recorded the last step's for
    time-varying under this name)."""
    from phloem.spb.config import load_config
    from phloem.spb.registries import DEPTH_PLANS, MODELS

    sys.path.insert(0, str(Path(__file__).parent))
    from run import PLANS

    cfg = load_config(None, [*overrides, *PLANS[plan]])
    n_blocks = len(MODELS.get(cfg.model.name)(cfg.model.params).blocks())
    part = DEPTH_PLANS.get(cfg.plan.name)(cfg.plan.params)
    if cfg.plan.name == "profile":
        return ["from the profile"]  # type: ignore[list-item]
    total = 1000
    return list(part.depths(cfg.spb.workers, n_blocks, 0 if first else total - 1, total))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("name")
    ap.add_argument("--target", type=float, required=True)
    a = ap.parse_args()
    data = json.loads((Path(__file__).parent / "results" / f"{a.name}.json").read_text())
    runs: dict[str, list[dict[str, Any]]] = {}
    for r in data["runs"]:
        runs.setdefault(r["plan"], []).append(r)
    full = runs["full"]
    full_acc = statistics.mean(100 * r["final"]["test_acc"] for r in full)
    full_flops = statistics.mean(r["final"]["backward_flops"] for r in full)
    overrides = data["config"]["overrides"]
    print(
        f"| plan | depths, first → last step | seeds | test accuracy % (mean ± sd) "
        f"| vs full (points) "
        f"| backward FLOPs, all ranks (vs full) | busiest rank's backward FLOPs "
        f"| peak saved bytes, busiest rank | CPU s, all ranks | to {a.target:.1%}: epochs "
        f"| to {a.target:.1%}: backward FLOPs | to {a.target:.1%}: CPU s |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for plan, rs in runs.items():
        accs = [100 * r["final"]["test_acc"] for r in rs]
        flops = statistics.mean(r["final"]["backward_flops"] for r in rs)
        busiest = statistics.mean(r["final"]["backward_flops_max_rank"] for r in rs)
        saved = max(r["final"]["saved_bytes_max_rank"] for r in rs)
        cpu = statistics.mean(r["final"]["cpu_s"] for r in rs)
        hits = [_to_target(r["history"], a.target) for r in rs]
        reached = [h for h in hits if h is not None]
        if reached:
            ep = _mean_sd([h["epoch"] + 1.0 for h in reached])
            tf = f"{statistics.mean(h['backward_flops'] for h in reached) / 1e12:.2f} T"
            tc = f"{statistics.mean(h['cpu_s'] for h in reached):.0f}"
            if len(reached) < len(rs):
                ep += f" ({len(reached)}/{len(rs)} seeds)"
        else:
            ep, tf, tc = "not reached", "-", "-"
        depths = f"{_depths(overrides, plan, True)} → {_depths(overrides, plan, False)}"
        if plan == "profile":
            depths = f"{rs[0]['depths_at_step0']} (from the measured profile)"
        print(
            f"| {plan} | {depths} | {len(rs)} | {_mean_sd(accs)} | "
            f"{statistics.mean(accs) - full_acc:+.2f} | {flops / 1e12:.2f} T "
            f"({flops / full_flops - 1:+.0%}) | {busiest / 1e12:.2f} T | {saved / 1e6:.2f} MB "
            f"| {cpu:.0f} | {ep} | {tf} | {tc} |"
        )


if __name__ == "__main__":
    main()
