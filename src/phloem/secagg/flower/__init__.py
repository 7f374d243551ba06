"""phloem's SecAgg / SecAgg+ inside a Flower app (optional extra: ``pip install 'phloem[flower]'``).

Two lines replace Flower's SecAgg+ in an existing app:

- server: ``DefaultWorkflow(fit_workflow=PhloemSecAggWorkflow(...))`` instead of
  ``SecAggPlusWorkflow(...)``;
- client: ``ClientApp(client_fn, mods=[phloem_secagg_mod])`` instead of ``secaggplus_mod``.

The protocol is phloem's (:mod:`phloem.secagg.server`, :mod:`phloem.secagg.client`): it
survives dropouts at every stage, derives masks with AES-CTR (or ChaCha20) from X25519 keys
through HKDF, and sends ``modulus_bits``-wide ring vectors (4 bytes an entry by default). See
``docs/secagg_flower.md``. Only this subpackage imports Flower; ``import phloem.secagg`` does not.

Every name loads on first use, and each side loads only its own half: in a deployment each
``ClientApp`` message may run in a fresh process, which imports the mod
(:mod:`phloem.secagg.flower.mod`: the client state machine, numpy, Flower's record types) but
never the server workflow, the SecAgg+ graph search or ``flwr.server``.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

if importlib.util.find_spec("flwr") is None:  # pragma: no cover - depends on the environment
    raise ImportError(
        "phloem.secagg.flower needs Flower: pip install 'phloem[flower]' "
        "(installs flwr[simulation] 1.42)"
    )

if TYPE_CHECKING:
    from phloem.secagg.flower._records import RECORD_KEY
    from phloem.secagg.flower._transport import MissingModError
    from phloem.secagg.flower.mod import (
        DuplicateSetupError,
        make_phloem_secagg_mod,
        phloem_secagg_mod,
    )
    from phloem.secagg.flower.workflow import (
        PhloemSecAggWorkflow,
        Protocol,
        RoundSummary,
        WorkflowConfig,
    )

__all__ = [
    "RECORD_KEY",
    "DuplicateSetupError",
    "MissingModError",
    "PhloemSecAggWorkflow",
    "Protocol",
    "RoundSummary",
    "WorkflowConfig",
    "make_phloem_secagg_mod",
    "phloem_secagg_mod",
]

#: names loaded on first use, and the module that defines each (client names never pull in
#: the server's modules)
_LAZY = {
    "RECORD_KEY": "phloem.secagg.flower._records",
    "DuplicateSetupError": "phloem.secagg.flower.mod",
    "make_phloem_secagg_mod": "phloem.secagg.flower.mod",
    "phloem_secagg_mod": "phloem.secagg.flower.mod",
    "MissingModError": "phloem.secagg.flower._transport",
    "PhloemSecAggWorkflow": "phloem.secagg.flower.workflow",
    "Protocol": "phloem.secagg.flower.workflow",
    "RoundSummary": "phloem.secagg.flower.workflow",
    "WorkflowConfig": "phloem.secagg.flower.workflow",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
