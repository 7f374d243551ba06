"""Run the same FL experiments with two versions of phloem and compare their histories.

A refactor must not change a number: this script checks out ``--base`` (a git ref) into a
temporary worktree, runs ``phloem demo``, every ``configs/*.toml`` and a matrix of overrides
(every algorithm, compressor, sampler, server optimiser, the theory step size, dropouts, plain
and secure aggregation, both backends) with the base's code and with this checkout's code, in
the same Python environment, and compares the ``history.jsonl`` files row by row and key by
key (key order included), leaving out the columns that measure time.

    .venv/bin/python benchmarks/fl/identical_histories/run.py --base <ref> [--only NAME ...]

Exit status 0 when every history is identical, 1 otherwise. Needs ``PHLOEM_DATA_DIR`` for the
cases on LIBSVM data (they are skipped, and said to be, without it).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
#: columns that measure time (phloem.fl.simulate.TIMING_KEYS, spelt out: the base may differ)
TIMING = frozenset({"round_s", "eval_s", "wall_s", "secagg_s"})
QUAD = "configs/quadratic_diana.toml"
DIGITS = "configs/digits_fedavg.toml"


@dataclass(frozen=True)
class Case:
    name: str
    args: tuple[str, ...]  # after `phloem`
    needs_data: bool = False


def _fl(name: str, config: str, *overrides: str, data: bool = False) -> Case:
    sets: list[str] = []
    for o in overrides:
        sets += ["--set", o]
    return Case(name, ("fl", "run", config, *sets, "--no-progress"), data)


def cases() -> list[Case]:
    q100 = "run.rounds=100"
    out = [
        Case("demo", ("demo", "--rounds", "40")),
        _fl("config-digits-fedavg", DIGITS),
        _fl("config-digits-secagg", "configs/digits_secagg.toml"),
        _fl("config-quadratic-diana", QUAD),
        _fl("config-a9a-ef21", "configs/a9a_ef21.toml", data=True),
    ]
    for algo in ("fedavg", "dcgd", "diana", "marina"):
        out.append(_fl(f"quad-{algo}", QUAD, q100, f"algorithm.name={algo}"))
    out += [
        _fl("quad-ef21-topk", QUAD, q100, "algorithm.name=ef21", "compressor.name=topk"),
        _fl(
            "quad-fedprox",
            QUAD,
            q100,
            "algorithm.name=fedprox",
            "algorithm.mu=0.5",
            "local.steps=3",
        ),
        _fl(
            "quad-scaffold",
            QUAD,
            q100,
            "algorithm.name=scaffold",
            "local.solver=sgd",
            "local.steps=4",
            "local.lr=0.05",
        ),
        _fl("quad-diana-alpha", QUAD, q100, "algorithm.alpha=0.05"),
        _fl("quad-marina-p", QUAD, q100, "algorithm.name=marina", "algorithm.p=0.3"),
    ]
    for algo, comp in (
        ("dcgd", "randk"),
        ("diana", "randk"),
        ("marina", "randk"),
        ("ef21", "topk"),
    ):
        out.append(
            _fl(
                f"quad-theory-{algo}",
                QUAD,
                q100,
                f"algorithm.name={algo}",
                f"compressor.name={comp}",
                "server.lr_rule=theory",
                "server.lr_scale=0.9",
            )
        )
    out += [
        _fl(
            "quad-ef21-theory-scaled-randk",
            QUAD,
            q100,
            "algorithm.name=ef21",
            "compressor.scaled=true",
            "server.lr_rule=theory",
        ),
        _fl("quad-natural", QUAD, q100, "compressor.name=natural"),
        _fl("quad-qsgd", QUAD, q100, "compressor.name=qsgd", "compressor.levels=8"),
        _fl("quad-bernoulli", QUAD, q100, "compressor.name=bernoulli", "compressor.p=0.3"),
        _fl("quad-identity", QUAD, q100, "compressor.name=identity"),
        _fl("quad-randk-ratio", QUAD, q100, "compressor.ratio=0.2"),
        _fl("quad-none", QUAD, q100, "compressor.name=none", "algorithm.name=dcgd"),
        _fl("quad-poisson", QUAD, q100, "sampling.scheme=poisson", "sampling.rate=0.3"),
        _fl("quad-uniform", QUAD, q100, "sampling.scheme=uniform", "sampling.cohort_size=5"),
        _fl(
            "quad-marina-pp",
            QUAD,
            q100,
            "algorithm.name=marina",
            "sampling.scheme=uniform",
            "sampling.cohort_size=5",
        ),
        _fl(
            "quad-ef21-pp",
            QUAD,
            q100,
            "algorithm.name=ef21",
            "compressor.name=topk",
            "sampling.scheme=uniform",
            "sampling.cohort_size=7",
        ),
        _fl(
            "quad-adam",
            QUAD,
            q100,
            "algorithm.name=fedavg",
            "server.optimizer=adam",
            "server.lr=0.05",
        ),
        _fl("quad-momentum", QUAD, q100, "server.momentum=0.5"),
        _fl(
            "quad-heterogeneity", QUAD, q100, "data.heterogeneity=0.5", "data.dim=20", "data.mu=0.5"
        ),
        _fl("digits-process", DIGITS, "run.rounds=15", "run.backend=process"),
        _fl("digits-scaffold", DIGITS, "run.rounds=15", "algorithm.name=scaffold"),
        _fl("digits-fedprox", DIGITS, "run.rounds=15", "algorithm.name=fedprox"),
        _fl(
            "digits-mlp-shards",
            DIGITS,
            "run.rounds=15",
            "model.name=mlp",
            "model.hidden=[16]",
            "data.partition=shards",
            "data.shards_per_client=3",
        ),
        _fl(
            "digits-iid-linear",
            DIGITS,
            "run.rounds=15",
            "data.partition=iid",
            "model.name=linear",
            "local.lr=0.01",
        ),
        _fl(
            "digits-f64-l2",
            DIGITS,
            "run.rounds=15",
            "model.dtype=float64",
            "model.l2=0.01",
            "run.full_eval=true",
        ),
        _fl(
            "femnist-cnn",
            DIGITS,
            "run.rounds=2",
            "data.dataset=femnist",
            "data.partition=natural",
            "model.name=cnn",
            "sampling.cohort_size=4",
            "local.epochs=1",
            data=True,
        ),
        _fl(
            "digits-marina-randk",
            DIGITS,
            "run.rounds=15",
            "algorithm.name=marina",
            "compressor.name=randk",
            "compressor.ratio=0.2",
            "local.solver=full",
        ),
        _fl(
            "digits-ef21-topk-poisson",
            DIGITS,
            "run.rounds=15",
            "algorithm.name=ef21",
            "compressor.name=topk",
            "compressor.ratio=0.1",
            "local.solver=full",
            "sampling.scheme=poisson",
            "sampling.rate=0.15",
        ),
        _fl("digits-plain-dropout", DIGITS, "run.rounds=15", "aggregation.dropout=0.2"),
        _fl(
            "digits-secagg-complete",
            "configs/digits_secagg.toml",
            "run.rounds=8",
            "aggregation.name=secagg",
            "aggregation.dropout_stage=unmask",
            "sampling.cohort_size=10",
        ),
        _fl(
            "digits-secagg-abort",
            "configs/digits_secagg.toml",
            "run.rounds=6",
            "aggregation.dropout=0.6",
            "sampling.cohort_size=10",
        ),
        _fl(
            "digits-secagg-scaffold",
            "configs/digits_secagg.toml",
            "run.rounds=6",
            "algorithm.name=scaffold",
            "aggregation.consistency_check=true",
        ),
        _fl(
            "digits-secagg-ef21",
            "configs/digits_secagg.toml",
            "run.rounds=6",
            "algorithm.name=ef21",
            "compressor.name=topk",
            "compressor.ratio=0.2",
            "local.solver=full",
            "aggregation.num_shares=9",
            "aggregation.threshold=6",
        ),
        _fl(
            "synthetic-natural",
            DIGITS,
            "run.rounds=15",
            "data.dataset=synthetic",
            "data.partition=natural",
            "data.num_clients=30",
            "sampling.cohort_size=10",
        ),
        _fl(
            "libsvm-a9a-dirichlet",
            DIGITS,
            "run.rounds=10",
            "data.dataset=libsvm",
            "data.libsvm_name=a9a",
            "local.epochs=1",
            data=True,
        ),
    ]
    return out


def _run(tree: Path, case: Case, out: Path) -> Path | str:
    """Run ``case`` with the code in ``tree``; the run folder, or the error text."""
    out.mkdir(parents=True, exist_ok=True)
    args = list(case.args)
    if args[0] == "demo":
        args += ["--out", str(out)]
    else:
        args[args.index("--no-progress") : args.index("--no-progress")] = [
            "--set",
            f"run.out_dir={out}",
        ]
    env = dict(os.environ, PYTHONPATH=str(tree / "src"), MPLBACKEND="Agg")
    proc = subprocess.run(
        [sys.executable, "-m", "phloem.cli.app", *args],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        return f"exit {proc.returncode}: {proc.stderr.strip() or proc.stdout.strip()}"[-2000:]
    return out


def _histories(folder: Path) -> dict[str, list[list[tuple[str, object]]]]:
    """``{run name without time stamp: rows as (key, value) lists}``, timing columns left out."""
    found: dict[str, list[list[tuple[str, object]]]] = {}
    for h in sorted(folder.glob("*/history.jsonl")):
        name = h.parent.name.rsplit("-", 2)[0]  # <name>-<date>-<time>
        rows = []
        for line in h.read_text(encoding="utf-8").splitlines():
            raw = json.loads(line)
            rows.append([(k, v) for k, v in raw.items() if k not in TIMING])
        found[name] = rows
    return found


def _first_difference(a: list[list[tuple[str, object]]], b: list[list[tuple[str, object]]]) -> str:
    if len(a) != len(b):
        return f"{len(a)} rows against {len(b)}"
    for i, (ra, rb) in enumerate(zip(a, b, strict=True)):
        if ra != rb:
            da, db = dict(ra), dict(rb)
            keys = [k for k in {**da, **db} if da.get(k, "<absent>") != db.get(k, "<absent>")]
            if not keys:
                return f"row {i}: same values, key order {list(da)} against {list(db)}"
            k = keys[0]
            return f"row {i}: {k} = {da.get(k, '<absent>')!r} against {db.get(k, '<absent>')!r}"
    return ""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", required=True, help="git ref of the version to compare against")
    ap.add_argument("--only", nargs="*", default=None, help="case names to run (default: all)")
    ap.add_argument("--keep", type=Path, default=None, help="keep the run folders here")
    ns = ap.parse_args()
    has_data = bool(os.environ.get("PHLOEM_DATA_DIR"))
    todo = [c for c in cases() if ns.only is None or c.name in ns.only]
    tmp = Path(tempfile.mkdtemp(prefix="phloem-identical-"))
    work = ns.keep or tmp
    base_tree = tmp / "base"
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(base_tree), ns.base],
        check=True,
    )
    bad = 0
    try:
        for case in todo:
            if case.needs_data and not has_data:
                print(f"SKIP  {case.name}: PHLOEM_DATA_DIR is not set")
                continue
            t0 = time.perf_counter()
            got = {
                label: _run(tree, case, work / label / case.name)
                for label, tree in (("base", base_tree), ("head", ROOT))
            }
            errors = {k: v for k, v in got.items() if isinstance(v, str)}
            if errors:
                bad += 1
                print(f"FAIL  {case.name}: " + "; ".join(f"{k} {v}" for k, v in errors.items()))
                continue
            hb = _histories(work / "base" / case.name)
            hh = _histories(work / "head" / case.name)
            diffs = [
                f"{n}: {_first_difference(hb[n], hh.get(n, []))}" for n in hb if hb[n] != hh.get(n)
            ]
            if set(hh) - set(hb):
                diffs.append(f"runs only in head: {sorted(set(hh) - set(hb))}")
            rows = sum(len(r) for r in hb.values())
            secs = time.perf_counter() - t0
            if diffs or not hb:
                bad += 1
                print(f"DIFF  {case.name}: " + ("; ".join(diffs) or "no history written"))
            else:
                print(f"SAME  {case.name}: {len(hb)} run(s), {rows} rows ({secs:.0f} s)")
    finally:
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base_tree)],
            check=False,
        )
    print(f"{len(todo) - bad} of {len(todo)} cases identical" if bad else "all identical")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
