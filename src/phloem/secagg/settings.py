"""What a secure-aggregation deployment chooses: one frozen, validated settings type.

:class:`SecAggSettings` is used everywhere phloem runs SecAgg or SecAgg+: the library
(:func:`phloem.secagg.aggregate.secure_mean`), the federated simulator's secure aggregators
(its field names are the keys of the ``[aggregation]`` config section), the command line
(``phloem secagg``) and the Flower workflow (:class:`phloem.secagg.flower.PhloemSecAggWorkflow`,
which adds only its Flower knobs). Each field has one meaning:

``num_shares`` -- **k**, the number of holders of each client's secret shares, *the client
itself included* (so ``k - 1`` neighbours). This is also what Flower's ``SecAggPlusWorkflow``
calls ``num_shares`` (the client keeps one share and sends one to each neighbour).

``tolerate_dropout`` / ``tolerate_corrupt`` -- the fractions of the round's clients that the
parameters must *tolerate* dropping out / being corrupt (design targets used to choose or check
``k`` and ``t``). How many clients actually drop in a simulation is not a setting of the
protocol; the simulator owns that rate.

Importing this module is cheap: it loads neither SciPy nor Flower nor torch (the methods that
plan a round import what they need when called).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, TypeVar

from phloem.core.errors import ConfigError
from phloem.secagg.crypto.prg import PrgKind

if TYPE_CHECKING:
    import numpy as np

    from phloem.secagg.graph import GraphParams
    from phloem.secagg.messages import RoundConfig
    from phloem.secagg.quantize import Quantizer

__all__ = ["PrgKind", "Protocol", "SecAggSettings"]

_E = TypeVar("_E", bound=StrEnum)


class Protocol(StrEnum):
    """Which graph the clients share secrets over."""

    SECAGG = "secagg"
    """Complete graph (Bonawitz et al., CCS 2017): every client shares with all others."""
    SECAGG_PLUS = "secagg+"
    """Sparse random graph (Bell et al., CCS 2020): cost grows with ``log n`` per client."""


#: how :meth:`SecAggSettings.parameters` renames the errors of :mod:`phloem.secagg.graph`
_GRAPH_FIELDS = {"dropout": "tolerate_dropout", "corrupt": "tolerate_corrupt"}


def _is_int(value: object) -> bool:
    """An integer (Python or numpy), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    """A real number (Python or numpy), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


@dataclass(frozen=True)
class SecAggSettings:
    """What a secure-aggregation deployment chooses.

    Attributes
    ----------
    protocol
        ``secagg`` (every client shares with every other) or ``secagg+`` (a random Harary
        graph of ``num_shares - 1`` neighbours).
    num_shares
        ``k``: holders of each client's shares, itself included (``k - 1`` neighbours), at
        least 2; a ``k`` of at least the number of clients means the complete graph. ``None``
        derives ``k`` and ``t`` from the tolerances and targets
        (:func:`phloem.secagg.graph.choose_parameters`). Ignored by ``secagg``, whose ``k`` is
        always the number of clients.
    threshold
        ``t``: shares that reconstruct a secret, ``2 <= t <= k``. ``None`` with a
        ``num_shares`` takes ``t = k // 2 + 1`` (the smallest ``t`` above ``k / 2``); with
        ``secagg+`` a threshold needs a ``num_shares``.
    tolerate_dropout, tolerate_corrupt
        Fractions in ``[0, 1)`` of the clients that the parameters must tolerate dropping out
        / being corrupt.
    sigma, eta
        Security and correctness targets in bits (failure probabilities ``2^-sigma`` and
        ``2^-eta``), positive.
    modulus_bits
        Ring Z_(2^b), ``1 <= b <= 64``; masked vectors travel at the width of ``b`` (uint32
        for 32).
    clip, levels
        Quantisation: inputs clipped to ``[-clip, clip]`` (``clip > 0``); ``levels=None``
        takes the finest grid that cannot overflow for the clients being summed, else at least
        1 level.
    prg
        ``aes-ctr`` or ``chacha20``.
    consistency_check
        Bonawitz round 3: clients sign the survivor set before unmasking (malicious server).

    Raises
    ------
    ConfigError
        At construction, naming the field and its allowed values, for any value out of range
        (NaN and infinities included) or a name outside an enum.
    """

    protocol: Protocol = Protocol.SECAGG_PLUS
    num_shares: int | None = None
    threshold: int | None = None
    tolerate_dropout: float = 0.1
    tolerate_corrupt: float = 0.1
    sigma: float = 40.0
    eta: float = 30.0
    modulus_bits: int = 32
    clip: float = 8.0
    levels: int | None = None
    prg: PrgKind = PrgKind.AES_CTR
    consistency_check: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "protocol", _member(Protocol, "protocol", self.protocol))
        object.__setattr__(self, "prg", _member(PrgKind, "prg", self.prg))
        self._check_graph()
        for name in ("tolerate_dropout", "tolerate_corrupt"):
            value = getattr(self, name)
            if not (_is_number(value) and math.isfinite(value) and 0.0 <= value < 1.0):
                raise ConfigError(name, f"{value!r} is not a fraction of the clients", ["[0, 1)"])
            object.__setattr__(self, name, float(value))
        for name in ("sigma", "eta", "clip"):
            value = getattr(self, name)
            if not (_is_number(value) and math.isfinite(value) and value > 0.0):
                raise ConfigError(name, f"{value!r} must be a positive finite number", ["> 0"])
            object.__setattr__(self, name, float(value))
        bits, levels = self.modulus_bits, self.levels
        if not (_is_int(bits) and 1 <= bits <= 64):
            raise ConfigError("modulus_bits", f"{bits!r} is out of range", ["1..64"])
        if levels is not None and not (_is_int(levels) and levels >= 1):
            raise ConfigError("levels", f"{levels!r} is not a number of levels", ["int >= 1", None])
        if not isinstance(self.consistency_check, bool):
            raise ConfigError("consistency_check", f"{self.consistency_check!r}", [True, False])
        for name in ("num_shares", "threshold", "modulus_bits", "levels"):  # numpy ints -> int
            if getattr(self, name) is not None:
                object.__setattr__(self, name, int(getattr(self, name)))

    def _check_graph(self) -> None:
        k, t = self.num_shares, self.threshold
        if k is not None and not (_is_int(k) and k >= 2):
            raise ConfigError("num_shares", f"{k!r} holders per client", ["int >= 2", None])
        if t is not None and not (_is_int(t) and t >= 2):
            raise ConfigError("threshold", f"{t!r} shares reconstruct nothing", ["int >= 2", None])
        if self.protocol is not Protocol.SECAGG_PLUS or t is None:
            return
        if k is None:
            raise ConfigError("num_shares", "a threshold needs num_shares with secagg+")
        if t > k:
            raise ConfigError("threshold", f"{t} is not a threshold for {k} holders", [f"2..{k}"])

    # -- planning a round -----------------------------------------------------------------
    def parameters(self, n: int) -> GraphParams:
        """``(k, t)`` for ``n`` clients and how well they meet the targets.

        Raises
        ------
        ConfigError
            When ``n`` clients cannot meet these settings (``clients`` below 2, ``n`` or a
            tolerance too large for so few clients, or a ``k``/``t`` pair ``n`` rules out).
        """
        from phloem.secagg.graph import check_parameters, choose_parameters

        if n < 2:
            raise ConfigError("clients", f"secure aggregation needs at least 2 clients, got {n}")
        targets = (self.tolerate_dropout, self.tolerate_corrupt, self.sigma, self.eta)
        k = self.num_shares
        try:
            if self.protocol is Protocol.SECAGG:
                k = n
                if self.threshold is None:
                    return choose_parameters(n, *targets, complete=True)
            if k is None:
                return choose_parameters(n, *targets)
            k = min(k, n)
            t = self.threshold if self.threshold is not None else k // 2 + 1
            return check_parameters(n, k, t, *targets)
        except ConfigError as exc:
            raise exc.with_field(_GRAPH_FIELDS.get(exc.field, exc.field)) from None

    def refusal(self, n: int) -> str | None:
        """Why clients holding this deployment's own targets
        (:meth:`ClientPolicy.from_settings <phloem.secagg.policy.ClientPolicy.from_settings>`)
        would refuse a round of ``n`` clients planned from these settings, or ``None``.

        Only given ``num_shares`` / ``threshold`` can be refused: chosen ones meet the targets
        at every client, the one with the most holders included.
        """
        from phloem.secagg.graph.search import most_holders
        from phloem.secagg.policy import ClientPolicy

        params = self.parameters(n)
        k, t = min(params.num_shares, n), params.threshold
        policy = ClientPolicy.from_settings(self)
        # the client with the most holders binds security; the others have k
        return policy.violation(n, most_holders(n, k), t) or policy.violation(n, k, t)

    def explain(self, n: int, mc_trials: int = 0, seed: int = 0) -> str:
        """:meth:`parameters` for ``n`` clients, explained in words (see
        :meth:`~phloem.secagg.graph.GraphParams.explain`); ``mc_trials > 0`` adds a Monte Carlo
        estimate of connectivity, drawn from ``numpy.random.default_rng(seed)``."""
        import numpy as np

        return self.parameters(n).explain(mc_trials, np.random.default_rng(seed))

    def quantizer(self, n_clients: int, max_weight: float = 1.0) -> Quantizer:
        """The float <-> ring mapping for a sum over ``n_clients``, checked for overflow."""
        from phloem.secagg.quantize import Quantizer

        if self.levels is None:
            return Quantizer.for_clients(n_clients, self.clip, self.modulus_bits, max_weight)
        q = Quantizer(self.clip, self.levels, self.modulus_bits, max_weight)
        q.check(n_clients)
        return q

    def round_config(self, round_id: int, dim: int, threshold: int) -> RoundConfig:
        """The public config of a round of ``dim`` ring entries (sent to every client)."""
        from phloem.secagg.messages import RoundConfig

        return RoundConfig(
            round_id=round_id,
            dim=dim,
            modulus_bits=self.modulus_bits,
            threshold=threshold,
            prg=self.prg.value,
            consistency_check=self.consistency_check,
        )

    def plan(
        self, ids: Sequence[int], dim: int, round_id: int, gen: np.random.Generator
    ) -> tuple[RoundConfig, dict[int, tuple[int, ...]], GraphParams]:
        """The round's public config, its neighbour graph (drawn from ``gen``), its parameters."""
        params = self.parameters(len(ids))
        config = self.round_config(round_id, dim, params.threshold)
        return config, params.neighbours(list(ids), gen), params


def _member(enum: type[_E], field: str, value: object) -> _E:
    """``value`` as a member of ``enum``; a :class:`ConfigError` listing the names otherwise."""
    try:
        return enum(value)  # type: ignore[arg-type]  # any value: a non-member raises
    except ValueError:
        raise ConfigError(field, f"unknown {value!r}", [m.value for m in enum]) from None
