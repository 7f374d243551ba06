"""Client-level differential privacy: DP-FedAvg's Gaussian mechanism, ``[privacy]``.

McMahan, Ramage, Talwar, Zhang. "Learning Differentially Private Recurrent Language Models."
ICLR 2018, Algorithm 1 (DP-FedAvg) with its fixed-denominator estimator ``f_f``.

The mechanism. Each round every client joins the cohort independently with probability ``q``
(Poisson sampling, :class:`~phloem.fl.sampling.Poisson`; the accountant assumes it). Client
``i`` of the cohort ``S`` sends its update (for FedAvg/FedProx the model delta
``Delta_i = x_i - x``, after compression if one is configured) clipped to L2 norm ``C``,

    clip(Delta_i) = Delta_i * min(1, C / ||Delta_i||_2),

and the server steps along

    Delta = (sum_{i in S} clip(Delta_i) + N(0, (z C)^2 I)) / (q N),

with the FIXED denominator ``q N`` (the expected cohort weight with every client's weight 1,
the paper's ``f_f``): dividing by the realised ``|S|`` would make the sensitivity depend on the
cohort. Clients are weighted uniformly under DP (DP-FedAvg's bounded weights ``w_i = 1``); the
problem's own weights (proportional to sample counts) are ignored, and the experiment builder
warns when they differ. Adding or removing one client changes the sum by at most ``C`` in L2,
so each round is the Poisson-subsampled Gaussian mechanism with noise multiplier ``z``, and the
rounds compose: :class:`PrivacyLedger` asks a maintained accountant (Opacus's RDP accountant,
Mironov et al. 2019, or its PRV accountant, Gopi et al. 2021) for the ``epsilon`` spent after
each round at the configured ``delta``. A round whose cohort is empty still adds the noise
(the server steps along ``N(0, (z C)^2 I) / (q N)``), so whether a round was empty is not
revealed.

Central or distributed noise. With ``[aggregation] name = "plain"`` the server adds the noise
(a trusted server). With ``secagg``/``secagg+`` the server must not see any single update, so
each of the ``n`` sampled clients adds its share ``N(0, (z C)^2 / n I)`` before masking and the
securely aggregated sum carries ``N(0, (z C)^2 I)`` when all ``n`` survive. Two honest caveats:

- Dropouts: when only ``m < n`` clients' inputs reach the sum, the noise variance is
  ``(m / n) (z C)^2``; the ledger accounts that round with the effective multiplier
  ``z sqrt(m / n)`` (the ``dp_noise_multiplier`` column). This treats the realised noise level as
  public; it is an approximation, not a proof (``m`` and ``n`` depend on who was sampled).
- Discretisation: secure aggregation sums integers. Each client's (clipped + noise share)
  vector is clipped per coordinate to ``[-aggregation.clip, aggregation.clip]`` and
  stochastically rounded to a grid of step ``2 aggregation.clip / levels``
  (:mod:`phloem.secagg.quantize`), so the sum is the Gaussian sum plus a bounded, unbiased,
  data-dependent rounding error (``secagg_max_error``). The accountant assumes a continuous
  Gaussian; the guarantee holds for the continuous mechanism that the rounded one approximates,
  not exactly for the rounded one. The exact fix is the distributed discrete Gaussian (Kairouz,
  Liu, Steinke, ICML 2021), which phloem does not implement. The builder refuses an
  ``aggregation.clip`` below ``C (1 + 6 z)``, where the per-coordinate clip would cut noise.

A secure round that aborts releases nothing and is still counted as a round of the mechanism;
whether it aborted is not covered by the accountant. The ``dp_clipped`` column (how many updates
were clipped) is a simulator diagnostic that a deployment would not release.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, ClassVar, Self

import numpy as np
import torch

from phloem.core.errors import ConfigError, PhloemError
from phloem.core.history import Row
from phloem.fl.aggregation import (
    Aggregation,
    AggregationStats,
    DropoutModel,
    PlainAggregation,
    RoundOutcome,
    RoundPlan,
)
from phloem.fl.algorithms.base import Aggregate, Cohort, Message, U
from phloem.fl.algorithms.fedavg import ModelDelta

if TYPE_CHECKING:
    from phloem.fl.algorithms.base import Algorithm
    from phloem.fl.config import PrivacyConfig
    from phloem.fl.sampling import ClientSampler

__all__ = [
    "ACCOUNTANTS",
    "GaussianMechanism",
    "NoisyMean",
    "PrivacyLedger",
    "PrivateAggregation",
    "calibrate_noise",
    "clip_update",
    "make_private",
    "secure_noise_floor",
]

#: the accountants of ``privacy.accountant`` (Opacus's names)
ACCOUNTANTS = ("rdp", "prv")

#: history column: the noise multiplier a round's released sum actually carried
NOISE_COLUMN = "dp_noise_multiplier"


def clip_update(v: torch.Tensor, clip: float) -> tuple[torch.Tensor, bool]:
    """``v * min(1, clip / ||v||_2)`` (computed in float64), and whether it was scaled down.

    ``v`` itself is returned when its norm is at most ``clip``, so updates below the bound are
    unchanged bit for bit.
    """
    norm = float(torch.linalg.vector_norm(v.double()))
    if norm <= clip:
        return v, False
    return (v.double() * (clip / norm)).to(v.dtype), True


def secure_noise_floor(clip: float, noise_multiplier: float) -> float:
    """The smallest ``aggregation.clip`` that keeps a client's (clipped update + noise share)
    within the secure quantiser's range: ``C`` for the update plus 6 standard deviations of
    the largest share (a cohort of one, ``z C``)."""
    return clip * (1.0 + 6.0 * noise_multiplier)


@dataclass(frozen=True)
class GaussianMechanism:
    """DP-FedAvg's per-round mechanism (see the module docstring).

    Attributes
    ----------
    clip
        ``C``: each client's update is clipped to this L2 norm.
    noise_multiplier
        ``z``: the noise on the sum has standard deviation ``z C`` per coordinate.
    sample_rate
        ``q``: the Poisson sampling rate.
    num_clients
        ``N``: the number of clients (the denominator is ``q N``).
    """

    clip: float
    noise_multiplier: float
    sample_rate: float
    num_clients: int

    def __post_init__(self) -> None:
        if not (math.isfinite(self.clip) and self.clip > 0):
            raise ConfigError("privacy.clip", f"must be a positive finite number, got {self.clip}")
        z = self.noise_multiplier
        if not (math.isfinite(z) and z >= 0):
            raise ConfigError("privacy.noise_multiplier", f"must be finite and >= 0, got {z}")
        if not 0 < self.sample_rate <= 1:
            raise ConfigError("sampling.rate", f"must lie in (0, 1], got {self.sample_rate}")
        if self.num_clients < 1:
            raise ConfigError("data.num_clients", f"must be >= 1, got {self.num_clients}")

    @property
    def sigma(self) -> float:
        """``z C``: standard deviation of the noise on the sum, per coordinate."""
        return self.noise_multiplier * self.clip

    @property
    def denominator(self) -> float:
        """``q N``: the expected cohort weight, the fixed denominator of the mean."""
        return self.sample_rate * self.num_clients

    def noise(self, like: torch.Tensor, std: float, gen: np.random.Generator) -> torch.Tensor:
        """``N(0, std^2 I)`` shaped and typed like ``like`` (drawn in float64 from ``gen``)."""
        draw = gen.normal(0.0, std, size=like.numel()) if std > 0 else np.zeros(like.numel())
        return torch.from_numpy(draw).to(like.dtype).reshape(like.shape)


@dataclass(frozen=True)
class NoisyMean(Aggregate[U]):
    """The released noisy sum of the clipped uplinks, read as DP-FedAvg's ``f_f`` estimator.

    ``mean(field)`` is ``field(noisy_sum) / denominator`` (the fixed ``q N``); ``total(field)``
    is ``field(noisy_sum) * weight``, the sum with every client's objective weight ``1 / N``.
    """

    noisy_sum: U
    denominator: float
    weight: float

    def mean(self, field: Callable[[U], torch.Tensor]) -> torch.Tensor:
        return field(self.noisy_sum) / self.denominator

    def total(self, field: Callable[[U], torch.Tensor]) -> torch.Tensor:
        return field(self.noisy_sum) * self.weight


def _uniform(cohort: Cohort) -> Cohort:
    return Cohort(cohort.ids, np.ones(len(cohort.ids)), cohort.num_clients)


@dataclass(frozen=True)
class PrivateAggregation(Aggregation):
    """Wraps an aggregation with the Gaussian mechanism: clips every uplink, adds the noise
    (centrally for ``plain``, as per-client shares for a secure aggregation) and hands the
    algorithm the fixed-denominator :class:`NoisyMean`.

    Not registered: it is built by the experiment from ``[privacy]`` around the
    ``[aggregation]`` part.
    """

    name: ClassVar[str] = "private"
    description: ClassVar[str] = "DP-FedAvg's Gaussian mechanism (McMahan et al., ICLR 2018)"
    inner: Aggregation
    mechanism: GaussianMechanism
    dropout: DropoutModel | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "dropout", self.inner.dropout)

    @classmethod
    def from_params(cls, params: Any, *, dropout: DropoutModel | None) -> Self:
        raise TypeError("PrivateAggregation wraps an aggregation: PrivateAggregation(inner, mech)")

    @property
    def distributed(self) -> bool:
        """Whether the clients add the noise (any aggregation but ``plain``)."""
        return not isinstance(self.inner, PlainAggregation)

    def check_cohort(self, n: int) -> None:
        self.inner.check_cohort(n)

    def plan(self, cohort: Cohort, gen: np.random.Generator) -> RoundPlan:
        return self.inner.plan(_uniform(cohort), gen)

    def aggregate(
        self,
        plan: RoundPlan,
        messages: Sequence[Message[U]],
        round_: int,
        gen: np.random.Generator,
    ) -> RoundOutcome[U]:
        if not messages:  # nobody uploaded: :meth:`nothing_uploaded` releases the noise
            return self.inner.aggregate(plan, messages, round_, gen)
        mech = self.mechanism
        clipped: list[Message[U]] = []
        n_clipped = 0
        share = mech.sigma / math.sqrt(len(plan.cohort.ids)) if self.distributed else 0.0
        for m in messages:
            flat, cut = clip_update(m.uplink.flatten(), mech.clip)
            n_clipped += cut
            if self.distributed:  # the client's noise share, added before masking
                flat = flat + mech.noise(flat, share, gen)
            clipped.append(replace(m, uplink=m.uplink.unflatten(flat.numpy())))
        out = self.inner.aggregate(plan, clipped, round_, gen)
        inner_stats = out.stats.secure if out.stats is not None else None
        if out.aggregate is None:  # the protocol aborted: nothing is released
            return RoundOutcome(None, out.up_bits, self._stats(plan, inner_stats, n_clipped))
        total = out.aggregate.total(lambda u: u.flatten())
        if self.distributed:
            z_eff = mech.noise_multiplier * math.sqrt(len(messages) / len(plan.cohort.ids))
        else:
            total = total + mech.noise(total, mech.sigma, gen)
            z_eff = mech.noise_multiplier
        noisy = messages[0].uplink.unflatten(total.numpy())
        return RoundOutcome(
            NoisyMean(noisy, mech.denominator, 1.0 / mech.num_clients),
            out.up_bits,
            self._stats(plan, inner_stats, n_clipped, z_eff),
        )

    def nothing_uploaded(
        self, server: Any, outcome: RoundOutcome[Any], gen: np.random.Generator
    ) -> RoundOutcome[Any]:
        """A round in which no client uploaded still releases ``N(0, (z C)^2 I) / (q N)``
        (the server adds the noise), so an empty round looks like any other."""
        mech = self.mechanism
        noisy = ModelDelta(mech.noise(server.x, mech.sigma, gen))
        stats = outcome.stats if outcome.stats is not None else AggregationStats(0)
        stats = replace(stats, privacy=self._columns(mech.noise_multiplier, 0))
        agg = NoisyMean(noisy, mech.denominator, 1.0 / mech.num_clients)
        return RoundOutcome(agg, outcome.up_bits, stats)

    def _stats(
        self, plan: RoundPlan, secure: Any, n_clipped: int, z_eff: float | None = None
    ) -> AggregationStats:
        z = self.mechanism.noise_multiplier if z_eff is None else z_eff
        return AggregationStats(plan.dropped, secure, privacy=self._columns(z, n_clipped))

    @staticmethod
    def _columns(z: float, n_clipped: int) -> Row:
        return {NOISE_COLUMN: z, "dp_clipped": n_clipped}


class PrivacyLedger:
    """The privacy spent so far, from a maintained accountant (Opacus's RDP or PRV).

    Each round is one step of the Poisson-subsampled Gaussian mechanism with rate
    ``sample_rate`` and the multiplier the round's row records (``dp_noise_multiplier``);
    :meth:`record` steps the accountant and returns the round's ``epsilon`` at ``delta``.
    The ledger is the history itself, so :meth:`restore` rebuilds it on resume.

    Parameters
    ----------
    sample_rate, delta
        ``q`` and ``delta``.
    accountant
        ``"rdp"`` or ``"prv"`` (:func:`opacus.accountants.create_accountant`).
    record
        What the run record says of the privacy parameters.
    """

    def __init__(
        self, sample_rate: float, delta: float, accountant: str, record: dict[str, Any]
    ) -> None:
        if accountant not in ACCOUNTANTS:
            raise ConfigError("privacy.accountant", f"unknown: {accountant!r}", ACCOUNTANTS)
        create = _opacus().create_accountant
        self.sample_rate, self.delta, self.kind = sample_rate, delta, accountant
        self.accountant = create(mechanism=accountant)
        self.record_ = dict(record)
        self._rdp_cache: dict[tuple[float, float], np.ndarray] = {}

    def restore(self, rows: Sequence[Row]) -> None:
        """Step the accountant for every round already in ``rows`` (a resumed history).

        The rows are checked first, since a lower multiplier, or a round left out, would
        report less privacy spent than was: every round must record a finite multiplier in
        ``[0, z]`` (``z`` the configured one; rounds with dropouts under secure aggregation
        record less), and the ``epsilon`` the last round recorded must be the one the
        rebuilt ledger gives.

        Raises
        ------
        PhloemError
            Naming the first round whose privacy columns cannot be what the run wrote.
        """
        most = float(self.record_.get("noise_multiplier", math.inf))
        last: Row | None = None
        for r in rows:
            round_ = r.get("round")
            if not (isinstance(round_, int) and round_ >= 1):
                continue
            z = r.get(NOISE_COLUMN)
            ok = isinstance(z, float | int) and not isinstance(z, bool)
            if not ok or not 0.0 <= float(z) <= most * (1 + 1e-12):  # type: ignore[arg-type]
                raise self._tampered(round_, f"{NOISE_COLUMN} = {z!r}, not in [0, {most:g}]")
            self.step(float(z))  # type: ignore[arg-type]
            last = r
        if last is not None:
            eps, now = last.get("epsilon"), self.epsilon()
            if not isinstance(eps, float | int) or not math.isclose(
                float(eps), now, rel_tol=1e-9, abs_tol=1e-12
            ):
                raise self._tampered(last["round"], f"epsilon = {eps!r}, the ledger gives {now:g}")

    @staticmethod
    def _tampered(round_: object, what: str) -> PhloemError:
        return PhloemError(
            f"cannot resume a private run: round {round_} of history.jsonl records {what}; "
            "the privacy spent cannot be rebuilt from it (was the file edited?). Start a new run"
        )

    def step(self, noise_multiplier: float) -> None:
        """One round of the mechanism with this multiplier."""
        self.accountant.step(noise_multiplier=noise_multiplier, sample_rate=self.sample_rate)

    def record(self, row: Row) -> Row:
        """Step for the round ``row`` records; its ``epsilon`` column."""
        z = row.get(NOISE_COLUMN)
        if not isinstance(z, float | int):  # pragma: no cover - every private round has it
            raise AssertionError(f"a private round's row lacks {NOISE_COLUMN}")
        self.step(float(z))
        return {"epsilon": self.epsilon()}

    def epsilon(self) -> float:
        """``epsilon`` spent so far at ``delta`` (``inf`` when a round had no noise)."""
        history: list[tuple[float, float, int]] = self.accountant.history
        if not history:
            return 0.0
        if any(z <= 0 for z, _, _ in history):
            return math.inf
        if self.kind == "prv":
            return float(self.accountant.get_epsilon(self.delta))
        return self._rdp_epsilon(history)

    def _rdp_epsilon(self, history: list[tuple[float, float, int]]) -> float:
        """The RDP accountant's ``get_epsilon``, with each ``(z, q)``'s one-step RDP cached
        (``compute_rdp(steps=k)`` is ``k`` times it, so the sum is the same floats)."""
        rdp_mod = _opacus().rdp_analysis
        alphas = self.accountant.DEFAULT_ALPHAS
        parts = []
        for z, q, steps in history:
            one = self._rdp_cache.get((z, q))
            if one is None:
                one = rdp_mod.compute_rdp(q=q, noise_multiplier=z, steps=1, orders=alphas)
                self._rdp_cache[(z, q)] = one
            parts.append(one * steps)
        eps, _ = rdp_mod.get_privacy_spent(orders=alphas, rdp=sum(parts), delta=self.delta)
        return float(eps)

    def describe(self) -> dict[str, Any]:
        """The privacy parameters for the run record."""
        return {**self.record_, "accountant": self.kind, "delta": self.delta}


@dataclass(frozen=True)
class _Opacus:
    create_accountant: Any
    rdp_analysis: Any
    get_noise_multiplier: Any


def _opacus() -> _Opacus:
    """Opacus's accountants, imported on first use (importing opacus costs ~2 s)."""
    try:
        from opacus.accountants import create_accountant
        from opacus.accountants.analysis import rdp
        from opacus.accountants.utils import get_noise_multiplier
    except ImportError as e:
        raise ConfigError(
            "privacy.mechanism",
            f"'gaussian' needs Opacus's accountants ({e}); install phloem[dp] "
            "(pip install 'phloem[dp]')",
        ) from None
    return _Opacus(create_accountant, rdp, get_noise_multiplier)


def calibrate_noise(
    target_epsilon: float, delta: float, sample_rate: float, rounds: int, accountant: str
) -> float:
    """The noise multiplier that spends ``target_epsilon`` at ``delta`` in ``rounds`` rounds
    (Opacus's ``get_noise_multiplier``, a bisection on its accountant, to within 0.01).

    Raises
    ------
    ConfigError
        Naming ``privacy.target_epsilon`` when no multiplier reaches it, or ``run.rounds``
        when there are no rounds to spend it on.
    """
    if rounds < 1:
        raise ConfigError("run.rounds", "must be >= 1 to calibrate privacy.target_epsilon")
    try:
        z = _opacus().get_noise_multiplier(
            target_epsilon=target_epsilon,
            target_delta=delta,
            sample_rate=sample_rate,
            steps=rounds,
            accountant=accountant,
        )
    except ValueError as e:
        raise ConfigError("privacy.target_epsilon", str(e)) from None
    return float(z)


def make_private(
    cfg: PrivacyConfig,
    *,
    algorithm: Algorithm[Any, Any, Any],
    sampler: ClientSampler,
    aggregation: Aggregation,
    weights: np.ndarray,
    rounds: int,
) -> tuple[PrivateAggregation, PrivacyLedger]:
    """The ``[privacy]`` section around ``aggregation``, and the ledger that accounts it.

    Raises
    ------
    ConfigError
        Naming ``privacy.mechanism`` for an algorithm whose uplink is not a model delta,
        ``sampling.scheme`` for a sampler other than Poisson (the accountant assumes it),
        ``aggregation.name`` for an aggregation that is neither plain nor secure, and
        ``aggregation.clip`` when the secure quantiser would cut the noise.
    """
    from phloem.fl.algorithms.fedavg import FedAvg
    from phloem.fl.registries import ALGORITHMS
    from phloem.fl.sampling import Poisson
    from phloem.fl.secure import SecureAggregation

    if not isinstance(algorithm, FedAvg):
        supported = [n for n in ALGORITHMS.names() if issubclass(ALGORITHMS.get(n), FedAvg)]
        raise ConfigError(
            "privacy.mechanism",
            f"'gaussian' applies to algorithms whose uplink is a model delta; {algorithm.name} "
            "sends other state (its sensitivity is not the clipped delta's)",
            supported,
        )
    if not isinstance(sampler, Poisson):
        raise ConfigError(
            "sampling.scheme",
            f"privacy.mechanism = 'gaussian' needs Poisson client sampling (the accountant "
            f"assumes each client joins a round independently with probability q), got "
            f"{sampler.name!r}",
            ["poisson"],
        )
    if not isinstance(aggregation, PlainAggregation | SecureAggregation):
        raise ConfigError(
            "aggregation.name",
            f"privacy.mechanism = 'gaussian' works with plain or secure aggregation, "
            f"not {aggregation.name!r}",
            ["plain", "secagg", "secagg+"],
        )
    q, n = sampler.rate, len(weights)
    if cfg.noise_multiplier is not None:
        z, calibrated = cfg.noise_multiplier, False
    else:
        assert cfg.target_epsilon is not None  # PrivacyConfig checked exactly one is set
        z = calibrate_noise(cfg.target_epsilon, cfg.delta, q, rounds, cfg.accountant.value)
        calibrated = True
    mech = GaussianMechanism(cfg.clip, z, q, n)
    if isinstance(aggregation, SecureAggregation):
        floor = secure_noise_floor(cfg.clip, z)
        if aggregation.settings.clip < floor:
            raise ConfigError(
                "aggregation.clip",
                f"{aggregation.settings.clip:g} would clip the clients' noise shares; with "
                f"privacy.clip = {cfg.clip:g} and noise multiplier {z:g} set it to at least "
                f"{floor:g} (privacy.clip * (1 + 6 * noise_multiplier))",
            )
        if aggregation.dropout is not None and aggregation.dropout.rate > 0:
            warnings.warn(
                "privacy with secure aggregation and dropouts: a round whose survivors are m "
                "of n sampled clients carries noise multiplier z*sqrt(m/n), which the ledger "
                "accounts as public (an approximation, see phloem.fl.privacy)",
                UserWarning,
                stacklevel=2,
            )
    if not np.allclose(weights, weights[0]):
        warnings.warn(
            "privacy weighs every client uniformly (DP-FedAvg with bounded weights w_i = 1); "
            "the problem's per-client weights (proportional to sample counts) are ignored",
            UserWarning,
            stacklevel=2,
        )
    record = {
        "mechanism": cfg.mechanism.value,
        "clip": cfg.clip,
        "noise_multiplier": z,
        "noise_calibrated_to_epsilon": cfg.target_epsilon if calibrated else None,
        "sample_rate": q,
        "num_clients": n,
        "denominator": mech.denominator,
        "noise": "distributed" if isinstance(aggregation, SecureAggregation) else "central",
        "client_weights": "uniform",
    }
    ledger = PrivacyLedger(q, cfg.delta, cfg.accountant.value, record)
    return PrivateAggregation(aggregation, mech), ledger
