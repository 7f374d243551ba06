"""The configuration of ``phloem jigsaw simulate``: one TOML file, every key optional.

::

    [trace]            # a registered trace reader and its own keys (phloem jigsaw list)
    name = "pollux"
    load = "1"
    workload = 1
    [cluster]          # nodes x GPUs, memory, NIC, placement
    nodes = 16
    gpus_per_node = 4
    [policy]           # a registered policy and its own keys
    name = "jigsaw"
    base = "tiresias"
    [spb]              # which jobs accept SPB, and what SPB does to them
    fraction = 0.5
    [sim]              # the event loop
    round_s = 60
    [run]
    seed = 0
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from phloem.core import checks
from phloem.core.config import Picks, Section, read_config
from phloem.jigsaw.cluster import ClusterSpec
from phloem.jigsaw.registries import POLICIES, TRACES
from phloem.jigsaw.simulator import SimOptions
from phloem.jigsaw.spbmodel import PENALTY, SHALLOW_COMPUTE

__all__ = ["PolicyConfig", "RunOptions", "SimConfig", "SpbConfig", "TraceConfig", "load_config"]


@dataclass(frozen=True)
class TraceConfig(Section):
    """``[trace]``: the trace reader and its own keys (``phloem jigsaw list``)."""

    name: Annotated[str, Picks(TRACES, "params")] = "pollux"
    params: Any = None


@dataclass(frozen=True)
class PolicyConfig(Section):
    """``[policy]``: the scheduling policy and its own keys (``phloem jigsaw list``)."""

    name: Annotated[str, Picks(POLICIES, "params")] = "tiresias"
    params: Any = None


@dataclass(frozen=True)
class SpbConfig:
    """``[spb]``: ``fraction`` of the jobs that accept SPB (drawn with the run's seed; jobs the
    trace marks keep their mark); what SPB does to a job: ``shallow_compute`` (a shallow
    worker's step over a full one; or read at ``depth_fraction`` from a ``profile`` written by
    ``phloem spb profile``), ``penalty`` (extra work to the same accuracy), and
    ``shallow_fraction`` of an SPB job's GPUs that run shallow; ``always_shallow``: SPB jobs run
    their shallow workers whenever they run, under any policy (SPB without an SPB-aware
    scheduler: the slack idles unless the policy lends it)."""

    fraction: float = 0.0
    shallow_fraction: float = 0.5
    shallow_compute: float = SHALLOW_COMPUTE
    penalty: float = PENALTY
    profile: str | None = None
    depth_fraction: float = 0.5
    always_shallow: bool = False

    def __post_init__(self) -> None:
        checks.boolean("spb.always_shallow", self.always_shallow)
        checks.real("spb.fraction", self.fraction, low=0.0, high=1.0)
        checks.real("spb.shallow_fraction", self.shallow_fraction, low=0.0, high=1.0)
        checks.real("spb.shallow_compute", self.shallow_compute, low=0.0, high=1.0, low_open=True)
        checks.real("spb.penalty", self.penalty, low=0.0, high=10.0)
        checks.real("spb.depth_fraction", self.depth_fraction, low=0.0, high=1.0, low_open=True)


@dataclass(frozen=True)
class RunOptions:
    """``[run]``: ``seed`` (which jobs accept SPB), ``name`` and ``out_dir`` of the run folder,
    ``plots`` (JCT CDF, utilisation, a Gantt strip), ``progress`` (a progress bar)."""

    seed: int = 0
    name: str = "jigsaw"
    out_dir: str = "runs"
    plots: bool = True
    progress: bool = True

    def __post_init__(self) -> None:
        checks.integer("run.seed", self.seed, low=0, high=2**63 - 1)
        checks.boolean("run.plots", self.plots)
        checks.boolean("run.progress", self.progress)


@dataclass(frozen=True)
class SimConfig:
    """A whole ``phloem jigsaw simulate`` configuration (see the module docstring)."""

    trace: TraceConfig = field(default_factory=TraceConfig)
    cluster: ClusterSpec = field(default_factory=ClusterSpec)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    spb: SpbConfig = field(default_factory=SpbConfig)
    sim: SimOptions = field(default_factory=SimOptions)
    run: RunOptions = field(default_factory=RunOptions)


def load_config(path: str | Path | None, overrides: Sequence[str] = ()) -> SimConfig:
    """The config of ``path`` (``None``: the defaults) with ``--set`` ``overrides`` applied.

    Raises
    ------
    ConfigError
        Naming the field, for an unknown key, a bad value or an unreadable file.
    """
    return read_config(SimConfig, path, overrides)
