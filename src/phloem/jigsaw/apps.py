"""Per-application throughput and work: how fast a job runs on a placement, and how much it must
do.

Throughput comes from the Pollux artifact's measured step and synchronisation times
(Qiao et al., "Pollux: Co-adaptive Cluster Scheduling for Goodput-Optimized Deep Learning",
OSDI 2021; ``traces/<app>/placements.csv`` and ``scalability.csv``, bundled in ``tables/``):
for a placement (GPUs per node) and a per-GPU batch, one iteration takes ``step_time``
seconds, ``sync_time`` of which is gradient synchronisation. A measured placement is
interpolated in the per-GPU batch; any other (more nodes than measured together) is
interpolated over (nodes, replicas, per-GPU batch), and outside the measured hull takes the
nearest measurement. Nodes with more GPUs than the artifact's 4 synchronise as a measured node
of 4 does (a ring inside one node costs about the same for 4 or 8 GPUs) and compute at the
same per-GPU batch; more nodes than the 16 measured count as 16.

A job's work is counted in *samples at the application's initial batch size* (``epochs`` passes
over ``dataset_size`` samples; Pollux's ``max_epochs``). At a larger batch ``B`` each sample is
worth less (statistical efficiency); with a gradient noise scale ``B_noise`` it is worth
``(B_noise + M0) / (B_noise + B)`` (McCandlish et al., "An Empirical Model of Large-Batch
Training", 2018, the same form as Pollux's ``gain / scale``). The artifact's per-epoch gradient
statistics are not in the shared data, so ``noise_scale`` is one fitted multiple of ``M0``
for every application (:data:`NOISE`; ``None``: no loss).

Co-location slowdowns come from Gavel's measured table (Narayanan et al., "Heterogeneity-Aware
Cluster Scheduling Policies for Deep Learning Workloads", OSDI 2020;
``simulation_throughputs.json``, its V100 entries bundled): the throughput of a job type next
to another on one V100, over its throughput alone.
"""

from __future__ import annotations

import ast
import csv
import functools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from phloem.core.errors import DataNotFoundError

__all__ = [
    "APPLICATIONS",
    "AppSpec",
    "Colocation",
    "IterTime",
    "ThroughputModel",
    "load_colocation",
    "load_throughput",
]


@dataclass(frozen=True)
class AppSpec:
    """What one application must do, and which Gavel job type it behaves like when sharing.

    Attributes
    ----------
    name
        The Pollux trace folder's name.
    dataset_size, epochs
        One job's work: ``epochs`` passes over ``dataset_size`` samples.
    init_batch_size
        ``M0``, the batch size at which a sample counts fully.
    noise_scale
        Gradient noise scale ``B_noise`` (samples); ``None``: no large-batch loss.
    gavel_type
        The job type of Gavel's co-location table it is matched to.
    model_bytes
        Gradient bytes synchronised per iteration (float32 parameters).
    memory_gb
        GPU memory one worker needs (for co-location: a GPU fits jobs up to its memory).
    source
        Where the numbers come from.
    """

    name: str
    dataset_size: int
    epochs: float
    init_batch_size: int
    noise_scale: float | None
    gavel_type: str
    model_bytes: float
    memory_gb: float
    source: str

    @property
    def work(self) -> float:
        """Samples at the initial batch size one job needs."""
        return self.dataset_size * self.epochs

    def efficiency(self, batch_size: int) -> float:
        """What one sample at ``batch_size`` is worth against one at ``init_batch_size``."""
        if self.noise_scale is None or batch_size <= self.init_batch_size:
            return 1.0
        return (self.noise_scale + self.init_batch_size) / (self.noise_scale + batch_size)


#: Gradient noise scale of every application, in multiples of its initial batch size: the one
#: parameter fitted (on the Pollux workloads at 1x load, Tiresias's average JCT; the 0.5x, 1.5x
#: and 2x loads then check it; benchmarks/jigsaw/calibration), standing in for the per-epoch
#: gradient statistics of the Pollux artifact that are not in the shared data.
NOISE = 60.0

#: The six applications of the Pollux workloads (Pollux, Table 1; epochs: the artifact's
#: ``max_epochs``; data set sizes: the public data sets' training splits; model bytes: the
#: published parameter counts x 4; memory: a worker's footprint at the measured batch sizes,
#: an estimate, used only to refuse co-locations that would not fit).
APPLICATIONS: Mapping[str, AppSpec] = {
    a.name: a
    for a in (
        AppSpec("cifar10", 50_000, 100, 128, NOISE * 128, "ResNet-18 (batch size 128)", 44.7e6, 5.0,
                "ResNet-18 on CIFAR-10's 50,000 training images"),
        AppSpec("imagenet", 1_281_167, 90, 200, NOISE * 200, "ResNet-50 (batch size 64)",
                102.2e6, 11.0,
                "ResNet-50 on ImageNet-1k's 1,281,167 training images"),
        AppSpec("bert", 88_641, 2, 12, NOISE * 12, "Transformer (batch size 64)", 438.0e6, 12.0,
                "BERT fine-tuned on SQuAD 1.1's 88,641 training features"),
        AppSpec("ncf", 4_970_845, 10, 256, NOISE * 256, "Recommendation (batch size 2048)",
                21.2e6, 3.0,
                "NeuMF on MovieLens-1M: 994,169 training ratings with 4 negatives each"),
        AppSpec("deepspeech2", 7_924, 80, 20, NOISE * 20, "LM (batch size 20)", 152.0e6, 9.0,
                "DeepSpeech2 on CMU-ARCTIC: 7 speakers x 1,132 utterances (an estimate)"),
        AppSpec("yolov3", 16_551, 50, 8, NOISE * 8, "CycleGAN", 246.4e6, 12.0,
                "YOLOv3 on PASCAL VOC 2007+2012 trainval's 16,551 images"),
    )
}  # fmt: skip


