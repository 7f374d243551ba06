"""Running simulations from a config: the library function behind ``phloem jigsaw simulate``
and ``phloem jigsaw compare``."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from phloem.core.config import to_dict, to_toml
from phloem.core.errors import ConfigError
from phloem.core.progress import progress_bar
from phloem.core.rundir import RunDir
from phloem.jigsaw.apps import Colocation, ThroughputModel, load_colocation, load_throughput
from phloem.jigsaw.config import PolicyConfig, SimConfig
from phloem.jigsaw.jobs import Trace
from phloem.jigsaw.metrics import Metrics, metrics
from phloem.jigsaw.policies.base import AlwaysShallow, SchedulingPolicy
from phloem.jigsaw.rates import RateModel
from phloem.jigsaw.registries import POLICIES, TRACES
from phloem.jigsaw.simulator import SimResult, simulate
from phloem.jigsaw.spbmodel import SpbFactors, shallow_compute_from_profile

__all__ = [
    "Comparison",
    "SimReport",
    "compare_policies",
    "demo_config",
    "load_trace",
    "run_simulation",
]


@dataclass(frozen=True)
class SimReport:
    """One simulation: its config, figures, raw result, where it was written, how long it took
    (``wall_s``: the event loop; ``total_s``: with reading the trace), and the trace rows
    skipped (by why)."""

    config: SimConfig
    metrics: Metrics
    result: SimResult
    run_dir: Path | None
    wall_s: float
    total_s: float
    skipped: dict[str, int]


@dataclass(frozen=True)
class Comparison:
    """Several policies on one trace and cluster."""

    reports: tuple[SimReport, ...]
    out_dir: Path | None


def _data_dir() -> Path | None:
    from phloem.data.paths import data_dir

    return data_dir()


def load_tables() -> tuple[ThroughputModel, Colocation]:
    """The bundled Pollux throughput tables and Gavel's co-location table."""
    return load_throughput(), load_colocation()


def load_trace(config: SimConfig, model: ThroughputModel, data_dir: Path | None) -> Trace:
    """The config's trace, with ``[spb] fraction`` of its jobs accepting SPB."""
    reader = TRACES.get(config.trace.name)(config.trace.params)
    trace = reader.read(data_dir, model)
    if config.spb.fraction > 0 and len(trace):
        rng = np.random.default_rng(config.run.seed)
        draw = rng.random(len(trace)) < config.spb.fraction
        trace = trace.with_spb([j.spb or bool(d) for j, d in zip(trace.jobs, draw, strict=True)])
    return trace


def spb_factors(config: SimConfig) -> SpbFactors:
    s = config.spb
    compute = s.shallow_compute
    if s.profile is not None:
        compute = shallow_compute_from_profile(Path(s.profile), s.depth_fraction)
    return SpbFactors(compute, s.penalty, s.shallow_fraction)


def run_simulation(
    config: SimConfig,
    *,
    data_dir: Path | None = None,
    write: bool = True,
    tables: tuple[ThroughputModel, Colocation] | None = None,
) -> SimReport:
    """Simulate ``config``; with ``write``, a run folder with the config, ``summary.json``
    (figures), ``jobs.csv`` (per job), ``timeline.csv`` and plots.

    Raises
    ------
    ConfigError, DataNotFoundError
        For a bad config or missing data, naming the field or the file.
    """
    t0 = time.perf_counter()
    data_dir = data_dir if data_dir is not None else _data_dir()
    model, coloc = tables if tables is not None else load_tables()
    trace = load_trace(config, model, data_dir)
    if not len(trace):
        raise ConfigError("trace", f"{trace.source or config.trace.name}: no jobs to simulate "
                          f"(skipped: {dict(trace.skipped) or 'none'})")  # fmt: skip
    rates = RateModel(
        trace.jobs, model, coloc, config.cluster, spb_factors(config),
        penalty=config.sim.penalty, overhead=config.sim.interleave_overhead,
        nic_contention=config.sim.nic_contention,
    )  # fmt: skip
    policy: SchedulingPolicy = POLICIES.get(config.policy.name)(config.policy.params)
    if config.spb.always_shallow:
        policy = AlwaysShallow(policy)
    t1 = time.perf_counter()
    with progress_bar(len(trace), f"{config.policy.name}", enabled=config.run.progress) as bar:
        last = [0]

        def tick(done: int, total: int) -> None:
            if done > last[0]:
                bar.advance(done - last[0])
                last[0] = done

        result = simulate(trace, config.cluster, policy, rates, config.sim, on_progress=tick)
    wall = time.perf_counter() - t1
    figures = metrics(result, rates)
    run_dir = None
    if write:
        rd = RunDir.create(Path(config.run.out_dir), config.run.name)
        rd.write_config(to_toml(to_dict(config)))
        _write(rd, config, figures, result, dict(trace.skipped), wall)
        run_dir = rd.path
    return SimReport(config, figures, result, run_dir, wall, time.perf_counter() - t0,
                     dict(trace.skipped))  # fmt: skip


