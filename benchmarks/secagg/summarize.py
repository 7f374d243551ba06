"""Summarise a results folder of ``run_series.sh`` / ``run_salvia.sh`` as markdown (and a plot).

    python summarize.py RESULTS_DIR [--no-plot]

Reads ``RESULTS_DIR/runs.tsv`` (one line per run) and the JSON each run wrote, prints the
tables, and writes them to ``RESULTS_DIR/summary.md``; for the Salvia runs also
``RESULTS_DIR/salvia.png``: measured client and server time against the operation-count model
of each protocol, one least-squares scale constant per protocol and metric (see README.md).

Both harnesses run the clients one after another in one process, so a round's wall time is the
sum of every client's compute, the server's compute and the (de)serialisation of every message:

- ``round s``: Flower: the sum of the four stage wall times of ``SecAggPlusWorkflow``; phloem:
  ``RoundReport.wall_s``.
- ``client s``: one client's compute over the round (per stage the mean over the clients that
  answered, summed over the stages).
- ``server s``: the server's own compute (Flower: stage wall minus the clients' time).
- ``upload KB``: what one client sends over the round (per-stage mean, summed), 1 KB = 1000 B.
- ``RSS MB``: the process's peak resident set (``ru_maxrss``, imports included).
- ``meets target``: whether ``(n, k, t)`` meet phloem's design targets (10% dropout, 10%
  corrupt clients, sigma 40, eta 30; ``check_parameters``), as ``run_phloem.py`` recorded it
  (with the log2 failure bounds where they are missed); settings that miss it ran with the
  permissive ``ClientPolicy()``. ``–`` for runs from before it was recorded.

``run_v2_cost.sh``'s runs (series ``v2cost``: an older checkout, tool ``phloem-old``, against
this one) get a table of their own, new/old ratios per repeat.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FLOWER_STAGES = ("setup", "share_keys", "collect_masked_vectors", "unmask")
CHUNKS = 11  # field elements per 32-byte secret in phloem's Shamir sharing (24-bit chunks)
SECRETS = 2  # each client shares its self-mask seed and its mask key


@dataclass(frozen=True)
class Run:
    """One row of ``runs.tsv`` with the numbers of its JSON (``None`` where there are none)."""

    series: str
    tool: str
    n: int
    dim: int
    shares_arg: str
    threshold_arg: str
    drop_frac: float
    drop_stage: str
    rep: int
    status: str  # done / timeout / crashed / skipped (...)
    ok: bool | None = None
    note: str = ""
    k: int | None = None
    t: int | None = None
    dropped: int = 0
    round_s: float = math.nan
    client_s: float = math.nan
    server_s: float = math.nan
    up_bytes: float = math.nan
    rss_mb: float = math.nan
    max_abs_err: float = math.nan
    meets_target: bool | None = None  # phloem's JSON since the client policy (wire format v2)
    log2_security_failure: float = math.nan
    log2_correctness_failure: float = math.nan

    @property
    def protocol(self) -> str:
        if self.shares_arg == "auto":
            return "SecAgg+ auto (k,t)"
        if self.shares_arg == "secure":
            return "SecAgg+ secure (k,t)"
        if self.shares_arg == "n":
            return {"half": "SecAgg k=n t=n/2+1", "secure": "SecAgg k=n, secure t"}.get(
                self.threshold_arg, "SecAgg k=n"
            )
        k = self.shares_arg.removeprefix("int:")
        return f"SecAgg+ k={k} t={self.threshold_arg.removeprefix('int:')}"

    @property
    def rank(self) -> int:
        """Rows that meet the design targets by construction first: SecAgg+, then SecAgg."""
        if self.shares_arg in ("auto", "secure"):
            return 0
        return 1 if self.threshold_arg == "secure" else 2

    @property
    def config(self) -> tuple[str, int, int, float, str]:
        return (self.protocol, self.n, self.dim, self.drop_frac, self.drop_stage)


def _flower_numbers(d: dict[str, Any]) -> dict[str, Any]:
    stage_ok = d.get("stage_ok", {})
    per = d.get("per_stage", {})
    failed = [s for s in FLOWER_STAGES if not stage_ok.get(s, False)]
    err = float(d.get("max_abs_err_vs_survivor_mean", math.nan))
    ok = not failed and err < 1e-3
    note = f"round failed at {failed[0]}" if failed else ("" if ok else f"error {err:.3g}")
    return {
        "ok": ok,
        "note": note,
        "k": d.get("num_shares"),
        "t": d.get("threshold"),
        "dropped": int(d.get("n_drop", 0)) if d.get("drop_stage") != "none" else 0,
        "round_s": sum(d.get("stage_wall_s", {}).values()),
        "client_s": sum(per[s]["client_mean_s"] for s in FLOWER_STAGES if s in per),
        "server_s": float(d.get("server_only_total_s", math.nan)),
        "up_bytes": float(sum(per[s]["up_mean_B"] for s in FLOWER_STAGES if s in per)),
        "rss_mb": float(d.get("maxrss_mb", math.nan)),
        "max_abs_err": err,
    }


def _log2(x: float | str | None) -> float:
    return math.nan if x is None else float(x)  # "-inf" where the bad event is impossible


def _phloem_numbers(d: dict[str, Any]) -> dict[str, Any]:
    return {
        "meets_target": d.get("meets_target"),
        "log2_security_failure": _log2(d.get("log2_security_failure")),
        "log2_correctness_failure": _log2(d.get("log2_correctness_failure")),
        "ok": bool(d["ok"]),
        "note": "" if d["ok"] else str(d.get("abort", "")),
        "k": d["num_shares"],
        "t": d["threshold"],
        "dropped": d["dropped"],
        "round_s": d["wall_s"],
        "client_s": d["client_s"],
        "server_s": d["server_s"],
        "up_bytes": d["up_bytes"],
        # older runs also wrote ru_maxrss_mb, a second reading taken just after peak_rss_mb
        "rss_mb": d.get("ru_maxrss_mb", d.get("peak_rss_mb", math.nan)),
        "max_abs_err": d["max_abs_error"],
    }


def read_runs(folder: Path) -> list[Run]:
    """Every run indexed in ``folder/runs.tsv``, with the numbers of the JSON it wrote."""
    index = folder / "runs.tsv"
    if not index.exists():
        raise SystemExit(f"{index} not found: run run_series.sh or run_salvia.sh first")
    runs = []
    with index.open() as f:
        for row in csv.DictReader(f, delimiter="\t"):
            base: dict[str, Any] = {
                "series": row["series"],
                "tool": row["tool"],
                "n": int(row["n"]),
                "dim": int(row["dim"]),
                "shares_arg": row["num_shares"],
                "threshold_arg": row["threshold"],
                "drop_frac": float(row["drop_frac"]),
                "drop_stage": row["drop_stage"],
                "rep": int(row["rep"]),
                "status": row["status"],
            }
            path = folder / row["json"] if row["json"] else None
            if row["status"] == "done" and path is not None and path.exists():
                d = json.loads(path.read_text())
                base.update(_flower_numbers(d) if row["tool"] == "flower" else _phloem_numbers(d))
            runs.append(Run(**base))
    return runs


# -- formatting -----------------------------------------------------------------------------
def _med(values: Iterable[float]) -> float:
    vs = [v for v in values if not math.isnan(v)]
    return statistics.median(vs) if vs else math.nan


def _fmt(x: float, digits: int = 3) -> str:
    if math.isnan(x):
        return "–"
    if x == 0:
        return "0"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


def _outcome(rs: list[Run]) -> str:
    """'ok', 'ok 3/3', 'FAILED (reason)', 'timeout (...)', 'skipped (...)'."""
    if not rs:
        return "not run"
    done = [r for r in rs if r.status == "done"]
    if not done:
        return rs[0].status
    oks = sum(bool(r.ok) for r in done)
    if oks == len(done):
        tail = f" {oks}/{len(rs)}" if len(rs) > 1 else ""
        return "ok" + tail + ("" if len(done) == len(rs) else f" ({rs[0].status} in others)")
    notes = sorted({r.note for r in done if not r.ok})
    return f"FAILED {len(done) - oks}/{len(rs)} ({'; '.join(notes)})"


def _stat(rs: list[Run], field: str) -> float:
    return _med(getattr(r, field) for r in rs if r.status == "done")


def _ratio(fl: list[Run], ph: list[Run], field: str, digits: int = 1) -> str:
    """Flower / phloem, as the median of the per-repeat ratios (and their range)."""
    by_rep = {r.rep: getattr(r, field) for r in ph if r.status == "done"}
    ratios = [
        getattr(r, field) / by_rep[r.rep]
        for r in fl
        if r.status == "done" and by_rep.get(r.rep, 0) > 0 and r.ok
    ]
    if not ratios:
        return "–"
    out = f"{statistics.median(ratios):.{digits}f}x"
    if len(ratios) > 1:
        out += f" ({min(ratios):.{digits}f}–{max(ratios):.{digits}f})"
    return out


def _kt(rs: list[Run]) -> str:
    done = [r for r in rs if r.k is not None]
    return f"{done[0].k}/{done[0].t}" if done else "–"


def _target(rs: list[Run]) -> str:
    """'yes', or 'no' with the log2 union bounds of the failures, from phloem's JSON."""
    known = [r for r in rs if r.meets_target is not None]
    if not known:
        return "–"
    r = known[0]
    if r.meets_target:
        return "yes"
    return (
        f"**no** (security 2^{r.log2_security_failure:.1f}, "
        f"correctness 2^{r.log2_correctness_failure:.1f})"
    )


