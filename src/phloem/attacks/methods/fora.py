"""FORA-style attack: a substitute edge matched to the observed IRs, then an inverse network.

Xu, Yang, Zhang & Shen, *A stealthy wolf in sheep's clothing: feature-oriented reconstruction
attack* (FORA), CVPR 2024. The attacker never queries the edge part and holds none of its
weights; it knows the edge part's architecture, has *public* images (not the victim's) and
sees the IRs the edge part sends. It trains a substitute edge part on the public images so
that the distribution of its IRs matches the observed ones (the "representation preference"
of the victim's edge part), then trains an inverse network on the substitute's (IR, image)
pairs and applies it to the observed IRs.

Here the distribution match is the multi-kernel MMD of Gretton et al. (JMLR 2012) between the
flattened IRs (Gaussian kernels at the median squared distance times 1/4 ... 4), which FORA
uses beside an adversarial discriminator; the discriminator is left out (a stated
simplification: FORA-*style*). The attack is transductive: the observed IRs are the ones it
is asked to reconstruct, so the substitute and the inverse network train inside
:meth:`Fora.reconstruct`. The inverse network is :class:`~.inverse_net.InverseNet` with the
shared learned-inverter budget (``epochs``, ``batch_size``, ``lr``, ``loss``, ``schedule``),
trained through the substitute as if it were the edge part.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import ClassVar

import torch

from phloem.attacks.methods.base import Attack
from phloem.attacks.methods.inverse_net import InverseNet, InverseNetParams
from phloem.attacks.registries import ATTACKS
from phloem.attacks.threat import Access, EdgeOracle, ThreatModel
from phloem.core import checks as _checks
from phloem.core.errors import ConfigError

__all__ = ["Fora", "ForaParams", "mmd2"]

#: the kernel bandwidths, as multiples of the median squared distance
_SCALES = (0.25, 0.5, 1.0, 2.0, 4.0)


def mmd2(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Biased multi-kernel MMD^2 between two samples ``(N, D)`` and ``(M, D)``.

    ``mean k(a, a') + mean k(b, b') - 2 mean k(a, b)`` with ``k`` the average of Gaussian
    kernels ``exp(-||u - v||^2 / (s * m))``, ``m`` the median squared distance over the pooled
    sample (held constant in the gradient), ``s`` in 1/4, 1/2, 1, 2, 4. Zero for identical
    samples, positive when the distributions differ.
    """
    pooled = torch.cat([a, b])
    d2 = torch.cdist(pooled, pooled).pow(2)
    m = d2.detach()[d2.detach() > 0].median() if bool((d2.detach() > 0).any()) else d2.new_ones(())
    k = sum(torch.exp(-d2 / (s * m)) for s in _SCALES) / len(_SCALES)
    assert isinstance(k, torch.Tensor)
    n = a.shape[0]
    return k[:n, :n].mean() + k[n:, n:].mean() - 2 * k[:n, n:].mean()


@dataclass(frozen=True)
class ForaParams(InverseNetParams):
    """The inverse network's budget and ``width`` (as ``inverse-net``), and the substitute's
    training: ``substitute_steps`` Adam steps at ``substitute_lr``, each on ``mmd_batch``
    public images against as many observed IRs."""

    substitute_steps: int = 1000
    substitute_lr: float = 1e-3
    mmd_batch: int = 128

    def __post_init__(self) -> None:
        super().__post_init__()
        _checks.integer("substitute_steps", self.substitute_steps, low=1)
        _checks.integer("mmd_batch", self.mmd_batch, low=2)
        _checks.real("substitute_lr", self.substitute_lr, low=0.0, low_open=True)


@ATTACKS.register
class Fora(Attack):
    """Substitute edge by MMD on public images, then an inverse network (FORA-style)."""

    name: ClassVar[str] = "fora"
    description: ClassVar[str] = (
        "query-free, knows the architecture: substitute edge matched to observed IRs by MMD "
        "on public images, then an inverse network (FORA-style, Xu et al. 2024)"
    )
    Params: ClassVar[type[ForaParams]] = ForaParams
    access: ClassVar[frozenset[Access]] = frozenset({Access.QUERY_FREE, Access.BLACK_BOX})

    #: MMD^2 between the substitute's IRs and the observed ones, before and after training
    mmd_before: float = float("nan")
    mmd_after: float = float("nan")

    def fit(
        self,
        oracle: EdgeOracle,
        aux: torch.Tensor,
        gen: torch.Generator,
        *,
        labels: torch.Tensor | None = None,
    ) -> None:
        if aux.shape[0] < 2:
            raise ConfigError(
                "aux.count", f"{aux.shape[0]} public images; FORA needs some", ["int >= 2"]
            )
        self._oracle, self._public, self._gen = oracle, aux, gen
        oracle.shadow(gen)  # fails now, not at reconstruction, if the architecture is unknown

    def substitute(self, observed: torch.Tensor) -> torch.nn.Module:
        """The substitute edge part, trained so that its IRs of the public images match
        ``observed`` in distribution (multi-kernel MMD)."""
        p: ForaParams = self.params
        sub = self._oracle.shadow(self._gen)
        weights = [w for w in sub.parameters() if w.requires_grad]
        n_pub, n_obs = self._public.shape[0], observed.shape[0]
        batch = min(p.mmd_batch, n_pub, n_obs)
        flat = observed.flatten(1)

        def draw() -> tuple[torch.Tensor, torch.Tensor]:
            pub = self._public[torch.randint(0, n_pub, (batch,), generator=self._gen)]
            return pub, flat[torch.randint(0, n_obs, (batch,), generator=self._gen)]

        if weights:  # a parameter-free edge part is known exactly: nothing to train
            opt = torch.optim.Adam(weights, lr=p.substitute_lr)
            sub.train()
            for step in range(p.substitute_steps):
                pub, obs = draw()
                loss = mmd2(sub(pub).flatten(1), obs)
                if step == 0:
                    self.mmd_before = float(loss.detach())
                opt.zero_grad()
                loss.backward()  # type: ignore[no-untyped-call]
                opt.step()
        sub.eval()
        with torch.no_grad():
            pub, obs = draw()
            self.mmd_after = float(mmd2(sub(pub).flatten(1), obs))
        for w in sub.parameters():
            w.requires_grad_(False)
        return sub

    def reconstruct(self, irs: torch.Tensor) -> torch.Tensor:
        p: ForaParams = self.params
        sub = self.substitute(irs)
        # the inverse network learns from the substitute as if it were the edge part: all the
        # public images are its "queries" (nothing reaches the victim's edge part)
        local = EdgeOracle(sub, ThreatModel(access=Access.BLACK_BOX), self._oracle.input_shape)
        inverse = InverseNet(
            InverseNetParams(**{f.name: getattr(p, f.name) for f in fields(InverseNetParams)})
        )
        inverse.on_progress = self.on_progress
        inverse.fit(local, self._public, self._gen)
        return inverse.reconstruct(irs)
