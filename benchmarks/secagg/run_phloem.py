# ruff: noqa: E402  (the clock starts before the imports, like the Flower harness's process)
"""One phloem secure-aggregation round of the shared workload, with Flower's argument shape.

    python run_phloem.py N DIM NUM_SHARES THRESHOLD DROP_FRAC DROP_STAGE OUT.json

The arguments of ``../shared/bench/secagg/bench_inproc.py``, so one configuration line drives
both tools:

- ``NUM_SHARES``: ``int:K`` (share holders per client, itself included), ``n`` (all clients),
  or ``auto`` (phloem chooses ``(k, t)`` from ``n`` and the design tolerances:
  ``SecAggSettings(num_shares=None)``; then ``THRESHOLD`` must be ``auto`` too).
- ``THRESHOLD``: ``int:T``, ``half`` (``k // 2 + 1``: ``n // 2 + 1`` when ``k = n``), or ``auto``.
- ``DROP_STAGE``: ``setup``, ``share_keys``, ``collect_masked_vectors`` (Flower's name of
  phloem's ``masked_input``; ``masked_input`` is accepted too), ``unmask`` or ``none``.
  Clients ``0 .. round(DROP_FRAC * N) - 1`` drop at that stage (none with ``none``).

The protocol is SecAgg (complete graph) when ``k >= N`` and SecAgg+ otherwise. One round runs
in this fresh process through :func:`phloem.secagg.bench.run_bench` (all clients one after
another, every message through the wire encoding); ``OUT.json`` gets the
:class:`~phloem.secagg.bench.BenchResult` fields (``peak_rss_mb`` is the process's
``ru_maxrss``) plus its RSS before the round, and the command line. Exit status 0 when the
round produced the mean within its error bound, 4 when it aborted or the mean was wrong, 2 on a
bad argument or an invalid ``(k, t)``.
``PHLOEM_BENCH_SEED`` (default 0) seeds the neighbour graph and the stochastic rounding; the
clients' keys and seeds come from ``os.urandom``.
"""

from __future__ import annotations

import time

T_START = time.perf_counter()

import json
import os
import platform
import resource
import sys
from pathlib import Path
from typing import Any

import numpy as np

from phloem.core.errors import ConfigError
from phloem.secagg import Protocol, SecAggSettings, Stage
from phloem.secagg.bench import run_bench

USAGE = "usage: run_phloem.py N DIM NUM_SHARES THRESHOLD DROP_FRAC DROP_STAGE OUT.json"
#: DROP_STAGE words (phloem's stage names and Flower's) -> the stage; "none": no dropout
STAGES: dict[str, Stage | None] = {
    "setup": Stage.SETUP,
    "share_keys": Stage.SHARE_KEYS,
    "collect_masked_vectors": Stage.MASKED_INPUT,
    "masked_input": Stage.MASKED_INPUT,
    "unmask": Stage.UNMASK,
    "none": None,
}


def _int_arg(name: str, text: str) -> int:
    kind, _, value = text.partition(":")
    if kind != "int" or not value.lstrip("-").isdigit():
        raise ConfigError(name, f"{text!r} is not written int:K")
    return int(value)


def settings_for(n: int, num_shares: str, threshold: str) -> SecAggSettings:
    """The :class:`SecAggSettings` that the command-line words ask for."""
    if num_shares == "auto":
        if threshold != "auto":
            raise ConfigError("THRESHOLD", "with NUM_SHARES auto, THRESHOLD must be auto too")
        return SecAggSettings(protocol=Protocol.SECAGG_PLUS, num_shares=None)
    k = n if num_shares == "n" else _int_arg("NUM_SHARES", num_shares)
    if threshold == "half":
        t = min(k, n) // 2 + 1
    elif threshold == "auto":
        raise ConfigError("THRESHOLD", "auto needs NUM_SHARES auto")
    else:
        t = _int_arg("THRESHOLD", threshold)
    protocol = Protocol.SECAGG if k >= n else Protocol.SECAGG_PLUS
    return SecAggSettings(protocol=protocol, num_shares=min(k, n), threshold=t)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str]) -> int:
    if len(argv) != 7:
        print(USAGE, file=sys.stderr)
        return 2
    n_s, dim_s, shares_s, thr_s, frac_s, stage_s, out_s = argv
    out: dict[str, Any] = {"tool": "phloem", "argv": argv}
    try:
        n, dim, frac = int(n_s), int(dim_s), float(frac_s)
        if stage_s not in STAGES:
            raise ConfigError("DROP_STAGE", f"unknown {stage_s!r}", list(STAGES))
        settings = settings_for(n, shares_s, thr_s)
    except (ConfigError, ValueError) as exc:
        print(f"run_phloem.py: {exc}\n{USAGE}", file=sys.stderr)
        return 2
    stage = STAGES[stage_s]
    rss_before = _rss_mb()
    t0 = time.perf_counter()
    try:
        res = run_bench(
            n,
            dim,
            settings,
            dropout=frac if stage is not None else 0.0,
            stage=stage or Stage.MASKED_INPUT,
            seed=int(os.environ.get("PHLOEM_BENCH_SEED", "0")),
        )
    except ConfigError as exc:  # e.g. t <= k/2, or k > n with an explicit threshold
        print(f"run_phloem.py: {exc}", file=sys.stderr)
        return 2
    bench_s = time.perf_counter() - t0
    out.update(res.as_dict())
    out.update(
        protocol=str(settings.protocol),
        bench_call_s=bench_s,  # run_bench as a whole: making the inputs + the round + checking
        process_s=time.perf_counter() - T_START,
        rss_before_round_mb=rss_before,
        python=platform.python_version(),
        numpy=np.__version__,
    )
    Path(out_s).write_text(json.dumps(out, indent=1))
    print(
        f"RESULT phloem {'ok' if res.ok else 'FAILED'} n={n} dim={dim} "
        f"protocol={settings.protocol} k={res.num_shares} t={res.threshold} "
        f"dropped={res.dropped}@{res.stage} round_s={res.wall_s:.3f} client_s={res.client_s:.4f} "
        f"server_s={res.server_s:.4f} up_B={res.up_bytes:.0f} "
        f"max_abs_err={res.max_abs_error:.3g} peak_rss_mb={res.peak_rss_mb:.0f}"
        + ("" if res.ok else f" abort={res.abort!r}"),
        flush=True,
    )
    return 0 if res.ok else 4


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