def _order(cfgs: Iterable[tuple[str, int, int, float, str]], runs: list[Run]) -> list[Any]:
    """Dropout at the masked input (or none) first; then secure settings; then n, m, drop."""
    rank = {r.config: r.rank for r in runs}
    main_stages = ("none", "collect_masked_vectors")
    return sorted(cfgs, key=lambda c: (c[4] not in main_stages, rank[c], c[0], c[1:]))


def _group(runs: list[Run]) -> dict[tuple[str, int, int, float, str], dict[str, list[Run]]]:
    groups: dict[tuple[str, int, int, float, str], dict[str, list[Run]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for r in runs:
        groups[r.config][r.tool].append(r)
    return groups


def _drop(frac: float, stage: str) -> str:
    if stage == "none" or frac == 0:
        return "0"
    return f"{frac:.0%} at {stage.replace('collect_masked_vectors', 'masked input')}"


def series_tables(runs: list[Run]) -> str:
    """Flower beside phloem for every configuration of run_series.sh."""
    groups = _group(runs)
    order = _order(groups, runs)
    time_rows = [
        "| n | protocol | dropout | k/t Flower, phloem | meets target | round s Flower "
        "| round s phloem | speed-up | client s Flower | client s phloem | client speed-up "
        "| server s Flower | server s phloem | server speed-up |",
        "|" + "---|" * 14,
    ]
    size_rows = [
        "| n | protocol | dropout | upload KB Flower | upload KB phloem | upload ratio "
        "| RSS MB Flower | RSS MB phloem | Flower | phloem |",
        "|" + "---|" * 10,
    ]
    for cfg in order:
        proto, n, _dim, frac, stage = cfg
        fl, ph = groups[cfg].get("flower", []), groups[cfg].get("phloem", [])
        head = f"| {n} | {proto} | {_drop(frac, stage)} "
        time_rows.append(
            head + f"| {_kt(fl)}, {_kt(ph)} | {_target(ph)} "
            f"| {_fmt(_stat(fl, 'round_s'))} | {_fmt(_stat(ph, 'round_s'))} "
            f"| {_ratio(fl, ph, 'round_s')} "
            f"| {_fmt(_stat(fl, 'client_s'))} | {_fmt(_stat(ph, 'client_s'))} "
            f"| {_ratio(fl, ph, 'client_s')} "
            f"| {_fmt(_stat(fl, 'server_s'))} | {_fmt(_stat(ph, 'server_s'))} "
            f"| {_ratio(fl, ph, 'server_s')} |"
        )
        up_f, up_p = _stat(fl, "up_bytes") / 1e3, _stat(ph, "up_bytes") / 1e3
        size_rows.append(
            head + f"| {_fmt(up_f, 4)} | {_fmt(up_p, 4)} "
            f"| {_fmt(up_f / up_p, 3) + 'x' if up_p > 0 else '–'} "
            f"| {_fmt(_stat(fl, 'rss_mb'))} | {_fmt(_stat(ph, 'rss_mb'))} "
            f"| {_outcome(fl)} | {_outcome(ph)} |"
        )
    return "\n".join(time_rows) + "\n\n" + "\n".join(size_rows)


def salvia_table(runs: list[Run]) -> str:
    groups = _group(runs)
    rows = [
        "| protocol | dropout | n | entries | k/t | meets target | round s | client s "
        "| server s | upload KB | RSS MB | outcome |",
        "|" + "---|" * 12,
    ]
    for cfg in _order(groups, runs):
        proto, n, dim, frac, stage = cfg
        ph = groups[cfg].get("phloem", [])
        rows.append(
            f"| {proto} | {_drop(frac, stage)} | {n} | {dim:,} | {_kt(ph)} | {_target(ph)} "
            f"| {_fmt(_stat(ph, 'round_s'))} | {_fmt(_stat(ph, 'client_s'))} "
            f"| {_fmt(_stat(ph, 'server_s'))} | {_fmt(_stat(ph, 'up_bytes') / 1e3, 4)} "
            f"| {_fmt(_stat(ph, 'rss_mb'))} | {_outcome(ph)} |"
        )
    return "\n".join(rows)


def v2_cost_table(runs: list[Run]) -> str:
    """An older checkout (tool ``phloem-old``) against this one, per configuration."""
    groups = _group(runs)
    rows = [
        "| n | dropout | k/t | round s old | round s new | new/old | client s old "
        "| client s new | new/old | server s old | server s new | new/old | upload KB old "
        "| upload KB new | new/old | old | new |",
        "|" + "---|" * 17,
    ]
    for cfg in _order(groups, runs):
        _proto, n, _dim, frac, stage = cfg
        old, new = groups[cfg].get("phloem-old", []), groups[cfg].get("phloem", [])
        cells = [f"| {n} | {_drop(frac, stage)} | {_kt(old)}, {_kt(new)} "]
        for field, scale, digits in (
            ("round_s", 1.0, 3),
            ("client_s", 1.0, 3),
            ("server_s", 1.0, 3),
            ("up_bytes", 1e-3, 4),
        ):
            cells.append(
                f"| {_fmt(_stat(old, field) * scale, digits)} "
                f"| {_fmt(_stat(new, field) * scale, digits)} | {_ratio(new, old, field, 2)} "
            )
        cells.append(f"| {_outcome(old)} | {_outcome(new)} |")
        rows.append("".join(cells))
    return "\n".join(rows)


# -- the operation-count model --------------------------------------------------------------
def client_ops(r: Run) -> float:
    """One client's work: O(m k + k^2) (Bonawitz et al. 2017 with k = n; Bell et al. 2020).

    ``m`` ring entries (the vector and the appended weight): encode the input (m), expand and
    add the self mask and ``k - 1`` pairwise masks (k m), and share two 32-byte secrets among
    ``k`` holders with degree ``t - 1`` (2 x 11 chunks x k x t field operations).
    """
    assert r.k is not None and r.t is not None
    m = r.dim + 1
    return m + r.k * m + SECRETS * CHUNKS * r.k * r.t


def server_ops(r: Run) -> float:
    """The server's work: O(m n + m d k + n k^2); SecAgg (k = n) with d ~ n dropouts: O(m n^2).

    ``a`` survivors and ``d`` clients that dropped after sharing their keys: receive and add
    ``a`` masked vectors (a m), expand and subtract ``a`` self masks (a m), re-create the
    pairwise masks between each dropped client and its surviving neighbours
    (d (k-1) a/(n-1) m: exactly d (n-d) m in SecAgg), combine a + d secrets from ``t`` shares
    (2 x 11 x t each) and compute Lagrange coefficients (t^2) per distinct holder set (one in
    SecAgg, one per client in SecAgg+).
    """
    assert r.k is not None and r.t is not None
    m, n, k, t, d = r.dim + 1, r.n, r.k, r.t, r.dropped
    a = n - d
    pairwise = d * (k - 1) * a / (n - 1)
    holder_sets = 1 if k >= n else n
    return 2 * a * m + pairwise * m + SECRETS * CHUNKS * t * n + holder_sets * t * t


def client_pairs(r: Run) -> float:
    """Per-neighbour work of a client, constant in m: k - 1."""
    assert r.k is not None
    return r.k - 1


def server_pairs(r: Run) -> float:
    """Per-pair work of the server, constant in m: n (k - 1) graph edges (both directions)."""
    assert r.k is not None
    return r.n * (r.k - 1)


METRICS: dict[str, tuple[str, Callable[[Run], float], Callable[[Run], float]]] = {
    "client_s": ("client", client_ops, client_pairs),
    "server_s": ("server", server_ops, server_pairs),
}


@dataclass(frozen=True)
class Fit:
    """Both fits of one protocol and metric over its runs."""

    protocol: str
    metric: str
    points: int
    scale_ns: float  # one constant: seconds per operation of the model, in ns
    r2: float
    max_rel_err: float
    word_ns: float  # two terms: ns per operation of the model ...
    pair_us: float  # ... plus microseconds per neighbour (client) / graph edge (server)
    r2_two: float
    max_rel_err_two: float

    def predict(self, r: Run, two: bool = False) -> float:
        _, ops, pairs = METRICS["client_s" if self.metric == "client" else "server_s"]
        if two:
            return self.word_ns * 1e-9 * ops(r) + self.pair_us * 1e-6 * pairs(r)
        return self.scale_ns * 1e-9 * ops(r)


def _quality(pred: list[float], ys: list[float]) -> tuple[float, float]:
    """``(R^2, max |relative error|)`` of a prediction."""
    mean = statistics.fmean(ys)
    ss_tot = sum((y - mean) ** 2 for y in ys)
    ss_res = sum((y - p) ** 2 for p, y in zip(pred, ys, strict=True))
    r2 = 1 - ss_res / ss_tot if ss_tot > 0 else math.nan
    return r2, max(abs(p - y) / y for p, y in zip(pred, ys, strict=True))


def fit_scale(xs: list[float], ys: list[float]) -> float:
    """Least squares ``y ~ c x`` through the origin."""
    return sum(x * y for x, y in zip(xs, ys, strict=True)) / sum(x * x for x in xs)


def fit_two(xs: list[float], zs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least squares ``y ~ a x + b z`` with ``a, b >= 0`` (a one-term fit where one is < 0)."""
    sxx = sum(x * x for x in xs)
    szz = sum(z * z for z in zs)
    sxz = sum(x * z for x, z in zip(xs, zs, strict=True))
    sxy = sum(x * y for x, y in zip(xs, ys, strict=True))
    szy = sum(z * y for z, y in zip(zs, ys, strict=True))
    det = sxx * szz - sxz * sxz
    if det > 0:
        a, b = (sxy * szz - szy * sxz) / det, (szy * sxx - sxy * sxz) / det
        if a >= 0 and b >= 0:
            return a, b
    return (fit_scale(xs, ys), 0.0) if sxy / sxx >= 0 else (0.0, fit_scale(zs, ys))


def fits(runs: list[Run]) -> dict[tuple[str, str], Fit]:
    """Per protocol and metric: one scale constant shared by both sweeps and both dropout
    rates, and (a diagnostic) the same with a second, m-independent per-neighbour term."""
    by_proto: dict[str, list[Run]] = defaultdict(list)
    for r in runs:
        if r.status == "done" and r.ok:
            by_proto[r.protocol].append(r)
    out = {}
    for proto, rs in sorted(by_proto.items()):
        if len(rs) < 3:
            continue
        for field, (metric, ops, pairs) in METRICS.items():
            xs, zs = [ops(r) for r in rs], [pairs(r) for r in rs]
            ys = [getattr(r, field) for r in rs]
            c = fit_scale(xs, ys)
            r2, rel = _quality([c * x for x in xs], ys)
            a, b = fit_two(xs, zs, ys)
            r2_two, rel_two = _quality([a * x + b * z for x, z in zip(xs, zs, strict=True)], ys)
            out[(proto, field)] = Fit(
                proto, metric, len(rs), c * 1e9, r2, rel, a * 1e9, b * 1e6, r2_two, rel_two
            )
    return out


def fit_table(found: dict[tuple[str, str], Fit]) -> str:
    rows = [
        "| protocol | time | runs | one constant: ns per op | R^2 | max rel. err "
        "| two terms: ns per op | + µs per neighbour/edge | R^2 | max rel. err |",
        "|" + "---|" * 10,
    ]
    for f in found.values():
        rows.append(
            f"| {f.protocol} | {f.metric} | {f.points} | {f.scale_ns:.3g} | {f.r2:.3f} "
            f"| {f.max_rel_err:.0%} | {f.word_ns:.3g} | {f.pair_us:.3g} | {f.r2_two:.3f} "
            f"| {f.max_rel_err_two:.0%} |"
        )
    return "\n".join(rows) + (
        "\n\nops: client `m + k m + 22 k t`; server `2 a m + d (k-1) a/(n-1) m + 22 t n + L t^2`"
        " (README.md). The second fit adds `k - 1` (client) or `n (k - 1)` (server) times a "
        "constant: the work per neighbour that does not grow with m."
    )


def _sweep_points(
    done: list[Run], proto: str, frac: float, attr: str, keep: Callable[[Run], bool]
) -> dict[int, list[Run]]:
    pts: dict[int, list[Run]] = defaultdict(list)
    for r in done:
        rf = r.drop_frac if r.drop_stage != "none" else 0.0
        if r.protocol == proto and rf == frac and keep(r):
            pts[getattr(r, attr)].append(r)
    return pts


def plot_salvia(runs: list[Run], found: dict[tuple[str, str], Fit], path: Path) -> None:
    """Client and server time against n (at the smallest vector) and m (at the smallest n)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    done = [r for r in runs if r.status == "done" and r.ok]
    if not done:
        return
    dim0, n0 = min(r.dim for r in done), min(r.n for r in done)
    protos = sorted({r.protocol for r in done})
    colors = dict(zip(protos, plt.get_cmap("tab10").colors, strict=False))
    fracs = sorted({r.drop_frac if r.drop_stage != "none" else 0.0 for r in done})
    markers = dict(zip(fracs, "o^sv", strict=False))
    fig, axes = plt.subplots(2, 2, figsize=(12, 9))
    sweeps: list[tuple[str, Callable[[Run], bool], str]] = [
        ("n", lambda r: r.dim == dim0, f"clients n (m = {dim0:,} entries)"),
        ("dim", lambda r: r.n == n0, f"entries m (n = {n0})"),
    ]
    for row, field in enumerate(METRICS):
        for col, (attr, keep, xlabel) in enumerate(sweeps):
            ax = axes[row][col]
            for proto in protos:
                f = found.get((proto, field))
                for frac in fracs:
                    pts = _sweep_points(done, proto, frac, attr, keep)
                    if len(pts) < 2:
                        continue
                    xs = sorted(pts)
                    ys = [_med(getattr(r, field) for r in pts[x]) for x in xs]
                    c = colors[proto]
                    ax.plot(xs, ys, markers[frac], color=c, label=f"{proto}, {frac:.0%} dropout")
                    if f is not None:
                        ax.plot(xs, [f.predict(pts[x][0]) for x in xs], "-", color=c, lw=1)
                        two = [f.predict(pts[x][0], two=True) for x in xs]
                        ax.plot(xs, two, "--", color=c, lw=1, alpha=0.7)
            ax.set_yscale("log")
            if attr == "dim":
                ax.xaxis.set_major_formatter(lambda v, _pos: f"{v / 1e3:.0f}k")
            ax.set_xlabel(xlabel)
            ax.set_ylabel(f"{METRICS[field][0]} s (one round)")
            ax.grid(True, which="both", alpha=0.3)
    handles, _ = axes[0][0].get_legend_handles_labels()
    handles += [
        Line2D([], [], color="k", lw=1, label="model: one scale constant"),
        Line2D([], [], color="k", lw=1, ls="--", label="model + per-neighbour term"),
    ]
    axes[0][0].legend(handles=handles, fontsize=7)
    r2: dict[str, list[str]] = defaultdict(list)
    for (p, _), f in found.items():
        r2[p].append(f"{f.metric} {f.r2:.2f} / {f.r2_two:.2f}")
    fig.suptitle(
        "phloem, one round in process: measured (markers) vs operation-count model (lines, "
        "fitted per protocol and metric over both sweeps and dropout rates)\n"
        "R² one constant / with per-neighbour term: "
        + "; ".join(f"{p}: {', '.join(v)}" for p, v in r2.items()),
        fontsize=8,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _header(folder: Path) -> str:
    machine = folder / "machine.txt"
    text = machine.read_text().strip() if machine.exists() else "(no machine.txt)"
    return "```\n" + text + "\n```"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", type=Path, help="a results folder of run_series.sh/run_salvia.sh")
    ap.add_argument("--no-plot", action="store_true", help="do not write salvia.png")
    args = ap.parse_args()
    runs = read_runs(args.results)
    loads = [float(r) for r in _loads(args.results)]
    parts = [f"# Secure aggregation benchmark: {args.results.name}\n", _header(args.results)]
    if loads:
        parts.append(f"load1 before the runs: {min(loads):.1f}–{max(loads):.1f}")
    series = [r for r in runs if r.series == "series"]
    if series:
        reps = max(r.rep for r in series)
        parts += [
            f"\n## Flower 1.42 vs phloem ({reps} repeat(s); medians; ratios are Flower/phloem)\n",
            series_tables(series),
        ]
    v2 = [r for r in runs if r.series == "v2cost"]
    if v2:
        reps = max(r.rep for r in v2)
        parts += [
            f"\n## Wire format v2 against an older phloem ({reps} repeat(s); medians; "
            "ratios new/old, median of the per-repeat ratios and their range)\n",
            v2_cost_table(v2),
        ]
    salvia = [r for r in runs if r.series == "salvia"]
    if salvia:
        found = fits(salvia)
        parts += ["\n## Salvia-shaped sweeps, phloem only\n", salvia_table(salvia)]
        parts += ["\n### Operation-count model (see README.md)\n", fit_table(found)]
        if not args.no_plot:
            plot_salvia(salvia, found, args.results / "salvia.png")
            parts.append("\n![measured vs model](salvia.png)")
    text = "\n".join(parts) + "\n"
    (args.results / "summary.md").write_text(text)
    print(text)


def _loads(folder: Path) -> list[str]:
    with (folder / "runs.tsv").open() as f:
        return [row["load1"] for row in csv.DictReader(f, delimiter="\t") if row["load1"]]


if __name__ == "__main__":
    main()
