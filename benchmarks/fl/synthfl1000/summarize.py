"""Summarise one series of ``results/results.txt`` (written by ``run_series.sh``) as a table.

    python summarize.py [results/results.txt] [--series -1] [--baseline plain_fast]
    python summarize.py results/sweep.txt --sweep     # the hidden-width sweep (run_sweep.sh)

Each run line holds memwatch's fields (``wall_s``, ``cpu_user_sys_s``, peak tree RSS/PSS) and the
driver's ``RESULT`` fields. The table shows medians over the repeats, whether every repeat ended
at the same accuracy (and, for phloem, the same model bits), and seconds per round relative to
a baseline driver (``--baseline``, default ``plain_fast`` when the series has it, else
``plain``), as the ratio of medians and as the range of ratios within each repeat (the drivers of
one repeat ran back to back, so they saw similar machine load).
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
        if line.startswith(("# series", "# sweep")):
            series.append((line, []))
        elif series and " rep=" in line and "skipped" not in line:
            name = line.split()[0]
            series[-1][1].append({"driver": name, **dict(FIELD.findall(line))})
    if not series:
        raise SystemExit(f"no '# series' header in {path}; run run_series.sh first")
    return series[index]


def _median(runs: list[Run], key: str) -> float:
    return statistics.median(float(r[key]) for r in runs)


def table(runs: list[Run], baseline: str) -> str:
    by_driver: dict[str, list[Run]] = defaultdict(list)
    for r in runs:
        by_driver[r["driver"]].append(r)
    plain = {r["rep"]: float(r["median_round_s"]) for r in by_driver.get(baseline, [])}
    head = (
        "| driver | runs | start-up s | s/round | CPU s/round | total s | CPU s | peak RSS MiB "
        f"| peak PSS MiB | final acc | repeats identical | s/round vs {baseline} "
        "(range per repeat) |"
    )
    lines = [head, "|" + "---|" * 12]
    for name, rs in by_driver.items():
        accs = {r["final_acc"] for r in rs}
        shas = {r.get("model_sha") for r in rs}
        same = "yes" if len(accs) == 1 else "no (" + ", ".join(sorted(accs)) + ")"
        if len(accs) == 1 and None not in shas:
            same += " (same bits)" if len(shas) == 1 else " (acc only; model bits differ)"
        per_rep = [float(r["median_round_s"]) / plain[r["rep"]] for r in rs if r["rep"] in plain]
        ratio = _median(rs, "median_round_s") / statistics.median(plain.values()) if plain else 0
        spread = f" ({min(per_rep):.2f}-{max(per_rep):.2f})" if per_rep else ""
        cpu_rs = [r for r in rs if "median_round_cpu_s" in r]
        cpu = f"{_median(cpu_rs, 'median_round_cpu_s'):.4f}" if cpu_rs else "-"
        lines.append(
            f"| {name} | {len(rs)} | {_median(rs, 'first_round_end_s'):.2f} "
            f"| {_median(rs, 'median_round_s'):.4f} | {cpu} | {_median(rs, 'total_s'):.1f} "
            f"| {_median(rs, 'cpu_user_sys_s'):.1f} | {_median(rs, 'peak_tree_rss_MiB'):.0f} "
            f"| {_median(rs, 'peak_tree_pss_MiB'):.0f} | {_median(rs, 'final_acc'):.4f} "
            f"| {same} | {ratio:.2f}x{spread} |"
        )
    return "\n".join(lines)


def sweep_table(runs: list[Run], baseline: str, key: str = "median_round_s") -> str:
    """Per hidden width: median ``key`` (seconds a round) of each driver, and the baseline's
    time over each driver's within every repeat (median and range): > 1 is faster."""
    by: dict[tuple[int, str], dict[str, float]] = defaultdict(dict)
    for r in runs:
        if key in r:
            by[(int(r["hidden"]), r["driver"])][r["rep"]] = float(r[key])
    widths = sorted({h for h, _ in by})
    drivers = sorted({d for _, d in by}, key=lambda d: (d != baseline, d))
    head = "| hidden | params | " + " | ".join(f"{d} {key}" for d in drivers)
    head += " | " + " | ".join(f"{baseline} / {d} (range)" for d in drivers if d != baseline)
    lines = [head + " |", "|" + "---|" * (2 + 2 * len(drivers) - 1)]
    for h in widths:
        params = 60 * 10 + 10 if h == 0 else 60 * h + h + h * 10 + 10
        cells = [
            f"{statistics.median(by[(h, d)].values()):.4f}" if by[(h, d)] else "-" for d in drivers
        ]
        base = by[(h, baseline)]
        for d in drivers:
            if d == baseline:
                continue
            speed = [base[rep] / v for rep, v in by[(h, d)].items() if rep in base]
            cells.append(
                f"{statistics.median(speed):.2f}x ({min(speed):.2f}-{max(speed):.2f})"
                if speed
                else "-"
            )
        lines.append(f"| {h} | {params:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = Path(__file__).resolve().parent / "results" / "results.txt"
    ap.add_argument("path", nargs="?", type=Path, default=default)
    ap.add_argument("--series", type=int, default=-1, help="which series (-1: the last)")
    ap.add_argument("--baseline", default=None, help="driver the ratios are to")
    ap.add_argument("--sweep", action="store_true", help="a run_sweep.sh file: one row a width")
    args = ap.parse_args()
    header, runs = read_series(args.path, args.series)
    loads = [float(r["load1"]) for r in runs]
    print(f"{header}\nload1 during runs: {min(loads):.1f}-{max(loads):.1f}\n")
    drivers = {r["driver"] for r in runs}
    baseline = args.baseline or ("plain_fast" if "plain_fast" in drivers else "plain")
    if args.sweep:
        print(sweep_table(runs, baseline))
        print("\nCPU seconds of the driver process per round:\n")
        print(sweep_table(runs, baseline, "median_round_cpu_s"))
        return
    print(table(runs, baseline))
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
