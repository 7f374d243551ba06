"""Accuracy against epsilon for DP-FedAvg: one config, several noise multipliers, one table.

Runs ``--config`` (default: this folder's a9a config) once without privacy (the baseline,
``privacy.mechanism = "none"``, same clients, sampling and local training) and once per
``--noise`` multiplier, and prints a Markdown table of test accuracy, epsilon at the config's
delta, clipped updates and wall time. Each run goes to a run folder under ``--out``.

    PHLOEM_DATA_DIR=../shared/data .venv/bin/python benchmarks/fl/dp/run.py
    .venv/bin/python benchmarks/fl/dp/run.py --config configs/dp_fedavg.toml --noise 0.5 1 2
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

from phloem.fl.config import load_config
from phloem.fl.experiment import run_experiment

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=HERE / "a9a_dp_fedavg.toml")
    ap.add_argument("--noise", type=float, nargs="+", default=[0.5, 1.0, 2.0])
    ap.add_argument("--out", type=Path, default=Path("/tmp/phloem-dp-bench"))
    ap.add_argument("--set", dest="sets", action="append", default=[])
    args = ap.parse_args()
    cases: list[tuple[str, list[str]]] = [("off", ["privacy.mechanism=none"])]
    cases += [(f"{z:g}", [f"privacy.noise_multiplier={z}"]) for z in args.noise]
    print("| noise multiplier z | epsilon | test acc | test loss | clipped / round | wall s |")
    print("|---|---|---|---|---|---|")
    for label, sets in cases:
        cfg = load_config(args.config, [f"run.out_dir={args.out}", *args.sets, *sets])
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # uniform weights, Opacus's alphas
            res = run_experiment(cfg, progress=False)
        wall = time.perf_counter() - t0
        rows = res.history.rows[1:]
        last = res.history.last()
        eps = last.get("epsilon")
        clipped = [float(r["dp_clipped"]) / max(int(r["clients"] or 0), 1) for r in rows
                   if "dp_clipped" in r]  # fmt: skip
        frac = f"{100 * sum(clipped) / len(clipped):.0f}%" if clipped else "-"
        shown = f"{float(eps):.3g}" if eps is not None else "- (no DP)"
        print(
            f"| {label} | {shown} | {float(last['test_acc']):.4f} | "
            f"{float(last['test_loss']):.4f} | {frac} | {wall:.1f} |"
        )


if __name__ == "__main__":
    main()
