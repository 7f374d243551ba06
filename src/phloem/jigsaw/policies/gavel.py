"""Gavel-style max-min fairness (Narayanan et al., "Heterogeneity-Aware Cluster Scheduling
Policies for Deep Learning Workloads", OSDI 2020), on a cluster of one GPU type.

Each job ``j`` of ``n_j`` GPUs gets a time fraction ``X_j`` in [0, 1] from a linear program:
maximise ``t`` subject to ``X_j >= t`` and ``sum_j n_j X_j <= G`` (max-min fairness), then,
with every ``X_j >= t*`` held, maximise the GPUs used ``sum_j n_j X_j`` (one water-filling
step, so that jobs the fair share over-provisions give the rest to others). Gavel's round-based
mechanism realises the fractions: every ``round_s`` the jobs are ranked by ``X_j`` over the
fraction of their active time they have held GPUs, and admitted greedily in that order.
Both LPs are solved with scipy's HiGHS; the answer is cached per multiset of job sizes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from phloem.core import checks
from phloem.jigsaw.policies.base import (
    Allocation,
    ClusterState,
    JobStatus,
    SchedulingPolicy,
    keep_or_place,
)
from phloem.jigsaw.registries import POLICIES

__all__ = ["Gavel", "max_min_shares"]


@dataclass(frozen=True)
class GavelParams:
    """``round_s``: length of a scheduling round (Gavel's default: 6 minutes)."""

    round_s: float = 360.0

    def __post_init__(self) -> None:
        checks.real("round_s", self.round_s, low=1.0, high=86400.0)


def max_min_shares(sizes: tuple[int, ...], num_gpus: int) -> np.ndarray:
    """Max-min fair time fractions of jobs of ``sizes`` GPUs on ``num_gpus`` GPUs (the two LPs
    of the module docstring)."""
    from scipy.optimize import linprog

    n = np.asarray(sizes, dtype=float)
    k = len(n)
    if k == 0:
        return np.zeros(0)
    # variables: X_1..X_k, t ; maximise t
    c = np.zeros(k + 1)
    c[-1] = -1.0
    a_ub = np.zeros((k + 1, k + 1))
    a_ub[:k, :k] = -np.eye(k)
    a_ub[:k, -1] = 1.0  # t - X_j <= 0
    a_ub[k, :k] = n  # sum n_j X_j <= G
    b_ub = np.zeros(k + 1)
    b_ub[k] = num_gpus
    bounds = [(0.0, 1.0)] * k + [(0.0, 1.0)]
    r = linprog(c, A_ub=a_ub, b_ub=b_ub, bounds=bounds, method="highs")
    t = float(r.x[-1]) if r.success else 0.0
    # water-filling: keep X_j >= t, use as many GPUs as possible
    r2 = linprog(-n, A_ub=n[None, :], b_ub=[num_gpus], bounds=[(t * (1 - 1e-9), 1.0)] * k,
                 method="highs")  # fmt: skip
    x: np.ndarray = np.clip(np.asarray(r2.x if r2.success else np.full(k, t), dtype=float), 0, 1)
    return x


@POLICIES.register
class Gavel(SchedulingPolicy):
    """Max-min fair time shares (an LP), realised round by round."""

    name: ClassVar[str] = "gavel"
    description: ClassVar[str] = "Gavel max-min fairness: LP time shares, round-based"
    Params: ClassVar[type[GavelParams]] = GavelParams
    params: GavelParams

    def __init__(self, params: GavelParams | None = None) -> None:
        super().__init__(params)
        self._cache: dict[tuple[int, ...], dict[int, float]] = {}

    def reset(self) -> None:
        self._cache = {}

    def allocate(self, state: ClusterState) -> Allocation:
        if not state.jobs:
            return Allocation({})
        sizes = tuple(s.job.num_gpus for s in state.jobs)
        key = tuple(sorted(sizes))
        by_size = self._cache.get(key)
        if by_size is None:
            x = max_min_shares(key, state.cluster.num_gpus)
            by_size = {size: float(v) for size, v in zip(key, x, strict=True)}
            if len(self._cache) > 4096:
                self._cache.clear()
            self._cache[key] = by_size

        def priority(s: JobStatus) -> tuple[float, float, int]:
            share = by_size[s.job.num_gpus]
            got = s.attained_s / max(state.now_s - s.job.arrival_s, 1e-9)
            return (-(share / got) if got > 0 else -np.inf, s.job.arrival_s, s.index)

        order = sorted(state.jobs, key=priority)
        gpus = keep_or_place(state, order, backfill=True)
        return Allocation(gpus, review_at_s=state.now_s + self.params.round_s)
