"""``nopeek``: train the victim so that its IR is distance-decorrelated from its input.

P. Vepakomma, A. Singh, O. Gupta, R. Raskar. "NoPeek: Information leakage reduction to share
activations in distributed deep learning". ICDMW 2020 (arXiv:2008.09161).

NoPeek adds ``weight * dCor(x, f_edge(x))`` to the victim's training loss, computed on each
batch; at inference the IR is sent unchanged (``apply`` is the identity). ``dCor`` is the
*sample* distance correlation of Székely, Rizzo & Bakirov (Ann. Statist. 2007), the biased
(V-statistic) estimator, as NoPeek uses it: with ``a_ij = ||x_i - x_j||``, ``b_ij = ||z_i -
z_j||`` (rows flattened), ``A``, ``B`` their double-centred matrices,

    dCov^2(x, z) = mean_ij A_ij B_ij,    dCor(x, z) = sqrt(dCov^2(x, z) / sqrt(dCov^2(x, x)
    dCov^2(z, z)))

in ``[0, 1]``, 1 for ``z = x`` (or any isometry of it) and 0 when either side is constant. The
biased estimator is positive for independent samples, so the penalty never reaches 0: small for
low-dimensional data (about 0.15 for independent uniform 2-D samples at ``N = 1024``) but near
1 for high-dimensional ones at batch sizes (about 0.97 for independent 3x32x32 inputs and a
512-dimensional IR at ``N = 256``; Székely & Rizzo, "The distance correlation t-test of
independence in high dimension", J. Multivariate Anal. 2013). Only its changes, not its level,
mean something; the bias-corrected estimator of that paper would fix the level but can be
negative and is not NoPeek's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from phloem.attacks.defences.base import Defence
from phloem.attacks.registries import DEFENCES
from phloem.core import checks as _checks

__all__ = ["NoPeek", "NoPeekParams", "distance_correlation"]


@dataclass(frozen=True)
class NoPeekParams:
    """Parameters of :class:`NoPeek`.

    Attributes
    ----------
    weight
        ``alpha >= 0``: the penalty is ``weight * dCor(x, ir)``.
    """

    weight: float = 0.1

    def __post_init__(self) -> None:
        object.__setattr__(self, "weight", _checks.real("weight", self.weight, low=0.0))


@DEFENCES.register
class NoPeek(Defence):
    """Distance-correlation penalty at training time (Vepakomma et al. 2020); identity after."""

    name: ClassVar[str] = "nopeek"
    description: ClassVar[str] = "train with weight * dCor(x, IR) (NoPeek, Vepakomma et al. 2020)"
    Params: ClassVar[type[NoPeekParams]] = NoPeekParams
    params: NoPeekParams
    trains_victim: ClassVar[bool] = True

    def apply(self, ir: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """``ir`` unchanged: NoPeek acts through training only."""
        return ir

    def penalty(self, x: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        """``weight * dCor(x, ir)`` on the batch (a differentiable scalar)."""
        return self.params.weight * distance_correlation(x, ir)


def _centred_distances(v: torch.Tensor) -> torch.Tensor:
    """The double-centred matrix of pairwise Euclidean distances between the rows of ``v``."""
    v = v.flatten(1)
    sq = (v * v).sum(dim=1)
    d2 = (sq[:, None] + sq[None, :] - 2.0 * (v @ v.T)).clamp(min=0.0)
    n = v.shape[0]
    off = ~torch.eye(n, dtype=torch.bool, device=v.device)
    # sqrt has an infinite derivative at 0: take it only off the diagonal (and where the
    # distance is positive), so a batch with repeated rows still has finite gradients
    pos = off & (d2 > 0)
    d = torch.where(pos, torch.sqrt(torch.where(pos, d2, torch.ones_like(d2))), 0.0)
    return d - d.mean(dim=0, keepdim=True) - d.mean(dim=1, keepdim=True) + d.mean()


def distance_correlation(x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """The biased sample distance correlation of two batches (rows paired), a scalar.

    Parameters
    ----------
    x, z
        ``(N, ...)`` each, ``N >= 2``; each sample is flattened to a vector.

    Returns
    -------
    torch.Tensor
        ``dCor(x, z)`` in ``[0, 1]`` (module docstring), differentiable in both; 0 when either
        batch is constant.
    """
    if x.shape[0] != z.shape[0]:
        raise ValueError(f"batches of {x.shape[0]} and {z.shape[0]} samples")
    if x.shape[0] < 2:
        raise ValueError("distance correlation needs at least 2 samples")
    dtype = torch.promote_types(x.dtype, z.dtype)
    a = _centred_distances(x.to(dtype))
    b = _centred_distances(z.to(dtype))
    dcov_xz = (a * b).mean()
    denom = torch.sqrt((a * a).mean() * (b * b).mean())
    ok = denom > 0  # without a host sync: no branching on the value
    ratio = torch.where(ok, dcov_xz / torch.where(ok, denom, torch.ones_like(denom)), 0.0)
    pos = ratio > 0
    return torch.where(pos, torch.sqrt(torch.where(pos, ratio, torch.ones_like(ratio))), 0.0)
