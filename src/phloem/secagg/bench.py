"""The shared secure-aggregation benchmark workload and its measurement.

The workload is the one of ``../shared/bench/secagg`` (Flower's harness), so the two can be
compared entry for entry: client ``i`` holds a float32 vector of ``dim`` values drawn
U(-1, 1) from ``default_rng(1000 + i)``, with weight ``1 + (i mod 7)`` and ``max_weight`` 10;
the clients that drop are ``0 .. round(fraction * n) - 1``, at one stage.
"""

from __future__ import annotations

import resource
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from phloem.core.errors import ConfigError
from phloem.secagg.aggregate import SecureMean, secure_mean
from phloem.secagg.policy import ClientPolicy
from phloem.secagg.settings import SecAggSettings
from phloem.secagg.stages import Stage

__all__ = ["BenchResult", "client_vector", "client_weight", "run_bench"]

MAX_WEIGHT = 10.0


def client_vector(i: int, dim: int) -> np.ndarray:
    """Client ``i``'s input (as in the Flower harness)."""
    return np.random.default_rng(1000 + i).uniform(-1.0, 1.0, dim).astype(np.float32)


def client_weight(i: int) -> float:
    return float(1 + (i % 7))


class _LazyVectors(Mapping[int, np.ndarray]):
    """Client vectors made when asked for, as the Flower harness does (memory stays O(dim))."""

    def __init__(self, clients: int, dim: int) -> None:
        self.clients, self.dim = clients, dim

    def __getitem__(self, i: int) -> np.ndarray:
        if not 0 <= i < self.clients:
            raise KeyError(i)
        return client_vector(i, self.dim)

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.clients))

    def __len__(self) -> int:
        return self.clients


@dataclass(frozen=True)
class BenchResult:
    """One measured round."""

    ok: bool  # the round produced the mean, within its error bound of the exact one
    abort: str  # why not: the abort, or the error above its bound
    clients: int
    dim: int
    num_shares: int
    threshold: int
    dropped: int
    stage: str
    wall_s: float  # the whole in-process round (all clients one after another)
    client_s: float  # one client's compute over the round (mean per stage, summed)
    server_s: float
    up_bytes: float  # one client's upload over the round
    down_bytes: float
    max_abs_error: float  # against the exact weighted mean of the included clients
    error_bound: float
    peak_rss_mb: float
    stages: dict[str, dict[str, float | int]]

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _max_error(
    res: SecureMean, vectors: Mapping[int, np.ndarray], weights: dict[int, float]
) -> float:
    """``max |mean - exact weighted mean|`` over the included clients (NaN without a mean)."""
    if res.mean is None:
        return float("nan")
    exact = np.zeros(res.mean.size)
    for i in res.included:
        exact += weights[i] * vectors[i].astype(np.float64)
    exact /= sum(weights[i] for i in res.included)
    return float(np.max(np.abs(res.mean - exact)))


def run_bench(
    clients: int,
    dim: int,
    settings: SecAggSettings,
    *,
    dropout: float = 0.0,
    stage: Stage | str = Stage.MASKED_INPUT,
    seed: int = 0,
    policy: ClientPolicy | None = None,
) -> BenchResult:
    """Run and measure one round of the shared workload.

    ``dropout`` is the fraction of the clients that leave, all at ``stage`` (a
    :class:`~phloem.secagg.stages.Stage` or its name). ``policy`` is the clients'
    :class:`~phloem.secagg.policy.ClientPolicy` (by default the targets of ``settings``: the
    clients refuse given ``num_shares`` / ``threshold`` that miss them; pass
    ``ClientPolicy()`` to measure such a setting anyway, e.g. to compare with another tool).

    Raises
    ------
    ConfigError
        Naming ``stage`` or ``dropout`` when they are not a protocol stage / a fraction in
        ``[0, 1)``, or a field of ``settings`` that ``clients`` cannot meet.
    """
    at = Stage.parse(stage, field="stage")
    if not 0.0 <= dropout < 1.0:
        raise ConfigError("dropout", f"{dropout} must lie in [0, 1)")
    if dim < 1:
        raise ConfigError("dim", f"a vector needs at least one entry, got {dim}", [">= 1"])
    vectors = _LazyVectors(clients, dim)
    weights = {i: client_weight(i) for i in range(clients)}
    drop = list(range(round(dropout * clients)))
    params = settings.parameters(clients)
    res = secure_mean(
        vectors,
        settings,
        weights=weights,
        max_weight=MAX_WEIGHT,
        gen=np.random.default_rng(seed),
        dropout={at: drop} if drop else None,
        policy=policy,
    )
    rep = res.report
    err = _max_error(res, vectors, weights)
    totals = rep.totals()
    bound = res.error_bound if res.mean is not None else float("nan")
    within = res.mean is not None and err <= bound
    abort = str(rep.abort or "")
    if rep.ok and not within:
        abort = f"the mean is wrong: max error {err:.3g} above its bound {bound:.3g}"
    return BenchResult(
        ok=rep.ok and within,
        abort=abort,
        clients=clients,
        dim=dim,
        num_shares=params.num_shares,
        threshold=params.threshold,
        dropped=len(drop),
        stage=at.value if drop else "none",
        wall_s=rep.wall_s,
        client_s=totals["client_s"],
        server_s=totals["server_s"],
        up_bytes=totals["up_bytes"],
        down_bytes=totals["down_bytes"],
        max_abs_error=err,
        error_bound=bound,
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        stages={k.value: v.summary() for k, v in rep.stages.items()},
    )
