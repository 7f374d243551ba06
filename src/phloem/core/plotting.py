"""Paper-style comparison plots of run histories (matplotlib, imported lazily, Agg backend)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from phloem.core.history import History

__all__ = ["AXIS_ALIASES", "plot_histories", "resolve_axis"]

#: Short axis names accepted by ``phloem plot`` for the usual history columns.
AXIS_ALIASES = {
    "rounds": "round",
    "bits": "bits_per_client",
    "total_bits": "cum_bits",
    "uplink_bits": "cum_up_bits",
    "time": "wall_s",
    "samples": "cum_oracle_samples",
    "loss": "train_loss",
    "accuracy": "test_acc",
    "acc": "test_acc",
    "gap": "objective_gap",
    "dist": "dist_to_opt",
}

_LABELS = {
    "round": "communication rounds",
    "bits_per_client": "uplink bits per client",
    "cum_bits": "total bits (up + down)",
    "cum_up_bits": "uplink bits (all clients)",
    "wall_s": "wall time [s]",
    "cum_oracle_samples": "per-sample gradients",
    "grad_norm": r"$\|\nabla f(x)\|$",
    "dist_to_opt": r"$\|x - x^\star\|$",
    "objective_gap": r"$f(x) - f^\star$",
    "test_acc": "test accuracy",
    "train_loss": "training loss",
}


def resolve_axis(name: str, histories: Sequence[History]) -> str:
    """The history column for axis ``name`` (an alias or a column present in some history).

    Raises
    ------
    ValueError
        Naming the columns that exist.
    """
    key = AXIS_ALIASES.get(name, name)
    if any(key in h.columns() for h in histories):
        return key
    cols = sorted({k for h in histories for k in h.columns()})
    raise ValueError(
        f"no column {name!r} in these runs; available: {', '.join(cols)}; "
        f"aliases: {', '.join(sorted(AXIS_ALIASES))}"
    )


def plot_histories(
    runs: Sequence[tuple[str, History]],
    x: str,
    y: str,
    out: Path,
    *,
    logx: bool = False,
    logy: bool = True,
    title: str | None = None,
) -> Path:
    """Plot ``y`` against ``x`` for several runs in one figure and save it (PNG, PDF or SVG).

    Non-positive values are dropped on log axes.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hs = [h for _, h in runs]
    xk, yk = resolve_axis(x, hs), resolve_axis(y, hs)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for label, h in runs:
        xs, ys = h.pairs(xk, yk)
        keep = [
            (a, b)
            for a, b in zip(xs, ys, strict=True)
            if (not logx or a > 0) and (not logy or b > 0)
        ]
        if keep:
            ax.plot([a for a, _ in keep], [b for _, b in keep], label=label, lw=1.6)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(_LABELS.get(xk, xk))
    ax.set_ylabel(_LABELS.get(yk, yk))
    if title:
        ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=130)
    plt.close(fig)
    return out
