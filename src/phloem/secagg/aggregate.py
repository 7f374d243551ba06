"""One-call secure aggregation: secure sum and weighted mean of a whole round in process.

:func:`secure_sum` and :func:`secure_mean` plan a round from a
:class:`~phloem.secagg.settings.SecAggSettings` (what a deployment chooses: protocol, graph and
threshold or the tolerances to derive them from, modulus, quantisation, PRG, consistency check)
and run it through :func:`phloem.secagg.driver.run_round`. The FL simulator, the CLI benchmark
and the tests all go through here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from phloem.core.errors import ConfigError
from phloem.secagg.crypto.keys import RandomBytes
from phloem.secagg.driver import run_round
from phloem.secagg.messages import RoundConfig
from phloem.secagg.policy import ClientPolicy
from phloem.secagg.quantize import Quantizer
from phloem.secagg.settings import Protocol, SecAggSettings
from phloem.secagg.stages import DropoutSchedule
from phloem.secagg.transport import RoundReport

__all__ = ["Protocol", "SecAggSettings", "SecureMean", "secure_mean", "secure_sum"]


def secure_sum(
    inputs: Mapping[int, np.ndarray] | Callable[[int, RoundConfig], np.ndarray],
    ids: Sequence[int],
    dim: int,
    settings: SecAggSettings,
    *,
    gen: np.random.Generator,
    round_id: int = 1,
    dropout: DropoutSchedule | None = None,
    rand: Callable[[int], RandomBytes] | None = None,
    policy: ClientPolicy | None = None,
) -> RoundReport:
    """Exact sum in Z_(2^b) of the ring vectors of ``ids`` (those that reach the masked input).

    ``gen`` draws the neighbour graph; ``rand(client)`` the clients' secret randomness
    (``os.urandom`` when ``None``); ``dropout`` is ``{stage: clients}`` as in
    :func:`phloem.secagg.driver.run_round` (keys: :class:`~phloem.secagg.stages.Stage` members
    or their names). ``policy`` is every client's
    :class:`~phloem.secagg.policy.ClientPolicy`; by default the targets of ``settings``
    (:meth:`ClientPolicy.from_settings`), so explicit ``num_shares`` and ``threshold`` that
    miss the security target for ``tolerate_corrupt`` make the clients refuse the round.
    """
    config, graph, _ = settings.plan(ids, dim, round_id, gen)
    if policy is None:
        policy = ClientPolicy.from_settings(settings)
    return run_round(config, graph, inputs, dropout=dropout, rand=rand, policy=policy)


@dataclass(frozen=True)
class SecureMean:
    """A securely aggregated weighted mean."""

    mean: np.ndarray | None  # float64; None when the round aborted
    weight: float  # decoded sum of the included clients' weights
    included: tuple[int, ...]
    report: RoundReport
    quantizer: Quantizer

    @property
    def error_bound(self) -> float:
        """Deterministic bound on ``|mean - exact weighted mean|`` per entry (see quantize)."""
        q = self.quantizer
        if self.weight <= 0:
            return float("inf")
        return 1.5 * len(self.included) * q.max_weight * q.step / self.weight


def secure_mean(
    vectors: Mapping[int, np.ndarray],
    settings: SecAggSettings,
    *,
    weights: Mapping[int, float] | None = None,
    max_weight: float | None = None,
    gen: np.random.Generator,
    round_id: int = 1,
    dropout: DropoutSchedule | None = None,
    rand: Callable[[int], RandomBytes] | None = None,
    all_clients: Sequence[int] | None = None,
    policy: ClientPolicy | None = None,
) -> SecureMean:
    """Weighted mean of float vectors over the clients included by the protocol.

    Each client quantises ``w_i * clip(x_i) / max_weight`` with stochastic rounding (its own
    stream from ``gen``) and appends its quantised weight, so the server learns only
    ``sum w_i x_i`` and ``sum w_i`` over the included clients.

    ``all_clients`` (default: the keys of ``vectors``) are the round's participants; one
    without a vector must be scheduled in ``dropout`` to leave before its masked input.
    ``dropout`` is ``{stage: clients}`` (keys: :class:`~phloem.secagg.stages.Stage` members or
    their names, e.g. ``{"unmask": [3]}``); see :func:`phloem.secagg.driver.run_round`.
    ``policy`` is the clients' :class:`~phloem.secagg.policy.ClientPolicy` (see
    :func:`secure_sum`).
    """
    if not vectors:
        raise ConfigError("vectors", "no client vectors to aggregate")
    ids = sorted(all_clients) if all_clients is not None else sorted(vectors)
    # one vector fixes the length; the others are read when their client encodes (so a lazy
    # mapping keeps one vector in memory at a time)
    d = np.asarray(vectors[next(iter(vectors))]).size
    w = {u: 1.0 for u in vectors} if weights is None else {u: float(weights[u]) for u in vectors}
    wmax = max_weight if max_weight is not None else max(max(w.values()), 1e-300)
    quant = settings.quantizer(len(ids), wmax)
    seeds = gen.integers(0, 2**63, size=len(ids) + 1)
    rounding = {u: np.random.default_rng(int(s)) for u, s in zip(ids, seeds[1:], strict=True)}

    def encode(u: int, cfg: RoundConfig) -> np.ndarray:
        if u not in vectors:
            raise ConfigError("vectors", f"client {u} reached its masked input without a vector")
        x = np.asarray(vectors[u]).ravel()  # the quantiser widens float32 on the fly
        if x.size != d:
            raise ConfigError("vectors", f"client {u}'s vector has {x.size} entries, others {d}")
        return quant.encode(x, w[u], rounding[u])

    graph_gen = np.random.default_rng(int(seeds[0]))
    report = secure_sum(
        encode,
        ids,
        d + 1,
        settings,
        gen=graph_gen,
        round_id=round_id,
        dropout=dropout,
        rand=rand,
        policy=policy,
    )
    if report.result is None:
        return SecureMean(None, 0.0, (), report, quant)
    included = report.result.included
    total, weight = quant.decode_sum(report.result.total, len(included))
    mean = total / weight if weight > 0 else np.zeros(d)
    return SecureMean(mean, weight, included, report, quant)
