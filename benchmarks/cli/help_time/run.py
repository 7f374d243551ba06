"""How long the command line takes to print its help screens, against an older version.

Each help screen is a whole process (``python -m phloem.cli.app ... --help``), run ``--runs``
times after a warm-up, alternating with the same screen of ``--base`` (a git ref checked out in
a temporary worktree, run in the same Python environment), so both see the same machine state.
It prints the median, minimum and maximum wall seconds of each, their ratio, and which heavy
libraries (torch, scipy, sklearn, flwr, matplotlib) each process imported.

    .venv/bin/python benchmarks/cli/help_time/run.py --base 7f8ae81 [--runs 10]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
SCREENS = (("--help",), ("fl", "--help"), ("secagg", "--help"), ("iot", "--help"))
HEAVY = ("torch", "scipy", "sklearn", "flwr", "matplotlib")


def _env(tree: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(tree / "src")}


def _wall(tree: Path, args: tuple[str, ...]) -> float:
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "phloem.cli.app", *args],
        env=_env(tree),
        cwd=tree,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=True,
    )
    return time.perf_counter() - t0


def _heavy(tree: Path, args: tuple[str, ...]) -> list[str]:
    code = (
        "import sys, runpy\n"
        f"sys.argv = ['phloem', *{list(args)!r}]\n"
        "try:\n    runpy.run_module('phloem.cli.app', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        f"print('HEAVY:' + ','.join(m for m in {list(HEAVY)!r} if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=_env(tree),
        cwd=tree,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("HEAVY:"))
    return [m for m in line.removeprefix("HEAVY:").split(",") if m]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", required=True, help="git ref of the version to compare against")
    ap.add_argument("--runs", type=int, default=10, help="counted runs of each (default 10)")
    ns = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="phloem-help-")) / "base"
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(base), ns.base],
        check=True,
    )
    try:
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {ns.runs} runs each")
        print(
            "| screen | head median s (min-max) | base median s (min-max) | head/base | "
            "heavy imports head | heavy imports base |"
        )
        print("|---|---|---|---|---|---|")
        for args in SCREENS:
            for tree in (ROOT, base):  # warm-up: file cache, .pyc
                _wall(tree, args)
            head: list[float] = []
            old: list[float] = []
            for _ in range(ns.runs):
                head.append(_wall(ROOT, args))
                old.append(_wall(base, args))
            ratio = statistics.median(h / o for h, o in zip(head, old, strict=True))
            cells = [f"{statistics.median(v):.2f} ({min(v):.2f}-{max(v):.2f})" for v in (head, old)]
            heavy = [", ".join(_heavy(t, args)) or "none" for t in (ROOT, base)]
            print(
                f"| `phloem {' '.join(args)}` | {cells[0]} | {cells[1]} | {ratio:.2f} | "
                f"{heavy[0]} | {heavy[1]} |"
            )
    finally:
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)], check=False
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