@dataclass(frozen=True)
class IterTime:
    """One iteration of a data-parallel job on a placement.

    Attributes
    ----------
    compute_s
        Forward and backward (every accumulation step) on each GPU.
    sync_s
        Gradient synchronisation not hidden behind compute.
    samples
        Samples the whole job processes per iteration.
    """

    compute_s: float
    sync_s: float
    samples: int

    @property
    def total_s(self) -> float:
        return self.compute_s + self.sync_s

    @property
    def throughput(self) -> float:
        """Samples per second."""
        return self.samples / self.total_s


@dataclass
class _AppTable:
    local_bsz: dict[tuple[int, ...], np.ndarray]
    step: dict[tuple[int, ...], np.ndarray]
    sync: dict[tuple[int, ...], np.ndarray]
    points: np.ndarray  # (nodes, replicas, local_bsz)
    values: np.ndarray  # (step, sync)
    min_local: int
    max_local: int
    max_per_node: int
    max_nodes: int
    _interp: object = field(default=None, repr=False)
    _nearest: object = field(default=None, repr=False)

    def scattered(self, x: np.ndarray) -> np.ndarray:
        from scipy.interpolate import LinearNDInterpolator, NearestNDInterpolator

        if self._interp is None:
            self._interp = LinearNDInterpolator(self.points, self.values)
            self._nearest = NearestNDInterpolator(self.points, self.values)
        out: np.ndarray = np.asarray(self._interp(x))[0]  # type: ignore[operator]
        if not np.all(np.isfinite(out)):
            out = np.asarray(self._nearest(x))[0]  # type: ignore[operator]
        return out


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _load_table(folder: Path) -> _AppTable:
    rows = _read_csv(folder / "placements.csv")
    groups: dict[tuple[int, ...], dict[int, list[tuple[float, float]]]] = {}
    for r in rows:
        key = tuple(sorted(int(c) for c in r["placement"].strip()))
        lb = int(r["local_bsz"])
        groups.setdefault(key, {}).setdefault(lb, []).append(
            (float(r["step_time"]), float(r["sync_time"]))
        )
    local, step, sync = {}, {}, {}
    pts: list[tuple[float, float, float]] = []
    vals: list[tuple[float, float]] = []
    for key, by_bsz in groups.items():
        lbs = sorted(by_bsz)
        means = [np.mean(by_bsz[b], axis=0) for b in lbs]
        local[key] = np.array(lbs, dtype=float)
        step[key] = np.array([m[0] for m in means])
        sync[key] = np.array([m[1] for m in means])
        for b, m in zip(lbs, means, strict=True):
            pts.append((len(key), sum(key), b))
            vals.append((m[0], m[1]))
    for r in _read_csv(folder / "scalability.csv"):
        pts.append((float(r["num_nodes"]), float(r["num_replicas"]), float(r["local_bsz"])))
        vals.append((float(r["step_time"]), float(r["sync_time"])))
    all_lbs = [int(r["local_bsz"]) for r in rows]
    p = np.array(pts)
    return _AppTable(
        local, step, sync, p, np.array(vals), min(all_lbs), max(all_lbs),
        max(max(k) for k in local), int(p[:, 0].max()),
    )  # fmt: skip


