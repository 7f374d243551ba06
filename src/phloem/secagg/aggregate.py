"""One-call secure aggregation: settings, round planning, secure sum and weighted mean.

:class:`SecAggSettings` gathers what a deployment chooses (protocol, graph and threshold or
the tolerances to derive them from, modulus, quantisation, PRG, consistency check);
:func:`secure_sum` and :func:`secure_mean` run a whole round in process through
:func:`phloem.secagg.driver.run_round`. The FL simulator, the CLI benchmark and the tests all
go through here.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from phloem.core.errors import ConfigError
from phloem.secagg.crypto.keys import RandomBytes
from phloem.secagg.crypto.prg import PrgKind
from phloem.secagg.driver import RoundReport, run_round
from phloem.secagg.graph import GraphParams, check_parameters, choose_parameters
from phloem.secagg.messages import RoundConfig
from phloem.secagg.quantize import Quantizer

__all__ = ["Protocol", "SecAggSettings", "SecureMean", "secure_mean", "secure_sum"]


class Protocol(StrEnum):
    """Which graph the clients share secrets over."""

    SECAGG = "secagg"
    """Complete graph (Bonawitz et al., CCS 2017): every client shares with all others."""
    SECAGG_PLUS = "secagg+"
    """Sparse random graph (Bell et al., CCS 2020): cost grows with ``log n`` per client."""


@dataclass(frozen=True)
class SecAggSettings:
    """What a secure-aggregation deployment chooses.

    Attributes
    ----------
    protocol
        ``secagg`` (every client shares with every other) or ``secagg+`` (a random Harary
        graph of ``num_shares - 1`` neighbours).
    num_shares, threshold
        ``k`` (holders per client, itself included) and ``t``. ``None`` derives them from
        ``n``, ``dropout``, ``corrupt``, ``sigma``, ``eta`` (:func:`graph.choose_parameters`);
        a ``num_shares`` without ``threshold`` takes ``t = k // 2 + 1``.
    dropout, corrupt
        Fractions of clients the parameters must tolerate dropping out / being corrupt.
    sigma, eta
        Security and correctness targets in bits.
    modulus_bits
        Ring Z_(2^b); masked vectors travel at the width of ``b`` (uint32 for 32).
    clip, levels
        Quantisation: inputs clipped to ``[-clip, clip]``; ``levels=None`` takes the finest
        grid that cannot overflow for the clients being summed.
    prg
        ``aes-ctr`` or ``chacha20``.
    consistency_check
        Bonawitz round 3: clients sign the survivor set before unmasking (malicious server).
    """

    protocol: Protocol = Protocol.SECAGG_PLUS
    num_shares: int | None = None
    threshold: int | None = None
    dropout: float = 0.1
    corrupt: float = 0.1
    sigma: float = 40.0
    eta: float = 30.0
    modulus_bits: int = 32
    clip: float = 8.0
    levels: int | None = None
    prg: PrgKind = PrgKind.AES_CTR
    consistency_check: bool = False

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "protocol", Protocol(self.protocol))
        except ValueError:
            raise ConfigError("protocol", f"unknown {self.protocol!r}", list(Protocol)) from None
        try:
            object.__setattr__(self, "prg", PrgKind(self.prg))
        except ValueError:
            raise ConfigError("prg", f"unknown {self.prg!r}", list(PrgKind)) from None
        if (
            self.threshold is not None
            and self.num_shares is None
            and self.protocol is Protocol.SECAGG_PLUS
        ):
            raise ConfigError("num_shares", "a threshold needs num_shares with secagg+")

    def parameters(self, n: int) -> GraphParams:
        """``(k, t)`` for ``n`` clients and how well they meet the targets."""
        if n < 2:
            raise ConfigError("clients", f"secure aggregation needs at least 2 clients, got {n}")
        k = self.num_shares
        if self.protocol is Protocol.SECAGG:
            k = n
            if self.threshold is None:
                return choose_parameters(
                    n, self.dropout, self.corrupt, self.sigma, self.eta, complete=True
                )
        if k is None:
            return choose_parameters(n, self.dropout, self.corrupt, self.sigma, self.eta)
        k = min(k, n)
        t = self.threshold if self.threshold is not None else k // 2 + 1
        return check_parameters(n, k, t, self.dropout, self.corrupt, self.sigma, self.eta)

    def plan(
        self, ids: Sequence[int], dim: int, round_id: int, gen: np.random.Generator
    ) -> tuple[RoundConfig, dict[int, tuple[int, ...]], GraphParams]:
        """The round's public config, its neighbour graph, and the parameter report."""
        params = self.parameters(len(ids))
        config = RoundConfig(
            round_id=round_id,
            dim=dim,
            modulus_bits=self.modulus_bits,
            threshold=params.threshold,
            prg=str(self.prg),
            consistency_check=self.consistency_check,
        )
        return config, params.neighbours(list(ids), gen), params

    def quantizer(self, n_clients: int, max_weight: float = 1.0) -> Quantizer:
        """The float <-> ring mapping for a sum over ``n_clients``, checked for overflow."""
        if self.levels is None:
            return Quantizer.for_clients(n_clients, self.clip, self.modulus_bits, max_weight)
        q = Quantizer(self.clip, self.levels, self.modulus_bits, max_weight)
        q.check(n_clients)
        return q


def secure_sum(
    inputs: Mapping[int, np.ndarray] | Callable[[int, RoundConfig], np.ndarray],
    ids: Sequence[int],
    dim: int,
    settings: SecAggSettings,
    *,
    gen: np.random.Generator,
    round_id: int = 1,
    dropout: Mapping[str, Collection[int]] | None = None,
    rand: Callable[[int], RandomBytes] | None = None,
) -> RoundReport:
    """Exact sum in Z_(2^b) of the ring vectors of ``ids`` (those that reach the masked input).

    ``gen`` draws the neighbour graph; ``rand(client)`` the clients' secret randomness
    (``os.urandom`` when ``None``).
    """
    config, graph, _ = settings.plan(ids, dim, round_id, gen)
    return run_round(config, graph, inputs, dropout=dropout, rand=rand)


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
    dropout: Mapping[str, Collection[int]] | None = None,
    rand: Callable[[int], RandomBytes] | None = None,
    all_clients: Sequence[int] | None = None,
) -> SecureMean:
    """Weighted mean of float vectors over the clients included by the protocol.

    Each client quantises ``w_i * clip(x_i) / max_weight`` with stochastic rounding (its own
    stream from ``gen``) and appends its quantised weight, so the server learns only
    ``sum w_i x_i`` and ``sum w_i`` over the included clients.

    ``all_clients`` (default: the keys of ``vectors``) are the round's participants; one
    without a vector must be scheduled in ``dropout`` to leave before its masked input.
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
    )
    if report.result is None:
        return SecureMean(None, 0.0, (), report, quant)
    included = report.result.included
    total, weight = quant.decode_sum(report.result.total, len(included))
    mean = total / weight if weight > 0 else np.zeros(d)
    return SecureMean(mean, weight, included, report, quant)
