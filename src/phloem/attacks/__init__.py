"""Privacy attacks on split models: how much an intermediate representation leaks.

A victim ``f = f_cloud ∘ f_edge`` runs its first layers on an edge device (or in an enclave)
and sends the intermediate representation (IR) ``f_edge(x)`` in the clear. An attacker who sees
IRs tries to reconstruct the private inputs ``x``; a defence wraps ``f_edge`` to make that
harder, at a cost in accuracy. After Benkraouda & Nahrstedt (DistributedML '21) and He, Zhang
& Lee (ACSAC 2019); the reproduction is *in the spirit of* the former, whose victim, data and
split are not public, so every choice is a parameter here.

Parts, each a registered class with its own parameters (:mod:`phloem.attacks.registries`):

- victims (:mod:`phloem.attacks.victims`): torch modules with named split points;
- defences (:mod:`phloem.attacks.defences`): wrappers of ``f_edge``;
- attacks (:mod:`phloem.attacks.methods`): ``fit`` on auxiliary data through an
  :class:`~phloem.attacks.threat.EdgeOracle`, then ``reconstruct`` private IRs;
- metrics (:mod:`phloem.attacks.metrics`): SSIM, PSNR, MSE, identification rate.

Importing this package is cheap (no torch): the parts load with their modules.
"""

from __future__ import annotations

from phloem.attacks.threat import Access, AuxData, ThreatModel

__all__ = ["Access", "AuxData", "ThreatModel"]
