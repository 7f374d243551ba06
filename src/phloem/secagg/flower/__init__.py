"""phloem's SecAgg / SecAgg+ inside a Flower app (optional extra: ``pip install 'phloem[flower]'``).

Two lines replace Flower's SecAgg+ in an existing app:

- server: ``DefaultWorkflow(fit_workflow=PhloemSecAggWorkflow(...))`` instead of
  ``SecAggPlusWorkflow(...)``;
- client: ``ClientApp(client_fn, mods=[phloem_secagg_mod])`` instead of ``secaggplus_mod``.

The protocol is phloem's (:mod:`phloem.secagg.server`, :mod:`phloem.secagg.client`): it
survives dropouts at every stage, derives masks with AES-CTR (or ChaCha20) from X25519 keys
through HKDF, and sends ``modulus_bits``-wide ring vectors (4 bytes an entry by default). See
``docs/secagg_flower.md``. Only this subpackage imports Flower; ``import phloem.secagg`` does not.
"""

from __future__ import annotations

try:
    import flwr  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "phloem.secagg.flower needs Flower: pip install 'phloem[flower]' "
        "(installs flwr[simulation] 1.42)"
    ) from exc

from phloem.secagg.flower._records import RECORD_KEY
from phloem.secagg.flower.mod import make_phloem_secagg_mod, phloem_secagg_mod
from phloem.secagg.flower.workflow import (
    MissingModError,
    PhloemSecAggWorkflow,
    Protocol,
    RoundSummary,
    WorkflowConfig,
)

__all__ = [
    "RECORD_KEY",
    "MissingModError",
    "PhloemSecAggWorkflow",
    "Protocol",
    "RoundSummary",
    "WorkflowConfig",
    "make_phloem_secagg_mod",
    "phloem_secagg_mod",
]
