"""Summarise one series of ``results/results.txt`` (written by ``run_series.sh``) as a table.

    python summarize.py [results/results.txt] [--series -1]

Each run line holds memwatch's fields (``wall_s``, ``cpu_user_sys_s``, peak tree RSS/PSS) and the
driver's ``RESULT`` fields. The table shows medians over the repeats, whether every repeat ended
at the same accuracy (and, for phloem, the same model bits), and seconds per round relative to
the plain loop, as the ratio of medians and as the range of ratios within each repeat (the
drivers of one repeat ran back to back, so they saw similar machine load).
"""

from __future__ import annotations

import argparse
import re
import statistics
from collections import defaultdict
from pathlib import Path

FIELD = re.compile(r"(\w+)=(\S+)")
Run = dict[str, str]


def read_series(path: Path, index: int) -> tuple[str, list[Run]]:
    """The header and run lines of series ``index`` (Python-style, -1 = last) in ``path``."""
    series: list[tuple[str, list[Run]]] = []
    for line in path.read_text().splitlines():
        if line.startswith("# series"):
            series.append((line, []))
        elif series and " rep=" in line and "skipped" not in line:
            name = line.split()[0]
            series[-1][1].append({"driver": name, **dict(FIELD.findall(line))})
    if not series:
        raise SystemExit(f"no '# series' header in {path}; run run_series.sh first")
    return series[index]


def _median(runs: list[Run], key: str) -> float:
    return statistics.median(float(r[key]) for r in runs)


def table(runs: list[Run]) -> str:
    by_driver: dict[str, list[Run]] = defaultdict(list)
    for r in runs:
        by_driver[r["driver"]].append(r)
    plain = {r["rep"]: float(r["median_round_s"]) for r in by_driver.get("plain", [])}
    head = (
        "| driver | runs | start-up s | s/round | total s | CPU s | peak RSS MiB | peak PSS MiB "
        "| final acc | repeats identical | s/round vs plain (range per repeat) |"
    )
    lines = [head, "|" + "---|" * 11]
    for name, rs in by_driver.items():
        accs = {r["final_acc"] for r in rs}
        shas = {r.get("model_sha") for r in rs}
        same = "yes" if len(accs) == 1 else "no (" + ", ".join(sorted(accs)) + ")"
        if len(accs) == 1 and None not in shas:
            same += " (same bits)" if len(shas) == 1 else " (acc only; model bits differ)"
        per_rep = [float(r["median_round_s"]) / plain[r["rep"]] for r in rs if r["rep"] in plain]
        ratio = _median(rs, "median_round_s") / statistics.median(plain.values()) if plain else 0
        spread = f" ({min(per_rep):.2f}-{max(per_rep):.2f})" if per_rep else ""
        lines.append(
            f"| {name} | {len(rs)} | {_median(rs, 'first_round_end_s'):.2f} "
            f"| {_median(rs, 'median_round_s'):.4f} | {_median(rs, 'total_s'):.1f} "
            f"| {_median(rs, 'cpu_user_sys_s'):.1f} | {_median(rs, 'peak_tree_rss_MiB'):.0f} "
            f"| {_median(rs, 'peak_tree_pss_MiB'):.0f} | {_median(rs, 'final_acc'):.4f} "
            f"| {same} | {ratio:.2f}x{spread} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = Path(__file__).resolve().parent / "results" / "results.txt"
    ap.add_argument("path", nargs="?", type=Path, default=default)
    ap.add_argument("--series", type=int, default=-1, help="which series (-1: the last)")
    args = ap.parse_args()
    header, runs = read_series(args.path, args.series)
    loads = [float(r["load1"]) for r in runs]
    print(f"{header}\nload1 during runs: {min(loads):.1f}-{max(loads):.1f}\n")
    print(table(runs))
    shas = defaultdict(set)
    for r in runs:
        if "model_sha" in r:
            shas[r["driver"]].add(r["model_sha"])
    if shas:
        print(
            "\nfinal model sha256[:12]: " + "; ".join(f"{d}={sorted(s)}" for d, s in shas.items())
        )


if __name__ == "__main__":
    main()
