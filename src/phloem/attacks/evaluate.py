"""One attack against one deployed split: fit, reconstruct the private images, measure.

:func:`run_attack` is the unit every report, sweep and benchmark is made of. It wires the
parts the way a deployment and its attacker meet: the victim's edge part up to ``split``,
followed by the deployment's defences, behind an :class:`~phloem.attacks.threat.EdgeOracle`
that enforces the threat model; the attack fits on the attacker's images through the oracle;
the private images go through the same defended edge part once, and the attack reconstructs
them from those IRs alone. Every metric is computed per private image
(:mod:`phloem.attacks.metrics`), so means and confidence intervals can be taken over images or
over seeds.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from phloem.attacks.defences.base import Defence, DefendedEdge
from phloem.attacks.lpips import LPIPS
from phloem.attacks.methods.base import Attack
from phloem.attacks.threat import EdgeOracle, ThreatModel
from phloem.attacks.victims.base import SplitModel
from phloem.core.errors import ConfigError

__all__ = ["AttackResult", "mean_ci", "run_attack"]

#: images pushed through the edge part at a time
_BATCH = 256


@dataclass
class AttackResult:
    """What one attack achieved against one split.

    ``per_image`` maps a metric name to its value for every private image (aligned with
    ``reconstructions``); ``identification`` is the fraction of reconstructions whose nearest
    private image (pixel L2) is the original.
    """

    attack: str
    split: str
    reconstructions: torch.Tensor
    per_image: dict[str, torch.Tensor]
    identification: float
    queries: int
    fit_s: float
    reconstruct_s: float
    ir_shape: tuple[int, ...] = ()
    extra: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, float]:
        """Mean of every per-image metric, plus identification rate, queries and seconds."""
        out = {name: float(v.float().mean()) for name, v in self.per_image.items()}
        out.update(
            identification=self.identification,
            queries=float(self.queries),
            fit_s=self.fit_s,
            reconstruct_s=self.reconstruct_s,
        )
        return out


def mean_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """Mean and half-width of its two-sided Student-t confidence interval (``nan`` for one
    value)."""
    n = len(values)
    if n == 0:
        raise ConfigError("values", "no values to summarise")
    mean = sum(values) / n
    if n == 1:
        return mean, math.nan
    from scipy.stats import t as student

    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, float(student.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)


def _fresh_edge(victim: SplitModel, split: str, gen: torch.Generator) -> torch.nn.Module:
    """An untrained edge part of ``victim``'s architecture, initialised from ``gen`` (the
    global RNG is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=gen)))
        fresh = type(victim)(victim.params)
    return fresh.edge(split).eval()


def _irs(edge: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([edge(images[i : i + _BATCH]) for i in range(0, len(images), _BATCH)])


def run_attack(
    victim: SplitModel,
    split: str,
    attack: Attack,
    threat: ThreatModel,
    aux: torch.Tensor,
    private: torch.Tensor,
    *,
    defences: Sequence[Defence] = (),
    gen: torch.Generator,
    aux_labels: torch.Tensor | None = None,
    lpips: LPIPS | None = None,
) -> AttackResult:
    """Attack ``victim`` split at ``split`` (with ``defences``) and measure the result.

    Parameters
    ----------
    victim
        The trained victim (put in eval mode here).
    split, defences
        The deployment: where the model is cut, and what wraps the edge part.
    attack, threat
        The attacker; ``attack.access`` must include ``threat.access``.
    aux, private
        The attacker's images, and the private images it never sees (only their IRs).
    aux_labels
        The class labels of ``aux``, where the attacker's set has them.
    lpips
        When given (built from the user's weights), an ``lpips`` per-image metric too.
    gen
        All randomness of the defences and the attack.

    Raises
    ------
    ConfigError
        When the attack cannot work under the threat model, or the images do not have the
        victim's input shape.
    """
    from phloem.attacks import metrics

    if threat.access not in attack.access:
        allowed = sorted(a.value for a in attack.access)
        raise ConfigError(
            "threat.access", f"{attack.name!r} does not work {threat.access.value}", allowed
        )
    for what, images in (("aux", aux), ("private", private)):
        if tuple(images.shape[1:]) != victim.input_shape:
            raise ConfigError(
                what,
                f"images of shape {tuple(images.shape[1:])}, the victim takes {victim.input_shape}",
            )
    victim.eval()
    edge = DefendedEdge(victim.edge(split), defences, gen).eval()
    oracle = EdgeOracle(
        edge,
        threat,
        victim.input_shape,
        architecture=lambda g: _fresh_edge(victim, split, g),
        cloud=lambda: copy.deepcopy(victim.cloud(split)).eval(),
    )
    t0 = time.perf_counter()
    attack.fit(oracle, aux, gen, labels=aux_labels)
    fit_s = time.perf_counter() - t0
    irs = _irs(edge, private)
    t0 = time.perf_counter()
    recon = attack.reconstruct(irs).clamp(0.0, 1.0)
    reconstruct_s = time.perf_counter() - t0
    per_image = {
        "ssim": metrics.ssim(recon, private),
        "ssim_he": metrics.ssim(recon, private, window="uniform", size=7),
        "psnr": metrics.psnr(recon, private),
        "mse": metrics.mse(recon, private),
    }
    if lpips is not None:
        per_image["lpips"] = lpips.distances(recon, private)
    return AttackResult(
        attack=attack.name,
        split=split,
        reconstructions=recon,
        per_image=per_image,
        identification=float(metrics.identification_rate(recon, private)),
        queries=oracle.queries,
        fit_s=fit_s,
        reconstruct_s=reconstruct_s,
        ir_shape=tuple(irs.shape[1:]),
    )