def _write(
    rd: RunDir, config: SimConfig, m: Metrics, r: SimResult, skipped: dict[str, int], wall: float
) -> None:
    import csv

    rd.write_summary({
        "status": "finished" if m.finished == m.jobs else "unfinished jobs",
        "policy": config.policy.name, "trace": r.trace.source, "metrics": m.to_json(),
        "skipped_rows": skipped, "refused_jobs": r.refused, "simulation_wall_s": wall,
    })  # fmt: skip
    with (rd.path / "jobs.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["name", "app", "num_gpus", "spb", "arrival_s", "start_s", "finish_s",
                    "jct_s", "gpu_s", "useful_gpu_s", "restarts", "spb_s"])  # fmt: skip
        for i, j in enumerate(r.trace.jobs):
            w.writerow([j.name, j.app, j.num_gpus, int(j.spb), j.arrival_s, r.start_s[i],
                        r.finish_s[i], r.finish_s[i] - j.arrival_s, r.gpu_s[i],
                        r.useful_gpu_s[i], int(r.restarts[i]), r.spb_s[i]])  # fmt: skip
    with (rd.path / "timeline.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["time_s", "busy_gpus", "running_jobs", "waiting_jobs"])
        w.writerows(r.timeline)
    if config.run.plots:
        from phloem.jigsaw.plots import plot_run

        plot_run(r, rd.plots)


def compare_policies(
    config: SimConfig,
    policies: Sequence[str],
    *,
    data_dir: Path | None = None,
    out_dir: Path | None = None,
) -> Comparison:
    """``config`` under each of ``policies`` (each with its default keys, but the config's own
    ``[policy]`` when it names the same policy); with ``out_dir``, a JCT CDF of all and a
    ``comparison.json``."""
    data_dir = data_dir if data_dir is not None else _data_dir()
    tables = load_tables()
    reports = []
    for name in policies:
        POLICIES.get(name, field="--policy")
        pc = config.policy if name == config.policy.name else PolicyConfig(name)
        cfg = dataclasses.replace(
            config, policy=pc, run=dataclasses.replace(config.run, plots=False, progress=False)
        )
        reports.append(run_simulation(cfg, data_dir=data_dir, write=False, tables=tables))
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "comparison.json").write_text(json.dumps(
            {r.config.policy.name: r.metrics.to_json() for r in reports}, indent=2) + "\n",
            encoding="utf-8")  # fmt: skip
        from phloem.jigsaw.plots import plot_jct_cdf

        plot_jct_cdf([r.result for r in reports], out_dir / "jct_cdf.png")
    return Comparison(tuple(reports), out_dir)


def demo_config(out_dir: Path) -> SimConfig:
    """The demo: the bundled Pollux workload (160 jobs at 1x load) on 16 x 4 GPUs, half the
    jobs accepting SPB, the statistical-efficiency penalty on (no data folder needed)."""
    from phloem.jigsaw.config import load_config

    return load_config(None, ["spb.fraction=0.5", f"run.out_dir={str(out_dir)!r}",
                              "run.progress=false"])  # fmt: skip
