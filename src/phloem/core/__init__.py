"""Small, dependency-light pieces every area shares (no torch at import).

The names below load with their module on first use: ``import phloem.core.errors`` (what every
area imports) costs only that module, not configs, histories and run folders -- which matters
in processes that start per message, like a Flower ClientApp.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from phloem.core.callbacks import Callback, CallbackList, EarlyStop
    from phloem.core.config import apply_overrides, from_dict, load_toml, to_dict, to_toml
    from phloem.core.errors import ConfigError, DataNotFoundError, DivergenceError, PhloemError
    from phloem.core.history import History, read_history
    from phloem.core.rng import SeedStreams, Stage
    from phloem.core.rundir import RunDir, list_runs

__all__ = [
    "Callback",
    "CallbackList",
    "ConfigError",
    "DataNotFoundError",
    "DivergenceError",
    "EarlyStop",
    "History",
    "PhloemError",
    "RunDir",
    "SeedStreams",
    "Stage",
    "apply_overrides",
    "from_dict",
    "list_runs",
    "load_toml",
    "read_history",
    "to_dict",
    "to_toml",
]

#: each exported name and the module that defines it
_LAZY = {
    "Callback": "callbacks",
    "CallbackList": "callbacks",
    "EarlyStop": "callbacks",
    "apply_overrides": "config",
    "from_dict": "config",
    "load_toml": "config",
    "to_dict": "config",
    "to_toml": "config",
    "ConfigError": "errors",
    "DataNotFoundError": "errors",
    "DivergenceError": "errors",
    "PhloemError": "errors",
    "History": "history",
    "read_history": "history",
    "SeedStreams": "rng",
    "Stage": "rng",
    "RunDir": "rundir",
    "list_runs": "rundir",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