class ThroughputModel:
    """Iteration times of every application on any placement, from the Pollux tables.

    Parameters
    ----------
    tables
        One measured table per application name.
    apps
        The applications' work specs (default: :data:`APPLICATIONS`).
    """

    def __init__(
        self, tables: Mapping[str, _AppTable], apps: Mapping[str, AppSpec] | None = None
    ) -> None:
        self._tables = dict(tables)
        self.apps = dict(APPLICATIONS if apps is None else apps)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self._tables))

    def max_local_bsz(self, app: str) -> int:
        return self._tables[app].max_local

    def min_local_bsz(self, app: str) -> int:
        return self._tables[app].min_local

    @functools.lru_cache(maxsize=65536)  # noqa: B019 (one model per simulation, kept alive)
    def iteration(self, app: str, placement: tuple[int, ...], batch_size: int) -> IterTime:
        """One iteration of ``app`` at global ``batch_size`` on ``placement`` (GPUs per node,
        any order, zeros ignored), with gradient accumulation where a GPU's share of the batch
        exceeds the largest measured per-GPU batch (Pollux's rule)."""
        t = self._tables[app]
        key = tuple(sorted(c for c in placement if c > 0))
        n = sum(key)
        if n < 1:
            raise ValueError("a placement needs at least one GPU")
        local = math.ceil(batch_size / n - 1e-8)
        accum = max(math.ceil(local / t.max_local - 1e-8) - 1, 0)
        atomic = math.ceil(local / (accum + 1) - 1e-8)
        x = float(min(max(atomic, t.min_local), t.max_local))
        # more GPUs on a node than measured (4): synchronisation as with the measured maximum
        # per node (a ring inside a node costs about the same for 4 or 8 GPUs), compute at the
        # same per-GPU batch
        probe = tuple(sorted(min(c, t.max_per_node) for c in key))
        if probe in t.local_bsz:
            lbs = t.local_bsz[probe]
            step = float(np.interp(x, lbs, t.step[probe]))
            sync = float(np.interp(x, lbs, t.sync[probe]))
        else:
            nodes = min(len(probe), t.max_nodes)
            reps = min(sum(probe), nodes * t.max_per_node)
            step, sync = (float(v) for v in t.scattered(np.array([[nodes, reps, x]])))
        sync = min(max(sync, 0.0), step)
        compute = (step - sync) * (accum + 1)
        return IterTime(compute, sync, n * atomic * (accum + 1))

    def solo_rate(self, app: str, placement: tuple[int, ...], batch_size: int) -> float:
        """Work (samples at the initial batch size) per second, running alone."""
        it = self.iteration(app, placement, batch_size)
        return it.throughput * self.apps[app].efficiency(batch_size)

    def default_batch(self, app: str, num_gpus: int) -> int:
        """A batch size for ``num_gpus`` GPUs when a trace gives none: the initial batch size,
        or the smallest measured per-GPU batch on every GPU if that is larger."""
        return max(self.apps[app].init_batch_size, self._tables[app].min_local * num_gpus)


#: the bundled copies of the measurement tables (see ``tables/NOTICE.md``)
TABLES = Path(__file__).parent / "tables"


def load_throughput(
    folder: Path | None = None, apps: Mapping[str, AppSpec] | None = None
) -> ThroughputModel:
    """The throughput model from ``<folder>/<app>/{placements,scalability}.csv`` (default: the
    bundled copy of the Pollux artifact's ``simulator/traces``).

    Raises
    ------
    DataNotFoundError
        Naming the folder, when an application's tables are missing.
    """
    specs = dict(APPLICATIONS if apps is None else apps)
    root = TABLES / "pollux" if folder is None else folder
    tables = {}
    for name in specs:
        sub = root / name
        if not (sub / "placements.csv").is_file() or not (sub / "scalability.csv").is_file():
            raise DataNotFoundError(
                f"the Pollux throughput tables of {name!r}",
                [sub],
                "Put the Pollux artifact's traces/<app>/{placements,scalability}.csv there.",
            )
        tables[name] = _load_table(sub)
    return ThroughputModel(tables, specs)


class Colocation:
    """Gavel's measured co-location table: ``factor(a, b)`` is the throughput of job type
    ``a`` sharing a GPU with ``b``, over ``a`` alone (0: the pair does not fit)."""

    def __init__(self, table: Mapping[tuple[str, str], float]) -> None:
        self._table = dict(table)

    def factor(self, a: str, b: str) -> float:
        return self._table.get((a, b), 0.0)

    @property
    def types(self) -> tuple[str, ...]:
        return tuple(sorted({a for a, _ in self._table}))


def load_colocation(path: Path | None = None) -> Colocation:
    """Gavel's single-GPU co-location factors: from the bundled V100 extract (default), or
    from a ``simulation_throughputs.json`` of Gavel's (its ``v100`` entries)."""
    if path is None:
        data = json.loads((TABLES / "gavel_v100_pairs.json").read_text(encoding="utf-8"))
        out = {
            (a, b): float(v) / float(row["alone"])
            for a, row in data["types"].items()
            for b, v in row["with"].items()
            if float(row["alone"]) > 0
        }
        return Colocation(out)
    if not path.is_file():
        raise DataNotFoundError(
            "Gavel's throughput table", [path], "Give the path of simulation_throughputs.json."
        )
    full = json.loads(path.read_text(encoding="utf-8"))["v100"]
    table: dict[tuple[str, str], float] = {}
    for key, row in full.items():
        a, scale = ast.literal_eval(key)
        if scale != 1:
            continue
        alone = float(row["null"])
        for other, pair in row.items():
            if other == "null":
                continue
            b, s = ast.literal_eval(other)
            if s == 1 and alone > 0:
                table[a, b] = float(pair[0]) / alone
    return Colocation(table)


def placement_of(gpus: Sequence[int], gpus_per_node: int) -> tuple[int, ...]:
    """GPUs per node (sorted) of a set of GPU ids."""
    counts: dict[int, int] = {}
    for g in gpus:
        counts[g // gpus_per_node] = counts.get(g // gpus_per_node, 0) + 1
    return tuple(sorted(counts.values()))
