"""Secure aggregation: SecAgg (Bonawitz et al., CCS 2017) and SecAgg+ (Bell et al., CCS 2020).

Layers, bottom up:

- :mod:`phloem.secagg.crypto` -- pure primitives: X25519 + HKDF key agreement, AEAD for relayed
  shares, vectorised Shamir sharing over a prime field, an AES-CTR mask PRG;
- :mod:`phloem.secagg.ring`, :mod:`phloem.secagg.quantize` -- Z_(2^b) arithmetic and the
  float <-> ring mapping with stochastic rounding and an overflow check;
- :mod:`phloem.secagg.graph` -- SecAgg+ neighbour graphs (``build``), the choice of their
  parameters (``search``) and its explanation (``explain``);
- :mod:`phloem.secagg.settings`, :mod:`phloem.secagg.stages` -- the one settings type
  (:class:`SecAggSettings`) and the one stage enum (:class:`Stage`) of the library, the
  simulator, the command line and the Flower workflow; :mod:`phloem.secagg.policy` -- what
  each client accepts from a server (:class:`ClientPolicy`);
- :mod:`phloem.secagg.messages`, :mod:`phloem.secagg.client`, :mod:`phloem.secagg.server` --
  the protocol as sans-IO state machines over typed messages with a compact wire encoding;
- :mod:`phloem.secagg.transport` -- the server's round loop, once, over a :class:`Transport`;
- :mod:`phloem.secagg.driver` -- the in-process transport, with dropout injection and
  accounting; :mod:`phloem.secagg.aggregate` -- :func:`secure_sum` / :func:`secure_mean`;
- :mod:`phloem.secagg.flower` -- the Flower transport: a fit workflow and a client mod.

Importing :mod:`phloem.secagg` is cheap: the settings and the stage enum load at once; the
protocol machinery (``secure_mean`` and friends) when first used. Nothing here imports Flower.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from phloem.secagg.policy import ClientPolicy
from phloem.secagg.settings import PrgKind, Protocol, SecAggSettings
from phloem.secagg.stages import PROTOCOL_STAGES, Stage

if TYPE_CHECKING:
    from phloem.secagg.aggregate import SecureMean, secure_mean, secure_sum
    from phloem.secagg.transport import RoundReport, StageStats, Transport, run_protocol

__all__ = [
    "PROTOCOL_STAGES",
    "ClientPolicy",
    "PrgKind",
    "Protocol",
    "RoundReport",
    "SecAggSettings",
    "SecureMean",
    "Stage",
    "StageStats",
    "Transport",
    "run_protocol",
    "secure_mean",
    "secure_sum",
]

#: names loaded on first use, and the module that defines each
_LAZY = {
    "SecureMean": "phloem.secagg.aggregate",
    "secure_mean": "phloem.secagg.aggregate",
    "secure_sum": "phloem.secagg.aggregate",
    "RoundReport": "phloem.secagg.transport",
    "StageStats": "phloem.secagg.transport",
    "Transport": "phloem.secagg.transport",
    "run_protocol": "phloem.secagg.transport",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
