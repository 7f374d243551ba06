"""EF21-PP: EF21 with partial participation.

Fatkhullin, Sokolov, Gorbunov, Li, Richtarik. "EF21 with Bells & Whistles: Practical Algorithmic
Extensions of Modern Error Feedback." 2021 (arXiv:2110.03294), Algorithm EF21-PP.

Each round a cohort ``S^t`` is sampled (``[sampling]``); with ``x^{t+1} = x^t - gamma g^t``, a
participant sends ``c_i = C(grad f_i(x^{t+1}) - g_i^t)`` and sets ``g_i^{t+1} = g_i^t + c_i``;
every other client keeps ``g_i^{t+1} = g_i^t``; the server keeps
``g^{t+1} = sum_i w_i g_i^{t+1} = g^t + sum_{i in S^t} w_i c_i`` exactly. This is what
:class:`~phloem.fl.algorithms.ef21.EF21` runs under a partial-participation sampler; ``ef21_pp``
is the same method under the paper's name (with ``[sampling] scheme = "full"`` it is EF21).

Theory step: the EF21 theorem ``gamma <= 1 / (L + L_tilde sqrt(beta_q / theta_q))`` with the
constants of the partial-participation recursion, each client taking part with probability
``q`` (``algorithm.participation``; e.g. ``cohort_size / n``): a non-participant's error grows
by ``(1 + rho)`` and ``(1 + 1/rho) L_i^2 ||x^{t+1} - x^t||^2``, a participant's contracts as in
EF21, and ``rho = q theta / (2 (1 - q))`` gives ``theta_q = q theta / 2`` and
``beta_q = q beta + (1 - q) (1 + 1/rho)``; ``q = 1`` is EF21's step. This is the paper's
EF21-PP argument (Young's inequality with a free ``rho`` for absent clients) worked out here for
equal ``p_i = q`` with that ``rho``; its own theorem's constants may be tighter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from phloem.core.errors import ConfigError
from phloem.fl import theory
from phloem.fl.algorithms.ef21 import EF21
from phloem.fl.registries import ALGORITHMS

__all__ = ["EF21PP", "EF21PPParams"]


@dataclass(frozen=True)
class EF21PPParams:
    """``participation``: each client's probability ``q`` of taking part in a round, in (0, 1];
    used only by the theory step size (empty: no theory step)."""

    participation: float | None = None

    def __post_init__(self) -> None:
        q = self.participation
        if q is not None and not (isinstance(q, float | int) and 0.0 < q <= 1.0):
            raise ValueError(f"algorithm.participation must be in (0, 1], got {q}")


@ALGORITHMS.register
@dataclass(frozen=True)
class EF21PP(EF21):
    """EF21-PP: only the sampled clients update their ``g_i``; the others keep theirs."""

    name: ClassVar[str] = "ef21_pp"
    description: ClassVar[str] = "EF21, only sampled clients update g_i (Fatkhullin et al., 2021)"
    Params: ClassVar[type[EF21PPParams]] = EF21PPParams
    participation: float | None = None

    def __post_init__(self) -> None:
        EF21PPParams(self.participation)

    def theory_step(self, smoothness: theory.Smoothness, dim: int) -> float:
        if self.participation is None:
            raise ConfigError(
                "algorithm.participation",
                "ef21_pp's theory step needs each client's probability of taking part",
                ["a number in (0, 1], e.g. cohort_size / num_clients"],
            )
        alpha = theory.contraction(self.compressor, dim, self.name)
        return theory.ef21_pp_step(smoothness, alpha, float(self.participation))
