"""Combine the six defence sweeps into He et al.'s plot and one table.

    python benchmarks/attacks/defences_mnist/plot.py OUT_DIR SWEEP_DIR [SWEEP_DIR ...]

Each SWEEP_DIR is a ``phloem attack sweep`` folder whose only grid axis is one defence's
parameter. Writes ``OUT_DIR/defences.png`` (the deployed model's test accuracy against the
attacker's SSIM, one curve per defence, 95% intervals over seeds as error bars) and
``OUT_DIR/defences.md`` (every level, and per defence the first level whose mean SSIM is below
0.3 with its accuracy cost against the undefended model).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

TARGET = 0.3


def main(out: Path, sweeps: list[Path]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    lines = ["| defence | level | ssim | defended accuracy |", "|---|---|---|---|"]
    first: list[str] = []
    undefended = None
    for folder in sweeps:
        rows = json.loads((folder / "sweep.json").read_text())
        (axis,) = rows[0]["values"]
        defence = _defence(Path(rows[0]["run"]))
        xs, ys, xe, ye = [], [], [], []
        for r in rows:
            s, a = r["summary"]["ssim"], r["summary"]["defended_accuracy"]
            if undefended is None and not defence.startswith("nopeek"):
                # the undefended victim's accuracy (a NoPeek victim is trained with the
                # defence, so its victim_accuracy is already a defended one)
                undefended = r["summary"]["victim_accuracy"]["mean"]
            xs.append(s["mean"])
            ys.append(a["mean"])
            xe.append(s["ci95"])
            ye.append(a["ci95"])
            level = f"{axis.split('.')[-1]} = {r['values'][axis]}"
            lines.append(
                f"| {defence} | {level} | {s['mean']:.3f} ± {s['ci95']:.3f} | "
                f"{a['mean']:.4f} ± {a['ci95']:.4f} |"
            )
        below = [i for i, x in enumerate(xs) if x < TARGET]
        if below:
            i = below[0]
            level = f"{axis.split('.')[-1]} = {rows[i]['values'][axis]}"
            first.append(
                f"| {defence} | {level} | {xs[i]:.3f} | {ys[i]:.4f} | "
                f"{(undefended or 0) - ys[i]:+.4f} |"
            )
        else:
            first.append(f"| {defence} | not reached (lowest {min(xs):.3f}) | | | |")
        ax.errorbar(xs, ys, xerr=xe, yerr=ye, marker="o", capsize=2, label=defence)
    ax.set_xlabel("attacker SSIM (Gaussian 11x11, data_range 1)")
    ax.set_ylabel("deployed test accuracy")
    ax.axvline(TARGET, color="grey", linestyle=":", linewidth=1)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "defences.png", dpi=120)
    head = [
        f"First level with mean SSIM < {TARGET} (cost: undefended accuracy "
        f"{undefended:.4f} minus defended accuracy)",
        "",
        "| defence | level | ssim | defended accuracy | accuracy cost |",
        "|---|---|---|---|---|",
        *first,
        "",
        "Every level",
        "",
    ]
    (out / "defences.md").write_text("\n".join(head + lines) + "\n")


def _defence(run: Path) -> str:
    """The defence's name, from the run's saved config (marked when the cloud part was
    fine-tuned behind it, ``[victim.finetune]``)."""
    import tomllib

    cfg = tomllib.loads((run / "config.toml").read_text())
    name = str(cfg["defences"][0]["name"])
    return name + " (cloud fine-tuned)" if cfg["victim"].get("finetune") else name


if __name__ == "__main__":
    main(Path(sys.argv[1]), [Path(p) for p in sys.argv[2:]])
