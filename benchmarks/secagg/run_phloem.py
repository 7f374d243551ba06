# ruff: noqa: E402  (the clock starts before the imports, like the Flower harness's process)
"""One phloem secure-aggregation round of the shared workload, with Flower's argument shape.

    python run_phloem.py N DIM NUM_SHARES THRESHOLD DROP_FRAC DROP_STAGE OUT.json
    python run_phloem.py --kt N NUM_SHARES THRESHOLD     # prints "int:K int:T" (for Flower)

The arguments of ``../shared/bench/secagg/bench_inproc.py``, so one configuration line drives
both tools:

- ``NUM_SHARES``: ``int:K`` (share holders per client, itself included), ``n`` (all clients),
  ``auto`` (phloem chooses ``(k, t)`` from ``n`` and the design targets:
  ``SecAggSettings(num_shares=None)``; then ``THRESHOLD`` must be ``auto`` too), or ``secure``
  (with ``THRESHOLD`` ``secure``: the SecAgg+ ``(k, t)`` that meet the targets and that Flower
  can run too, :func:`secure_plus_kt`).
- ``THRESHOLD``: ``int:T``, ``half`` (``k // 2 + 1``: ``n // 2 + 1`` when ``k = n``), ``auto``,
  or ``secure`` (with ``NUM_SHARES`` ``n``: the smallest threshold of the complete graph that
  meets the targets, ``choose_parameters(n, ..., complete=True)``).
- ``DROP_STAGE``: ``setup``, ``share_keys``, ``collect_masked_vectors`` (Flower's name of
  phloem's ``masked_input``; ``masked_input`` is accepted too), ``unmask`` or ``none``.
  Clients ``0 .. round(DROP_FRAC * N) - 1`` drop at that stage (none with ``none``).

The design targets are those of ``SecAggSettings()``: 10% dropout and 10% corrupt clients
tolerated, ``sigma`` 40 and ``eta`` 30 bits. A setting that meets both (``check_parameters``:
secure and correct) runs with the clients' default policy, the settings' own targets; one that
misses them (e.g. Flower's customary ``k = 11, t = 6`` at ``n = 100``) would be refused by
those clients, so it runs with the permissive ``ClientPolicy()`` and its JSON says
``"meets_target": false`` (with ``secure``, ``correct``, both ``log2`` failure
probabilities, ``"-inf"`` where the bad event is impossible, and the policy used).

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
import math
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
from phloem.secagg.graph import GraphParams, check_parameters, choose_parameters
from phloem.secagg.policy import ClientPolicy

USAGE = (
    "usage: run_phloem.py N DIM NUM_SHARES THRESHOLD DROP_FRAC DROP_STAGE OUT.json\n"
    "       run_phloem.py --kt N NUM_SHARES THRESHOLD"
)
_DEFAULTS = SecAggSettings()
#: the design targets (SecAggSettings' defaults): dropout, corrupt, sigma, eta
TARGETS = (_DEFAULTS.tolerate_dropout, _DEFAULTS.tolerate_corrupt, _DEFAULTS.sigma, _DEFAULTS.eta)
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


def _margin_bits(p: GraphParams) -> float:
    """The smaller of the two margins, in bits, below the security and correctness targets."""
    return min(-p.log2_security_failure - p.sigma, -p.log2_correctness_failure - p.eta)


def secure_plus_kt(n: int) -> tuple[int, int]:
    """SecAgg+ ``(k, t)`` for ``n`` clients that meet the design targets, ``k`` odd.

    ``choose_parameters(n, *TARGETS)`` (the smallest ``k``), except that Flower's SecAgg+
    cannot run an even ``k < n`` (its server quietly adds a neighbour that its clients were not
    told of, and every client fails at share_keys): then the smallest odd ``k`` above it, with
    the threshold that ``check_parameters`` accepts with the widest margin. ``n`` = 10: (7, 5)
    for the chosen (6, 4); ``n`` = 50: (19, 13) for (18, 12); 100 and 200 as chosen.
    """
    chosen = choose_parameters(n, *TARGETS)
    if chosen.complete or chosen.num_shares % 2 == 1:
        return chosen.num_shares, chosen.threshold
    for k in range(chosen.num_shares + 1, n, 2):
        checked = [check_parameters(n, k, t, *TARGETS) for t in range(k // 2 + 1, k + 1)]
        ok = [p for p in checked if p.secure and p.correct]
        if ok:
            best = max(ok, key=_margin_bits)
            return best.num_shares, best.threshold
    full = choose_parameters(n, *TARGETS, complete=True)
    return full.num_shares, full.threshold


def resolve_kt(n: int, num_shares: str, threshold: str) -> tuple[int, int | None]:
    """``(k, t)`` for the command-line words; ``t`` is ``None`` for ``auto auto`` (phloem's
    own choice, made by :meth:`SecAggSettings.parameters`)."""
    if num_shares == "auto" or threshold == "auto":
        if (num_shares, threshold) != ("auto", "auto"):
            raise ConfigError("THRESHOLD", "auto goes with auto: NUM_SHARES auto THRESHOLD auto")
        params = choose_parameters(n, *TARGETS)
        return params.num_shares, None
    if num_shares == "secure" or (num_shares, threshold) == ("n", "secure"):
        if num_shares == "n":
            return n, choose_parameters(n, *TARGETS, complete=True).threshold
        if threshold != "secure":
            raise ConfigError("THRESHOLD", "NUM_SHARES secure needs THRESHOLD secure")
        return secure_plus_kt(n)
    k = n if num_shares == "n" else _int_arg("NUM_SHARES", num_shares)
    if threshold == "half":
        return k, min(k, n) // 2 + 1
    if threshold == "secure":
        raise ConfigError("THRESHOLD", "secure needs NUM_SHARES n or secure")
    return k, _int_arg("THRESHOLD", threshold)


def settings_for(n: int, num_shares: str, threshold: str) -> SecAggSettings:
    """The :class:`SecAggSettings` that the command-line words ask for."""
    k, t = resolve_kt(n, num_shares, threshold)
    if t is None:
        return SecAggSettings(protocol=Protocol.SECAGG_PLUS, num_shares=None)
    protocol = Protocol.SECAGG if k >= n else Protocol.SECAGG_PLUS
    return SecAggSettings(protocol=protocol, num_shares=min(k, n), threshold=t)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _log2(x: float) -> float | str:
    return x if math.isfinite(x) else str(x)  # "-inf": strict JSON has no infinities


def target_fields(params: GraphParams) -> dict[str, Any]:
    """Whether ``params`` meet the design targets, for the JSON."""
    return {
        "meets_target": params.secure and params.correct,
        "secure": params.secure,
        "correct": params.correct,
        "log2_security_failure": _log2(params.log2_security_failure),
        "log2_correctness_failure": _log2(params.log2_correctness_failure),
        "targets": dict(zip(("dropout", "corrupt", "sigma", "eta"), TARGETS, strict=True)),
    }


def _print_kt(argv: list[str]) -> int:
    """``--kt N NUM_SHARES THRESHOLD``: the integers to give Flower for these words."""
    try:
        n = int(argv[0])
        k, t = resolve_kt(n, argv[1], argv[2])
        if t is None:
            t = choose_parameters(n, *TARGETS).threshold
    except (ConfigError, ValueError) as exc:
        print(f"run_phloem.py: {exc}\n{USAGE}", file=sys.stderr)
        return 2
    print(f"int:{min(k, n)} int:{t}")
    return 0


def main(argv: list[str]) -> int:
    if len(argv) == 4 and argv[0] == "--kt":
        return _print_kt(argv[1:])
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
        params = settings.parameters(n)  # e.g. t <= k/2, or k > n with an explicit threshold
    except (ConfigError, ValueError) as exc:
        print(f"run_phloem.py: {exc}\n{USAGE}", file=sys.stderr)
        return 2
    stage = STAGES[stage_s]
    target = target_fields(params)
    # Clients that hold the settings' targets would refuse a setting that misses them: measure
    # such a setting (to compare with Flower) with the permissive policy, and say so.
    policy = None if target["meets_target"] else ClientPolicy()
    target["client_policy"] = "settings' targets" if policy is None else repr(policy)
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
            policy=policy,
        )
    except ConfigError as exc:
        print(f"run_phloem.py: {exc}", file=sys.stderr)
        return 2
    bench_s = time.perf_counter() - t0
    out.update(res.as_dict())
    out.update(target)
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
        f"max_abs_err={res.max_abs_error:.3g} peak_rss_mb={res.peak_rss_mb:.0f} "
        f"meets_target={target['meets_target']}" + ("" if res.ok else f" abort={res.abort!r}"),
        flush=True,
    )
    return 0 if res.ok else 4


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
