"""Attacks: one module per method, each citing its paper (registered in :data:`ATTACKS`).

- baselines (:mod:`.baselines`): ``mean-image``, ``nearest-neighbour``;
- white-box: ``rmle`` (He et al. 2019);
- query-free: ``shadow-model`` (He et al. 2019: the attacker holds the cloud part),
  ``unsplit`` (Erdogan et al. 2022: architecture only), ``fora`` (Xu et al. 2024: architecture,
  public images and the observed IRs);
- learned inversion (:mod:`.learned`: one query set, training budget and loss for all):
  ``inverse-net`` (He et al. 2019), ``encoder-decoder`` (Benkraouda & Nahrstedt 2021).
"""

from phloem.attacks.methods import (
    baselines,
    encoder_decoder,
    fora,
    inverse_net,
    rmle,
    shadow,
    unsplit,
)
from phloem.attacks.methods.base import Attack

__all__ = [
    "Attack",
    "baselines",
    "encoder_decoder",
    "fora",
    "inverse_net",
    "rmle",
    "shadow",
    "unsplit",
]
