"""Reports of attack runs: image grids and markdown tables with each metric's definition.

Every number printed comes with how it was computed (:class:`phloem.attacks.metrics.Metric`
definitions), so a reader can compare it with a paper's table: phloem's SSIM is the Gaussian
11x11 one (Wang et al.), ``ssim_he`` the uniform 7x7 one He et al. report.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from phloem.attacks.experiment import ExperimentResult

__all__ = ["markdown_report", "save_grid", "save_rows"]


def _definitions() -> dict[str, str]:
    from phloem.attacks.metrics import Metric

    return {
        "victim_accuracy": "top-1 test accuracy of the undefended victim",
        "defended_accuracy": "top-1 test accuracy with the defences applied at the split",
        "ssim": Metric.SSIM.definition,
        "ssim_he": Metric.SSIM_UNIFORM.definition,
        "psnr": Metric.PSNR.definition,
        "mse": Metric.MSE.definition,
        "identification": Metric.IDENTIFICATION.definition,
        "lpips": Metric.LPIPS.definition,
    }


#: what each reported column is (the metrics' own definitions)
DEFINITIONS: dict[str, str] = _definitions()


def save_grid(originals: torch.Tensor, recon: torch.Tensor, path: Path, title: str = "") -> Path:
    """A two-row PNG: private images above, their reconstructions below."""
    return save_rows(originals, [("attack", recon)], path, title)


def save_rows(
    originals: torch.Tensor,
    rows: Sequence[tuple[str, torch.Tensor]],
    path: Path,
    title: str = "",
) -> Path:
    """A PNG grid: the private images in the first row, then one labelled row of
    reconstructions per attack (or combination of a sweep)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = originals.shape[0]
    labelled = [("private", originals), *rows]
    fig, axes = plt.subplots(
        len(labelled), n, figsize=(1.2 * n + 1.0, 1.25 * len(labelled) + 0.2), squeeze=False
    )
    for r, (label, images) in enumerate(labelled):
        for i in range(n):
            ax = axes[r][i]
            if i < images.shape[0]:
                img = images[i].detach().cpu().permute(1, 2, 0).numpy()
                ax.imshow(img[..., 0] if img.shape[2] == 1 else img, cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r][0].set_ylabel(label, fontsize=7, rotation=0, ha="right", va="center")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _fmt(mean: float, half: float) -> str:
    return f"{mean:.4g}" if math.isnan(half) else f"{mean:.4g} ± {half:.2g}"


def markdown_report(result: ExperimentResult) -> str:
    """The run's table (mean ± 95% CI over seeds) with each column's definition."""
    cfg = result.config
    seeds = ", ".join(str(s) for s in cfg.run.seeds)
    defences = ", ".join(d.name for d in cfg.defences) or "none"
    lines = [
        f"# {cfg.attack.name} against {cfg.victim.name} split at {cfg.victim.split}",
        "",
        f"Threat: {cfg.threat.access.value}, budget {cfg.threat.query_budget}, "
        f"aux {cfg.aux.name} ({cfg.aux.count}), private {cfg.private.name} "
        f"({cfg.private.count}); defences: {defences}; seeds {seeds}.",
        "",
        "| metric | value (mean ± 95% CI over seeds) | definition |",
        "|---|---|---|",
    ]
    for key, (mean, half) in result.summary.items():
        lines.append(f"| {key} | {_fmt(mean, half)} | {DEFINITIONS.get(key, '')} |")
    if result.grid is not None:
        lines += ["", f"![grid]({result.grid.relative_to(result.run_dir)})"]
    return "\n".join(lines) + "\n"
