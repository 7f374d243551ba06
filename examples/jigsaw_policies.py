"""Jigsaw against its base policy on the bundled Pollux workload, through the public API.

python examples/jigsaw_policies.py
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from phloem.jigsaw import compare_policies, load_config


def main(out: Path = Path("runs/jigsaw-example")) -> dict[str, dict[str, Any]]:
    # every job accepts structured partial backprop; the penalty for it is on
    cfg = load_config(None, ["spb.fraction=1.0", "run.progress=false"])
    result = compare_policies(cfg, ["tiresias", "jigsaw"], out_dir=out)
    figures = {r.config.policy.name: r.metrics.to_json() for r in result.reports}
    for name, m in figures.items():
        print(f"{name:9s} avg JCT {m['avg_jct_s'] / 3600:.2f} h, "
              f"useful/allocated GPU-s {m['efficiency']:.3f}, "
              f"seconds hosts ran shallow {m['spb_job_s']:.0f}")  # fmt: skip
    return figures


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("runs/jigsaw-example"))
